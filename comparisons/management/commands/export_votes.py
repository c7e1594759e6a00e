"""python manage.py export_votes SLUG OUT.csv: one row per vote, streamed (bounded memory).

Columns: campaign, prompt_id, category, model_a, model_b, left_model, winner, rater,
attention_failed, submitted_at, seconds. `winner` is a model name, `tie` or `both_bad`.
Use `-` as OUT.csv to write to standard output.
"""

from __future__ import annotations

import csv
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from comparisons.models import Campaign
from comparisons.selectors import VOTE_COLUMNS, vote_rows


def write_votes_csv(stream: Any, *, campaign: Campaign) -> int:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(VOTE_COLUMNS)
    count = 0
    for row in vote_rows(campaign=campaign):
        row[VOTE_COLUMNS.index("attention_failed")] = "true" if row[VOTE_COLUMNS.index("attention_failed")] else "false"
        writer.writerow(row)
        count += 1
    return count


class Command(BaseCommand):
    help = "Export a campaign's votes to CSV (one row per vote; attention checks left out)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("out", help="Output CSV path, or - for standard output.")

    def handle(self, *args: Any, **opts: Any) -> None:
        campaign = Campaign.objects.filter(slug=opts["slug"]).first()
        if campaign is None:
            raise CommandError(f"No campaign with slug {opts['slug']!r}.")
        if opts["out"] == "-":
            write_votes_csv(sys.stdout, campaign=campaign)
            return
        out = Path(opts["out"])
        if not out.parent.is_dir():
            raise CommandError(f"Folder {str(out.parent)!r} does not exist.")
        # Write beside the target and rename, so a failed export never leaves a half-written file.
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
        try:
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as stream:
                count = write_votes_csv(stream, campaign=campaign)
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.stdout.write(f"Wrote {count} votes of campaign {campaign.slug!r} to {out}.")
