"""``manage.py audit_blinding SLUG [--json] [--stored]``: how well surface features of the texts raters receive
predict which model wrote which side, and whether attention checks can be told from real pairs."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from comparisons.blinding import AuditSettings
from comparisons.models import Campaign
from comparisons.selectors import campaign_blinding_audit


class Command(BaseCommand):
    help = "Blinding audit of a campaign: can surface features of the served texts tell the models apart?"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the campaign's slug")
        parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
        parser.add_argument(
            "--stored",
            action="store_true",
            help="audit the stored texts (what raters would get unless canonical)",
        )
        parser.add_argument("--folds", type=int, default=5, help="cross-validation folds, grouped by prompt (5)")
        parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap rounds for the intervals (1000)")
        parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (0)")

    def handle(self, *args: Any, **opts: Any) -> None:
        campaign = Campaign.objects.filter(slug=opts["slug"]).first()
        if campaign is None:
            raise CommandError(f"No campaign with slug {opts['slug']!r}.")
        if opts["folds"] < 2:
            raise CommandError(f"--folds must be at least 2, not {opts['folds']}.")
        if opts["bootstrap"] < 1:
            raise CommandError(f"--bootstrap must be at least 1, not {opts['bootstrap']}.")
        if not 0 <= opts["seed"] < 2**32:
            raise CommandError(f"--seed must be between 0 and 2**32 - 1, not {opts['seed']}.")
        if not campaign.comparisons.exists():
            raise CommandError(f"Campaign {campaign.slug!r} has no comparisons yet: open it first.")
        settings = AuditSettings(folds=opts["folds"], n_boot=opts["bootstrap"], seed=opts["seed"])
        audit = campaign_blinding_audit(campaign=campaign, stored=opts["stored"], settings=settings)
        if opts["json"]:
            self.stdout.write(json.dumps(audit, indent=2, ensure_ascii=False))
            return
        self._print(audit)

    def _print(self, audit: dict[str, Any]) -> None:
        out = self.stdout.write
        out(f"Blinding audit of {audit['campaign']!r} ({audit['texts']} texts; intervals: {audit['settings']['ci']})")
        for pair in audit["pairs"]:
            sizes = f"{pair['comparisons']} comparisons, {pair['prompts']} prompts"
            out(f"\n{pair['model_a']} vs {pair['model_b']}: {sizes}")
            out(pair["headline"])
            if pair["classifier"] is None:
                continue
            for key, label in (("all", "all features"), ("byte_level", "byte-level"), ("content", "content")):
                entry = pair["classifier"][key]
                out(f"  classifier, {label:<13} {_row(entry)}")
            best = pair["best_rule"]
            out(f"  best one-feature rule     {_row(best)} (chosen per fold: {', '.join(best['chosen'])})")
            out(f"  {'feature':<26} {'group':<11} accuracy   95% CI        side with more")
            for feature in pair["features"]:
                more = feature["more_is"] or "-"
                out(f"  {feature['feature']:<26} {feature['group']:<11} {_row(feature)}  {more}")
        checks = audit["attention_checks"]
        byte, every = checks["byte_level"], checks["all"]
        if byte["balanced_accuracy"] is None:
            out("\nAttention checks: none in this campaign.")
        else:
            out(
                f"\nAttention checks ({byte['gold_pairs']} against {byte['real_pairs']} real pairs), "
                f"balanced accuracy of telling them apart: byte-level {_row(byte, 'balanced_accuracy')}, "
                f"all features {_row(every, 'balanced_accuracy')}."
            )


def _row(entry: dict[str, Any], key: str = "accuracy") -> str:
    verdict = "at chance" if entry["at_chance"] else "above chance"
    return f"{entry[key]:5.1f}%  [{entry['ci_low']:5.1f}, {entry['ci_high']:5.1f}]  {verdict}"
