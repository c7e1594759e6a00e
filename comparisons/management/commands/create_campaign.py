"""python manage.py create_campaign SLUG --evalset NAME --models A B [more…] [--baseline NAME] [--votes-per-pair K]
[--limit N] [--title T] [--attention-rate R] [--per-rater N] [--render markdown|plain] [--keep-identity-leaks]
[--target-half-width POINTS] [--vote-budget N] [--stop none|precision|decisive] [--routing uniform|adaptive] [--draft]:
create a campaign and open it."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from comparisons import services
from comparisons.models import Campaign
from evalsite.options import AT_LEAST_ONE, HALF_WIDTH_POINTS, SHARE
from generation.models import EvalSet, ModelEntry


class Command(BaseCommand):
    help = "Create a rating campaign comparing models on an eval set, and open it (one comparison per prompt and pair)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="Short name used in URLs and exports, e.g. alpaca-vs-davinci.")
        parser.add_argument("--evalset", required=True, help="Name of the eval set.")
        parser.add_argument("--models", nargs="+", required=True, metavar="NAME", help="Two or more model names.")
        parser.add_argument("--baseline", help="Compare every other model against this one (default: all pairs).")
        parser.add_argument(
            "--votes-per-pair", type=AT_LEAST_ONE, default=3, metavar="K", help="Votes per comparison (3)."
        )
        parser.add_argument("--limit", type=AT_LEAST_ONE, metavar="N", help="Only the first N prompts of the eval set.")
        parser.add_argument("--title", default="", help="Title shown to admins and analysts (never to raters).")
        parser.add_argument("--instructions", default="", help="Guidance shown to raters.")
        parser.add_argument("--attention-rate", type=SHARE, default=0.0, metavar="R", help="Share of attention checks.")
        parser.add_argument("--per-rater", type=AT_LEAST_ONE, metavar="N", help="Most pairs one rater judges.")
        parser.add_argument(
            "--lease-seconds", type=AT_LEAST_ONE, default=600, help="How long a served pair is held (600)."
        )
        parser.add_argument(
            "--render",
            choices=Campaign.Rendering.values,
            default=Campaign.Rendering.MARKDOWN,
            help="How raters see the texts: markdown (default) or plain text.",
        )
        parser.add_argument(
            "--keep-identity-leaks",
            action="store_true",
            help="Also compare answers that name their model, their maker or themselves as an AI (default: left out).",
        )
        parser.add_argument(
            "--target-half-width",
            type=HALF_WIDTH_POINTS,
            metavar="POINTS",
            help="Precision wanted for every pair: the 95%% interval's half-width in points of win rate (e.g. 5).",
        )
        parser.add_argument(
            "--vote-budget", type=AT_LEAST_ONE, metavar="N", help="Close by itself once this many votes are in."
        )
        parser.add_argument(
            "--stop",
            choices=Campaign.Stopping.values,
            default=Campaign.Stopping.NONE,
            help="Close by itself when every pair reached the target (precision) or is decisive by an "
            "anytime-valid confidence sequence (decisive); default none.",
        )
        parser.add_argument(
            "--routing",
            choices=Campaign.Routing.values,
            default=Campaign.Routing.UNIFORM,
            help="uniform (fewest votes first, the default) or adaptive (3+ models: the pair that settles the "
            "ranking most).",
        )
        parser.add_argument("--draft", action="store_true", help="Create it without opening it.")

    def handle(self, *args: Any, **opts: Any) -> None:
        slug = opts["slug"]
        eval_set = EvalSet.objects.filter(name=opts["evalset"]).first()
        if eval_set is None:
            known = ", ".join(EvalSet.objects.values_list("name", flat=True)[:20]) or "none yet"
            raise CommandError(f"No eval set named {opts['evalset']!r} (known: {known}).")
        names = list(dict.fromkeys(opts["models"] + ([opts["baseline"]] if opts["baseline"] else [])))
        found = {m.name: m for m in ModelEntry.objects.filter(name__in=names)}
        missing = [n for n in names if n not in found]
        if missing:
            raise CommandError(f"Unknown model(s): {', '.join(missing)}. Import or upload them first.")
        try:
            with transaction.atomic():
                campaign = services.campaign_create(
                    slug=slug,
                    title=opts["title"],
                    eval_set=eval_set,
                    models=[found[n] for n in opts["models"]],
                    baseline=found[opts["baseline"]] if opts["baseline"] else None,
                    votes_per_comparison=opts["votes_per_pair"],
                    prompt_limit=opts["limit"],
                    instructions=opts["instructions"],
                    attention_check_rate=opts["attention_rate"],
                    lease_seconds=opts["lease_seconds"],
                    comparisons_per_rater=opts["per_rater"],
                    render_mode=opts["render"],
                    keep_identity_leaks=opts["keep_identity_leaks"],
                    target_half_width=opts["target_half_width"],
                    vote_budget=opts["vote_budget"],
                    stopping_rule=opts["stop"],
                    routing=opts["routing"],
                )
                report = None if opts["draft"] else services.campaign_open(campaign=campaign)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc

        if report is None:
            self.stdout.write(f"Created draft campaign {slug!r}; open it in the admin.")
            return
        for external_id, lacking in report.skipped:
            self.stdout.write(f"skipped prompt {external_id}: no response from {', '.join(lacking)}")
        verb = "kept" if report.identity_leaks_kept else "left out"
        for line in services.identity_leak_lines(report.identity_leaks):
            self.stdout.write(f"{verb} comparison {line}")
        leaks = len(report.identity_leaks)
        if report.identity_leaks_kept:
            identity = f"{leaks} comparisons with a self-identifying answer kept (--keep-identity-leaks)"
        else:
            identity = (
                f"{leaks} comparisons left out because an answer names its model, its maker or itself as an AI"
                + (" (--keep-identity-leaks keeps them)" if leaks else "")
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Opened campaign {slug!r}: {report.created} comparisons x {campaign.votes_per_comparison} votes, "
                f"{report.attention_checks} attention checks, {len(report.skipped)} prompts skipped, {identity}."
            )
        )
