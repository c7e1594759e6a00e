"""`python manage.py export_outputs MODEL --evalset NAME OUT.json`: write a model's responses in AlpacaEval format."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from generation.errors import InputError
from generation.imports import outputs_export


class Command(BaseCommand):
    help = (
        "Write a model's responses on an eval set as AlpacaEval model_outputs.json (instruction, output, generator, "
        "dataset), in prompt order; works for imported and generated responses."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model", metavar="MODEL", help="Name of the model entry.")
        parser.add_argument("--evalset", required=True, metavar="NAME", help="Name of the eval set.")
        parser.add_argument("out", metavar="OUT.json", help="File to write (replaced atomically if it exists).")
        parser.add_argument(
            "--dataset",
            metavar="LABEL",
            default=None,
            help="Value of each entry's 'dataset' field (default: 'selfinstruct' for the Self-Instruct "
            "user-oriented set, else the eval set's name).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = outputs_export(
                model_name=options["model"],
                eval_set_name=options["evalset"],
                path=options["out"],
                dataset=options["dataset"],
            )
        except InputError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(result.message))
