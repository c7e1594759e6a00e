"""Reads for analysts beside the raters' analysis: automatic judges against the raters, and content reports.

The numbers come from the pure `comparisons.stats.judges` and `comparisons.stats.flags`; this module only
gathers their inputs (a few aggregate queries) and orients every pair the way the analysis does: against the
campaign's baseline when the pair has it, else the alphabetically first model against the other.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.db.models import Count, F, Q, Sum

from comparisons.models import Campaign, Comparison, ContentReport, Judgment, Vote
from comparisons.stats.flags import flag_rate
from comparisons.stats.judges import FIRST, SECOND, TIE, disagreement, human_score, judge_pair_stats

REPORT_KINDS = tuple(ContentReport.Kind.values)
JUDGE_COLUMNS = [
    "judge",
    "model",
    "baseline",
    "comparisons",
    "raters_win_rate",
    "judge_win_rate",
    "judge_ci_low",
    "judge_ci_high",
    "agreement_comparisons",
    "split",
    "agreement",
    "agreement_ci_low",
    "agreement_ci_high",
    "kappa",
    "kappa_ci_low",
    "kappa_ci_high",
]
JUDGMENT_COLUMNS = [
    "judge",
    "prompt_id",
    "category",
    "model",
    "baseline",
    "judge_score",
    "judge_verdict",
    "votes_model",
    "votes_baseline",
    "votes_tie",
    "raters_score",
    "disagreement",
]
CONTENT_REPORT_COLUMNS = ["model", "kind", "shown", "flagged", "rate", "ci_low", "ci_high"]
# How many of the comparisons where a judge and the raters disagree most the results page lists.
TOP_DISAGREEMENTS = 10


@dataclass
class _Judged:
    """One judge's verdicts on one oriented pair, comparison by comparison."""

    prompt_ids: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    instructions: list[str] = field(default_factory=list)
    counts: list[tuple[int, int, int]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)


def _orient(model_a: str, model_b: str, baseline: str | None) -> tuple[str, str, bool]:
    """(model, baseline, model is response A) for a comparison, oriented as the analysis reports its pair."""
    if baseline in (model_a, model_b):
        return (model_b, model_a, False) if baseline == model_a else (model_a, model_b, True)
    return (model_a, model_b, True) if model_a < model_b else (model_b, model_a, False)


def _vote_counts(campaign: Campaign) -> dict[int, tuple[int, int, int]]:
    """Per real comparison: the raters' votes for response A, for response B, and ties ("both bad" included)."""
    rows = (
        Vote.objects.filter(comparison__campaign=campaign, comparison__is_attention_check=False)
        .values("comparison_id")
        .annotate(
            a=Count("pk", filter=Q(winner_response=F("comparison__response_a"))),
            b=Count("pk", filter=Q(winner_response=F("comparison__response_b"))),
            tie=Count("pk", filter=Q(winner_response__isnull=True)),
        )
        .order_by()
    )
    return {row["comparison_id"]: (row["a"], row["b"], row["tie"]) for row in rows}


def _judged(campaign: Campaign) -> dict[str, dict[tuple[str, str], _Judged]]:
    judgments = Judgment.objects.filter(comparison__campaign=campaign, comparison__is_attention_check=False)
    if not judgments.exists():
        return {}  # no judge imported: the votes need not be counted (a million of them take a second)
    votes = _vote_counts(campaign)
    baseline = campaign.baseline.name if campaign.baseline is not None else None
    out: dict[str, dict[tuple[str, str], _Judged]] = defaultdict(dict)
    rows = judgments.order_by("judge", "comparison__prompt__position", "comparison_id").values_list(
        "judge",
        "comparison_id",
        "preference",
        "comparison__prompt__external_id",
        "comparison__prompt__category",
        "comparison__prompt__position",
        "comparison__prompt__instruction",
        "comparison__response_a__model__name",
        "comparison__response_b__model__name",
    )
    for judge, comparison_id, preference, prompt_id, category, position, instruction, name_a, name_b in rows:
        model, against, model_is_a = _orient(name_a, name_b, baseline)
        a, b, tie = votes.get(comparison_id, (0, 0, 0))
        judged = out[judge].setdefault((model, against), _Judged())
        judged.prompt_ids.append(prompt_id)
        judged.categories.append(category)
        judged.positions.append(position)
        judged.instructions.append(instruction)
        judged.counts.append((a, b, tie) if model_is_a else (b, a, tie))
        # preference 1 = response A better: the model's score is 2 - preference when it is response A.
        judged.scores.append(2.0 - preference if model_is_a else preference - 1.0)
    return out


