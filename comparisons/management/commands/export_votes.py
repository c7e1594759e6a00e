"""python manage.py export_votes SLUG OUT.csv: one row per vote, streamed (bounded memory).

Columns: campaign, prompt_id, category, model_a, model_b, left_model, winner, rater, attention_failed,
submitted_at, seconds, length_a, length_b, rationale, identity_reported, routing_probability. `winner` is a
model name, `tie` or `both_bad`; `length_a`/`length_b` count the characters of the canonical served texts.
Use `-` as OUT.csv to write to standard output.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from comparisons.models import Campaign
from comparisons.results import VotesCsv
from evalsite.files import OutputFolderMissing, text_output


class Command(BaseCommand):
    help = "Export a campaign's votes to CSV (one row per vote; attention checks left out)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("out", help="Output CSV path, or - for standard output.")

    def handle(self, *args: Any, **opts: Any) -> None:
        campaign = Campaign.objects.filter(slug=opts["slug"]).first()
        if campaign is None:
            raise CommandError(f"No campaign with slug {opts['slug']!r}.")
        pieces = VotesCsv(campaign=campaign)
        try:
            with text_output(opts["out"]) as stream:
                for piece in pieces:
                    stream.write(piece)
        except OutputFolderMissing as exc:
            raise CommandError(str(exc)) from None
        if opts["out"] != "-":
            self.stdout.write(f"Wrote {pieces.rows} votes of campaign {campaign.slug!r} to {opts['out']}.")
