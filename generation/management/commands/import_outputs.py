"""`python manage.py import_outputs PATH --model NAME --evalset NAME`: import a model's existing outputs."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from generation.errors import InputError
from generation.imports import outputs_import


class Command(BaseCommand):
    help = (
        "Import one model's outputs on an eval set from an AlpacaEval model_outputs.json (entries of other data "
        "sets are ignored and counted) or a Self-Instruct predictions .jsonl. Creates the model entry if needed. "
        "All or nothing; importing the same file again changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", metavar="PATH", help="model_outputs.json (AlpacaEval) or predictions .jsonl.")
        parser.add_argument("--model", required=True, metavar="NAME", help="Model entry to import into.")
        parser.add_argument("--evalset", required=True, metavar="NAME", help="Eval set whose prompts they answer.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = outputs_import(path=options["path"], model_name=options["model"], eval_set_name=options["evalset"])
        except InputError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(result.message))
