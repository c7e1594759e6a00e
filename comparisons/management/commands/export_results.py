"""``manage.py export_results SLUG KIND OUT``: a campaign's results exports, written atomically.

KIND is one of:
  votes        one row per vote (the same as export_votes; the input of ``manage.py analyze``)
  prompts      one row per compared pair: prompt, category, both responses, vote counts, majority
  summary      the win-rate table (one row per pair, as on the results page)
  annotations  AlpacaEval-style JSON: instruction, output_1, generator_1, output_2, generator_2,
               preference (1 or 2, 1.5 for a tie or both bad), one item per vote
OUT is a file path, or ``-`` for standard output. Rows are streamed from the database.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from comparisons.models import Campaign
from comparisons.results import EXPORT_KINDS, export_stream
from evalsite.files import OutputFolderMissing, text_output
from evalsite.options import BOOTSTRAP_ROUNDS, SEED


class Command(BaseCommand):
    help = "Export a campaign's votes, per-prompt table, summary or AlpacaEval annotations (streamed)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the campaign's slug")
        parser.add_argument("kind", choices=EXPORT_KINDS, help="what to export")
        parser.add_argument("out", help="output file, or - for standard output")
        parser.add_argument("--bootstrap", type=BOOTSTRAP_ROUNDS, default=1000, help="bootstrap rounds for the summary")
        parser.add_argument("--seed", type=SEED, default=0, help="bootstrap seed for the summary")

    def handle(self, *args: Any, **opts: Any) -> None:
        campaign = Campaign.objects.filter(slug=opts["slug"]).first()
        if campaign is None:
            raise CommandError(f"No campaign with slug {opts['slug']!r}.")
        pieces = export_stream(campaign=campaign, kind=opts["kind"], n_boot=opts["bootstrap"], seed=opts["seed"])
        try:
            with text_output(opts["out"]) as stream:
                for piece in pieces:
                    stream.write(piece)
        except OutputFolderMissing as exc:
            raise CommandError(str(exc)) from None
        if opts["out"] != "-":
            self.stdout.write(f"Wrote the {opts['kind']} export of campaign {campaign.slug!r} to {opts['out']}.")