def _excerpt(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _verdict_words(score: float, model: str, against: str) -> str:
    return model if score > 0.5 else against if score < 0.5 else "tie"


def judge_comparison(*, campaign: Campaign, n_boot: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """Per imported judge: its entry per pair (`stats.judges.JudgePairStats` fields with model and baseline),
    and the comparisons where it and the raters disagree most (at most TOP_DISAGREEMENTS, largest gap first;
    comparisons where they agree exactly are not listed).
    Empty when no judge was imported."""
    result = []
    for j, (judge, pairs) in enumerate(sorted(_judged(campaign).items())):
        entries: list[dict[str, Any]] = []
        worst: list[dict[str, Any]] = []
        for p, ((model, against), judged) in enumerate(sorted(pairs.items())):
            counts, scores = np.array(judged.counts, dtype=np.int64), np.array(judged.scores)
            stats = judge_pair_stats(
                counts=counts, judge_score=scores, rng=np.random.default_rng([seed, 3, j, p]), n_boot=n_boot
            )
            entries.append({"judge": judge, "model": model, "baseline": against, **stats.as_dict()})
            gaps, humans = disagreement(counts=counts, judge_score=scores), human_score(counts)
            for k in np.flatnonzero(np.isfinite(gaps) & (gaps > 0)):  # only where they disagree at all
                worst.append(
                    {
                        "prompt_id": judged.prompt_ids[k],
                        "position": judged.positions[k],
                        "instruction": _excerpt(judged.instructions[k]),
                        "model": model,
                        "baseline": against,
                        "votes_model": int(counts[k, FIRST]),
                        "votes_baseline": int(counts[k, SECOND]),
                        "votes_tie": int(counts[k, TIE]),
                        "raters_score": 100.0 * float(humans[k]),
                        "judge_score": 100.0 * float(scores[k]),
                        "judge_verdict": _verdict_words(float(scores[k]), model, against),
                        "disagreement": float(gaps[k]),
                    }
                )
        worst.sort(key=lambda row: (-float(row["disagreement"]), int(row["position"]), str(row["model"])))
        result.append({"judge": judge, "pairs": entries, "disagreements": worst[:TOP_DISAGREEMENTS]})
    return result


def judge_rows(*, campaign: Campaign, n_boot: int = 1000, seed: int = 0) -> Iterator[list[Any]]:
    """The judges export: one row per (judge, pair) in JUDGE_COLUMNS order."""
    keys = {"agreement_comparisons": "agreement_units"}
    for judge in judge_comparison(campaign=campaign, n_boot=n_boot, seed=seed):
        for entry in judge["pairs"]:
            yield [entry[keys.get(column, column)] for column in JUDGE_COLUMNS]


def judgment_rows(*, campaign: Campaign) -> Iterator[list[Any]]:
    """The judgments export: one row per judged comparison in JUDGMENT_COLUMNS order (scores in percent for the
    pair's model; disagreement from 0 to 1, empty without rater votes)."""
    for judge, pairs in sorted(_judged(campaign).items()):
        for (model, against), judged in sorted(pairs.items()):
            counts, scores = np.array(judged.counts, dtype=np.int64), np.array(judged.scores)
            gaps, humans = disagreement(counts=counts, judge_score=scores), human_score(counts)
            for k in range(len(scores)):
                finite = bool(np.isfinite(gaps[k]))
                yield [
                    judge,
                    judged.prompt_ids[k],
                    judged.categories[k],
                    model,
                    against,
                    100.0 * float(scores[k]),
                    _verdict_words(float(scores[k]), model, against),
                    int(counts[k, FIRST]),
                    int(counts[k, SECOND]),
                    int(counts[k, TIE]),
                    100.0 * float(humans[k]) if finite else "",
                    float(gaps[k]) if finite else "",
                ]


def content_report_rates(*, campaign: Campaign, confidence: float = 0.95) -> list[dict[str, Any]]:
    """Per model of the campaign: how many votes showed one of its answers (attention checks left out), how many
    of those flagged that answer (any kind, and per kind), the rates in percent with Wilson intervals."""
    # Every vote on a real comparison adds one to its `votes_count` in the vote's own statement, so the votes
    # that showed a model's answers are summed over the campaign's comparisons, not counted over its votes.
    comparisons = Comparison.objects.filter(campaign=campaign, is_attention_check=False).order_by()
    shown: dict[str, int] = defaultdict(int)
    for side in ("response_a", "response_b"):
        for name, n in comparisons.values_list(f"{side}__model__name").annotate(n=Sum("votes_count")):
            shown[name] += n or 0
    reports = ContentReport.objects.filter(
        vote__comparison__campaign=campaign, vote__comparison__is_attention_check=False
    ).order_by()
    any_kind = dict(reports.values_list("response__model__name").annotate(n=Count("vote", distinct=True)))
    by_kind: dict[tuple[str, str], int] = {
        (name, kind): n
        for name, kind, n in reports.values_list("response__model__name", "kind").annotate(
            n=Count("vote", distinct=True)
        )
    }
    out = []
    for name in sorted(campaign.models.values_list("name", flat=True)):
        entry: dict[str, Any] = {"model": name, **flag_rate(any_kind.get(name, 0), shown[name], confidence=confidence)}
        entry["kinds"] = {
            kind: flag_rate(by_kind.get((name, kind), 0), shown[name], confidence=confidence) for kind in REPORT_KINDS
        }
        out.append(entry)
    return out


def content_report_rows(*, campaign: Campaign) -> Iterator[list[Any]]:
    """The content reports export: per model, one row for any kind (``any``) and one per kind."""
    for entry in content_report_rates(campaign=campaign):
        for kind, rate in [("any", entry), *entry["kinds"].items()]:
            yield [entry["model"], kind, *(rate[c] for c in ("shown", "flagged", "rate", "ci_low", "ci_high"))]
