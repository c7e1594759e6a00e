"""`python manage.py import_evalset PATH --name NAME`: load a Self-Instruct JSONL evaluation set."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from generation.errors import InputError
from generation.imports import evalset_import


class Command(BaseCommand):
    help = (
        "Create an eval set from a Self-Instruct JSONL file (one task a line: id, instruction, "
        "instances[0].input/output, motivation_app). All or nothing; importing the same file again changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", metavar="PATH", help="The .jsonl file, e.g. user_oriented_instructions.jsonl.")
        parser.add_argument("--name", required=True, metavar="NAME", help="Name of the eval set to create.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = evalset_import(path=options["path"], name=options["name"])
        except InputError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(result.message))
