"""``manage.py analyze VOTES.csv``: offline analysis of any vote file, with the same statistics as the results page.

It reads the file, never the database: an export of this site or votes from elsewhere with at least
``prompt_id, model_a, model_b, winner`` (see comparisons/stats/table.py for the optional columns).
``analyze --snapshot BUNDLE`` checks a published snapshot's hashes and reproduces its analysis.json exactly.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from comparisons.stats import BOTH_BAD_MODES, CI_METHODS, VoteTableError, analyze, format_text, read_votes_csv
from comparisons.stats.snapshot import SnapshotError, bundle_read, bundle_verify
from comparisons.stats.table import votes_prepare
from evalsite.options import BOOTSTRAP_ROUNDS, CONFIDENCE, NON_NEGATIVE, SEED


class Command(BaseCommand):
    help = (
        "Analyse a vote CSV: win rates with cluster-bootstrap CIs over prompts, sign-flip tests over prompts, "
        "a Bradley-Terry ranking per connected group of models, rater agreement, position/length bias and a "
        "per-category breakdown. --json prints one object."
    )
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "votes", nargs="?", help="vote CSV (columns prompt_id, model_a, model_b, winner; others optional)"
        )
        parser.add_argument(
            "--snapshot",
            metavar="BUNDLE",
            help="check a published snapshot bundle (.zip or its folder): its hashes, and that its votes give "
            "its analysis.json exactly; prints that JSON (no other option applies)",
        )
        parser.add_argument("--baseline", help="report every other model against this one")
        parser.add_argument(
            "--bootstrap", type=BOOTSTRAP_ROUNDS, default=1000, help="bootstrap rounds (default 1000; 0 = no CI)"
        )
        parser.add_argument("--seed", type=SEED, default=0, help="seed of the bootstrap (default 0)")
        parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
        parser.add_argument("--ci", choices=CI_METHODS, default="bca", help="interval method (default bca)")
        parser.add_argument("--confidence", type=CONFIDENCE, default=0.95, help="confidence level (default 0.95)")
        parser.add_argument(
            "--both-bad-as",
            choices=BOTH_BAD_MODES,
            default="tie",
            help="count 'both_bad' votes as ties (default) or exclude them from win rates",
        )
        parser.add_argument(
            "--exclude-flagged",
            action="store_true",
            help="drop votes with attention_failed or flagged true",
        )
        parser.add_argument("--min-seconds", type=NON_NEGATIVE, help="drop votes that took fewer seconds than this")
        parser.add_argument(
            "--exclude-identity-reports",
            action="store_true",
            help="drop every vote on a pair that a rater reported as revealing who wrote it (identity_reported)",
        )
        parser.add_argument(
            "--exclude-rater",
            action="append",
            default=[],
            metavar="NAME",
            help="drop this rater's votes (repeat for several; write --exclude-rater=NAME for a NAME starting with -)",
        )
        parser.add_argument("--no-categories", action="store_true", help="skip the per-category breakdown")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["snapshot"]:
            if options["votes"]:
                raise CommandError("Give either a vote file or --snapshot BUNDLE, not both.")
            self._snapshot(options["snapshot"], as_json=options["json"])
            return
        if not options["votes"]:
            raise CommandError("Give a vote CSV to analyse (or --snapshot BUNDLE to check a published snapshot).")
        try:
            frame = read_votes_csv(options["votes"])
            if options["exclude_rater"]:
                if "rater" not in frame.columns:
                    raise VoteTableError("--exclude-rater needs a 'rater' column, and the vote file has none.")
                votes_prepare(frame, first_line=2)  # every line checked (and named) before any is left out
                frame = frame[~frame["rater"].isin(options["exclude_rater"])]
            result = analyze(
                frame,
                baseline=options["baseline"],
                n_boot=options["bootstrap"],
                seed=options["seed"],
                ci=options["ci"],
                confidence=options["confidence"],
                both_bad=options["both_bad_as"],
                exclude_flagged=options["exclude_flagged"],
                min_seconds=options["min_seconds"],
                exclude_identity_reports=options["exclude_identity_reports"],
                categories=not options["no_categories"],
                first_line=2,
            )
        except VoteTableError as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(result, ensure_ascii=False, allow_nan=False))
        else:
            self.stdout.write(format_text(result))

    def _snapshot(self, bundle: str, *, as_json: bool) -> None:
        try:
            files = bundle_read(bundle)
            manifest = bundle_verify(files)
        except SnapshotError as exc:
            raise CommandError(f"Snapshot {bundle!r} does not check out: {exc}") from None
        if as_json:
            self.stdout.write(files["analysis.json"], ending="")
            return
        self.stdout.write(
            f"Snapshot {manifest['snapshot']} of campaign {manifest['campaign']['slug']!r} checks out: "
            f"{manifest['votes']} votes with sha256 {manifest['votes_sha256']} (ids and choices), file hashes as "
            "published, and its votes give analysis.json exactly, character for character.\n"
        )
        self.stdout.write(format_text(json.loads(files["analysis.json"])))
