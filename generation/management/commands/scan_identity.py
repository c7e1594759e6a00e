"""`python manage.py scan_identity [--model NAME] [--evalset NAME]`: look for self-identifying responses again."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from generation.models import EvalSet, ModelEntry, Response
from generation.services import responses_scan_identity


class Command(BaseCommand):
    help = (
        "Run the self-identification detector again on stored responses (all, or one model's or one eval set's), "
        "with the names of the model entries as they are now, and store what it finds. Responses are scanned when "
        "they are imported or generated and again when a campaign opens; run this after adding a model to see, "
        "in the admin, which older answers name it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", metavar="NAME", help="Only this model's responses.")
        parser.add_argument("--evalset", metavar="NAME", help="Only responses to this eval set's prompts.")

    def handle(self, *args: Any, **options: Any) -> None:
        responses = Response.objects.all()
        if options["model"] is not None:
            if not ModelEntry.objects.filter(name=options["model"]).exists():
                raise CommandError(f"There is no model named {options['model']!r}. Nothing was scanned.")
            responses = responses.filter(model__name=options["model"])
        if options["evalset"] is not None:
            if not EvalSet.objects.filter(name=options["evalset"]).exists():
                raise CommandError(f"There is no eval set named {options['evalset']!r}. Nothing was scanned.")
            responses = responses.filter(prompt__eval_set__name=options["evalset"])
        self.stdout.write(responses_scan_identity(responses=responses.order_by("pk")).message)
