"""``manage.py import_judgments FILE --campaign SLUG --judge NAME``: an automatic judge's AlpacaEval annotations.

Each item is matched to the campaign's comparison by its instruction and both answers; the results page and
exports then set the judge beside the raters. Items that match nothing are listed; a bad file changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from comparisons import services
from comparisons.models import Campaign
from generation.errors import InputError


class Command(BaseCommand):
    help = (
        "Import an automatic judge's verdicts (AlpacaEval annotations: a JSON list of {instruction, output_1, "
        "output_2, generator_1, generator_2, preference, annotator}) onto a campaign's comparisons. Importing "
        "again under the same --judge replaces that judge's verdicts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the annotations JSON file")
        parser.add_argument("--campaign", required=True, metavar="SLUG", help="the campaign whose pairs were judged")
        parser.add_argument("--judge", required=True, metavar="NAME", help="name shown for this judge, e.g. gpt4")

    def handle(self, *args: Any, **opts: Any) -> None:
        campaign = Campaign.objects.filter(slug=opts["campaign"]).first()
        if campaign is None:
            raise CommandError(f"No campaign with slug {opts['campaign']!r}; nothing was imported.")
        try:
            report = services.judgments_import(campaign=campaign, judge=opts["judge"], path=Path(opts["file"]))
        except InputError as exc:
            raise CommandError(str(exc)) from None
        for line in report.lines():
            self.stdout.write(line)
