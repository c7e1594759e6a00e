"""python manage.py campaign_status SLUG [--json]: the campaign's precision tracker, one sentence per pair."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from comparisons.models import Campaign
from comparisons.tracker import PairTracker, campaign_precision


def pair_lines(pair: PairTracker) -> str:
    """The pair's sentence, then its anytime-valid confidence sequence when it has one."""
    line = pair.sentence
    if pair.cs_low is not None:
        verdict = f"decisive: {pair.leader} ahead" if pair.decisive else "not decisive"
        line += (
            f" (anytime-valid 95% interval for {pair.model_a}'s win rate {pair.cs_low:.1f}–{pair.cs_high:.1f}% "
            f"over {pair.cs_units} complete comparisons, {verdict})"
        )
    if pair.weighted_win_rate is not None:
        line += f" [routing-weighted win rate of {pair.model_a}: {pair.weighted_win_rate:.1f}%]"
    return line


class Command(BaseCommand):
    help = (
        "Print a campaign's precision tracker: per pair of models the votes so far, the half-width of the 95% "
        "interval, the votes projected to reach the campaign's target, and whether its stopping rule is met."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--json", action="store_true", help="Print the tracker as JSON.")

    def handle(self, *args: Any, **opts: Any) -> None:
        campaign = Campaign.objects.filter(slug=opts["slug"]).first()
        if campaign is None:
            known = ", ".join(Campaign.objects.order_by("slug").values_list("slug", flat=True)[:20]) or "none yet"
            raise CommandError(f"No campaign with slug {opts['slug']!r} (known: {known}).")
        tracker = campaign_precision(campaign=campaign)
        if opts["json"]:
            self.stdout.write(json.dumps(tracker.as_json(), indent=2, ensure_ascii=False))
            return
        self.stdout.write(f"{campaign.slug} ({campaign.status}): {tracker.sentence}")
        for pair in tracker.pairs:
            self.stdout.write(pair_lines(pair))
        if not tracker.pairs:
            self.stdout.write("No comparisons yet: the tracker starts once the campaign is open.")
