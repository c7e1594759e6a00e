"""Reads for analysts: a campaign's analysis, the per-prompt table, AlpacaEval-style annotations, exports.

The analysis always goes through ``comparisons.stats.analyze`` on ``selectors.vote_table``: the same
numbers as ``manage.py analyze`` on the campaign's vote export with the same options.
Exports are generators so views and commands can stream them with bounded memory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Exists, F, Max, OuterRef, Q

from comparisons import plots, vote_copy
from comparisons.judging import (
    CONTENT_REPORT_COLUMNS,
    JUDGE_COLUMNS,
    JUDGMENT_COLUMNS,
    content_report_rows,
    judge_rows,
    judgment_rows,
)
from comparisons.models import Assignment, Campaign, Comparison, Rater, Vote
from comparisons.selectors import (
    VOTE_COLUMNS,
    analysis_table,
    attention_failed_raters,
    served_lengths,
    vote_rows,
)
from comparisons.services import campaign_prompts
from comparisons.stats import SUMMARY_COLUMNS, analyze, csv_lines, summary_rows
from evalsite.cache import cached
from generation.models import Response
from generation.prompting import compose_instruction

EXPORT_KINDS = ("votes", "prompts", "summary", "annotations", "judges", "judgments", "content_reports")
PROMPT_COLUMNS = [
    "prompt_id",
    "category",
    "instruction",
    "input",
    "model_a",
    "output_a",
    "model_b",
    "output_b",
    "votes",
    "votes_a",
    "votes_b",
    "ties",
    "both_bad",
    "majority",
]


# Cached analyses live this long at most; a new vote or a changed flag makes a new key anyway.
ANALYSIS_CACHE_SECONDS = 3600


def _analysis_cache_key(campaign: Campaign, options: dict[str, Any]) -> str:
    """A key naming the campaign's votes and flags as they are now, and the analysis options.

    Votes are never edited, only added, and each vote on a real comparison adds one to that comparison's
    `votes_count` in the statement that writes it: their sum changes with every such vote, and is read from
    the campaign's comparisons, not counted over a million votes (which took longer than the cached page).
    Votes on attention checks (which decide `attention_failed`) are counted by their assignments. A rater
    deleted with their votes changes the count of all raters (of every campaign: a small table, and a join
    anywhere also raises the highest id). The flagged raters who rated here are listed (flagging changes the
    analysis)."""
    collected = vote_copy.real_votes_count(campaign)
    gold_votes = Assignment.objects.filter(
        comparison__campaign=campaign, comparison__is_attention_check=True, status=Assignment.Status.VOTED
    ).count()
    raters = Rater.objects.aggregate(n=Count("pk"), last=Max("pk"))
    rated_here = Assignment.objects.filter(rater=OuterRef("pk"), comparison__campaign=campaign)
    flagged = sorted(Rater.objects.filter(flagged=True).filter(Exists(rated_here)).values_list("pk", flat=True))
    state = {
        # The creation time tells this campaign from one that reuses its id in a re-created database.
        "campaign": [campaign.pk, campaign.created_at.isoformat()],
        "baseline": campaign.baseline_id,
        "votes": [collected, gold_votes],
        "raters": [raters["n"], raters["last"]],
        "flagged": flagged,
        "min_seconds": settings.MIN_SECONDS_PER_VOTE,
        **options,
    }
    digest = hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()
    return f"blindeval:analysis:{campaign.pk}:{digest}"


def campaign_analysis(
    *,
    campaign: Campaign,
    n_boot: int = 1000,
    seed: int = 0,
    exclude_flagged: bool = False,
    ci: str = "bca",
    exclude_identity_reports: bool = False,
    use_cache: bool = True,
) -> dict[str, Any] | None:
    """``analyze`` on the campaign's votes (the votes export's table); None while there is no vote.

    ``exclude_flagged`` drops votes of raters who failed an attention check in this campaign (the export's
    ``attention_failed``) or are flagged now, and votes cast faster than ``settings.MIN_SECONDS_PER_VOTE``;
    what was left out is then under ``left_out`` (see `_left_out`), which is also what `analyze` needs to
    reproduce the figures from the votes export. ``exclude_identity_reports`` drops every vote on a pair a
    rater reported as revealing who wrote it.
    The campaign's baseline, when set and already voted on, orients the pairs.

    The result is cached under the campaign's vote count, last vote and flagged raters (one aggregate
    query to check), so the results page of a large campaign is computed once per change, not per
    view; an unreachable cache only costs the recomputation.
    """
    options: dict[str, Any] = {"n_boot": n_boot, "seed": seed, "exclude_flagged": exclude_flagged, "ci": ci}
    if exclude_identity_reports:
        options["exclude_identity_reports"] = True
    if not use_cache:
        return _analysis(campaign=campaign, **options)
    key = _analysis_cache_key(campaign, options)
    # Wrapped: a campaign without votes has no analysis (None), which is worth keeping too.
    stored = cached(
        cache, key, lambda: {"analysis": _analysis(campaign=campaign, **options)}, ANALYSIS_CACHE_SECONDS,
        what="Analysis",
    )  # fmt: skip
    return stored["analysis"]


# The drawing code is part of what a cached figure depends on: a change to it draws the figures anew.
_FIGURES_CODE = hashlib.sha256(Path(plots.__file__).read_bytes()).hexdigest()[:16]


def results_figures(analysis: dict[str, Any]) -> dict[str, str]:
    """The results page's two figures (pairs' win rates, the ranking) as inline SVG.

    Drawing them took longer than the rest of a cached results page, so they are cached under a digest of
    everything they are drawn from (the pairs, the ranking, the confidence level and the drawing code)."""
    confidence = analysis["settings"]["confidence"]
    drawn_from = {"pairs": analysis["pairs"], "ranking": analysis["ranking"], "confidence": confidence}
    digest = hashlib.sha256(json.dumps(drawn_from, sort_keys=True, default=str).encode()).hexdigest()
    key = f"blindeval:figures:{_FIGURES_CODE}:{digest}"
    return cached(
        cache,
        key,
        lambda: {
            "forest_svg": plots.forest_plot_svg(analysis["pairs"], confidence=confidence),
            "ranking_svg": plots.ranking_plot_svg(analysis["ranking"], confidence=confidence),
        },
        ANALYSIS_CACHE_SECONDS,
        what="Figures",
    )


def _analysis(
    *,
    campaign: Campaign,
    n_boot: int,
    seed: int,
    exclude_flagged: bool,
    ci: str,
    exclude_identity_reports: bool = False,
) -> dict[str, Any] | None:
    frame = analysis_table(campaign=campaign)
    if frame.empty:
        return None
    # The flagged raters (few) who voted here, each found by one probe of the votes' rater index: joining the
    # campaign's assignments to find them took a tenth of a second on a million votes.
    voted_here = Vote.objects.filter(rater=OuterRef("pk"), comparison__campaign=campaign)
    flagged_here = Rater.objects.filter(flagged=True).filter(Exists(voted_here))
    flagged = set(flagged_here.values_list("user__username", flat=True))
    frame["flagged"] = frame["rater"].isin(flagged)
    # Too fast to have read both answers (settings.MIN_SECONDS_PER_VOTE): kept, but left out with the flagged.
    min_seconds = float(settings.MIN_SECONDS_PER_VOTE) if exclude_flagged else None
    baseline = campaign.baseline.name if campaign.baseline is not None else None
    if baseline is not None and baseline not in set(frame["model_a"].unique()) | set(frame["model_b"].unique()):
        baseline = None
    analysis = analyze(
        frame, baseline=baseline, n_boot=n_boot, seed=seed, ci=ci, exclude_flagged=exclude_flagged,
        min_seconds=min_seconds, exclude_identity_reports=exclude_identity_reports,
    )  # fmt: skip
    if min_seconds is not None:
        analysis["left_out"] = _left_out(frame, min_seconds=min_seconds)
    return analysis


def _left_out(frame: pd.DataFrame, *, min_seconds: float) -> dict[str, Any]:
    """What "exclude flagged" leaves out of the vote table: raters who failed an attention check here or are
    flagged now (with their votes), then the other votes cast faster than ``min_seconds``. ``flagged_only``
    names the flagged raters the export does not mark (no failed attention check here: flagged by an admin or
    in another campaign); `analyze` leaves them out with ``--exclude-rater``."""
    failed = set(frame.loc[frame["attention_failed"], "rater"])
    flagged = set(frame.loc[frame["flagged"], "rater"])
    raters = failed | flagged
    by_rater = frame["rater"].isin(raters)
    fast = ~by_rater & (frame["seconds"].astype(float) < min_seconds)
    return {
        "raters": len(raters),
        "rater_votes": int(by_rater.sum()),
        "fast_votes": int(fast.sum()),
        "min_seconds": min_seconds,
        "flagged_only": sorted(flagged - failed),
    }


def identity_leak_rates(*, campaign: Campaign) -> list[dict[str, Any]]:
    """Per model of the campaign: how many of its answers to the campaign's prompts self-identify (name the model,
    its maker or itself as an AI), of how many, and the rate in percent (None without answers). Two queries."""
    responses = Response.objects.filter(
        prompt__in=[p.pk for p in campaign_prompts(campaign=campaign)], model__in=campaign.models.all()
    )
    totals = dict(responses.values_list("model__name").annotate(n=Count("pk")).order_by())
    leaking = dict(responses.exclude(identity_matches=[]).values_list("model__name").annotate(n=Count("pk")).order_by())
    return [
        {
            "model": name,
            "leaking": leaking.get(name, 0),
            "responses": totals.get(name, 0),
            "rate": 100.0 * leaking.get(name, 0) / totals[name] if totals.get(name) else None,
        }
        for name in sorted(campaign.models.values_list("name", flat=True))
    ]


def identity_reports_count(*, campaign: Campaign) -> int:
    """Votes whose rater reported that an answer of the pair reveals who wrote it (attention checks left out)."""
    return Vote.objects.filter(
        comparison__campaign=campaign,
        comparison__is_attention_check=False,
        identity_reported=True,
    ).count()


def _majority(model_a: str, model_b: str, counts: tuple[int, int, int, int]) -> str:
    if sum(counts) == 0:
        return ""
    top = max(counts)
    labels = [label for label, n in zip((model_a, model_b, "tie", "both_bad"), counts, strict=True) if n == top]
    return labels[0] if len(labels) == 1 else "split"


def prompt_rows(*, campaign: Campaign, chunk_size: int = 500) -> Iterator[list[Any]]:
    """One row per compared pair of responses (PROMPT_COLUMNS): both texts, vote counts and the majority.

    ``majority`` is the model name, ``tie`` or ``both_bad`` with the most votes, ``split`` when two
    verdicts share the top, empty without votes. Attention-check pairs are left out.
    """
    vote = "assignments__vote"
    qs = (
        Comparison.objects.filter(campaign=campaign, is_attention_check=False)
        .annotate(
            n_a=Count(vote, filter=Q(assignments__vote__winner_response=F("response_a"))),
            n_b=Count(vote, filter=Q(assignments__vote__winner_response=F("response_b"))),
            n_tie=Count(vote, filter=Q(assignments__vote__choice=Vote.Choice.TIE)),
            n_bad=Count(vote, filter=Q(assignments__vote__choice=Vote.Choice.BOTH_BAD)),
        )
        .order_by("prompt__position", "pk")
        .values_list(
            "prompt__external_id",
            "prompt__category",
            "prompt__instruction",
            "prompt__input",
            "response_a__model__name",
            "response_a__text",
            "response_b__model__name",
            "response_b__text",
            "n_a",
            "n_b",
            "n_tie",
            "n_bad",
        )
    )
    for prompt_id, category, instruction, input_text, model_a, out_a, model_b, out_b, *counts in qs.iterator(
        chunk_size=chunk_size
    ):
        n_a, n_b, n_tie, n_bad = counts
        yield [
            prompt_id,
            category,
            instruction,
            input_text,
            model_a,
            out_a,
            model_b,
            out_b,
            n_a + n_b + n_tie + n_bad,
            n_a,
            n_b,
            n_tie,
            n_bad,
            _majority(model_a, model_b, (n_a, n_b, n_tie, n_bad)),
        ]


def annotation_items(*, campaign: Campaign, chunk_size: int = 500) -> Iterator[dict[str, Any]]:
    """One AlpacaEval-style annotation per vote (attention checks left out).

    ``output_1``/``generator_1`` is the campaign's baseline when it is in the pair (AlpacaEval's
    reference side), otherwise response A; ``preference`` is 1 or 2 for the better output, 1.5 for a
    tie or both bad. ``instruction`` is the instruction, a blank line and the input when there is one.
    """
    baseline_id = campaign.baseline_id
    qs = (
        Vote.objects.filter(comparison__campaign=campaign, comparison__is_attention_check=False)
        .order_by("comparison__prompt__position", "comparison_id", "submitted_at", "pk")
        .values_list(
            "comparison__prompt__external_id",
            "comparison__prompt__category",
            "comparison__prompt__instruction",
            "comparison__prompt__input",
            "comparison__response_a_id",
            "comparison__response_a__model_id",
            "comparison__response_a__model__name",
            "comparison__response_a__text",
            "comparison__response_b_id",
            "comparison__response_b__model_id",
            "comparison__response_b__model__name",
            "comparison__response_b__text",
            "winner_response_id",
            "rater__user__username",
        )
    )
    for row in qs.iterator(chunk_size=chunk_size):
        prompt_id, category, instruction, input_text = row[:4]
        a_id, _, a_name, a_text, b_id, b_model_id, b_name, b_text, winner_id, rater = row[4:]
        first, second = (a_id, a_name, a_text), (b_id, b_name, b_text)
        if baseline_id is not None and b_model_id == baseline_id:
            first, second = second, first
        preference = 1.5 if winner_id is None else (1 if winner_id == first[0] else 2)
        yield {
            "instruction": compose_instruction(instruction, input_text),
            "output_1": first[2],
            "generator_1": first[1],
            "output_2": second[2],
            "generator_2": second[1],
            "preference": preference,
            "annotator": rater,
            "prompt_id": prompt_id,
            "category": category,
        }


def annotations_json(*, campaign: Campaign) -> Iterator[str]:
    """The annotations as one JSON list, produced piece by piece."""
    yield "["
    for index, item in enumerate(annotation_items(campaign=campaign)):
        yield ("\n" if index == 0 else ",\n") + json.dumps(item, ensure_ascii=False)
    yield "\n]\n"


def vote_csv_rows(campaign: Campaign) -> Iterator[list[Any]]:
    """The votes export's rows, booleans spelled `true`/`false` as in the CSV."""
    booleans = [VOTE_COLUMNS.index("attention_failed"), VOTE_COLUMNS.index("identity_reported")]
    for row in vote_rows(campaign=campaign):
        for column in booleans:
            row[column] = "true" if row[column] else "false"
        yield row


class VotesCsv:
    """The votes export as CSV text in pieces, header first; ``rows`` counts the votes written so far.

    PostgreSQL reads the votes with COPY (`comparisons.vote_copy.VoteCsv`), other databases through
    `vote_csv_rows` and `csv_lines`; ``use_copy`` forces one way. The text is the same either way."""

    def __init__(self, *, campaign: Campaign, use_copy: bool | None = None) -> None:
        self.campaign = campaign
        self.use_copy = connection.vendor == "postgresql" if use_copy is None else use_copy
        self.rows = 0

    def __iter__(self) -> Iterator[str]:
        if self.use_copy:
            source = vote_copy.VoteCsv(
                self.campaign,
                header=VOTE_COLUMNS,
                failed=attention_failed_raters(campaign=self.campaign),
                lengths=served_lengths(campaign=self.campaign),
            )
            for piece in source:
                self.rows = source.rows
                yield piece
            return
        yield from csv_lines(VOTE_COLUMNS, self._counted(vote_csv_rows(self.campaign)))

    def _counted(self, rows: Iterator[list[Any]]) -> Iterator[list[Any]]:
        for row in rows:
            self.rows += 1
            yield row


def export_stream(*, campaign: Campaign, kind: str, n_boot: int = 1000, seed: int = 0) -> Iterator[str]:
    """The text of one export (``votes``, ``prompts``, ``summary`` CSV or ``annotations`` JSON; ``judges``,
    ``judgments`` and ``content_reports`` CSV from `comparisons.judging`), in pieces."""
    if kind == "votes":
        return iter(VotesCsv(campaign=campaign))
    if kind == "prompts":
        return csv_lines(PROMPT_COLUMNS, prompt_rows(campaign=campaign))
    if kind == "summary":
        analysis = campaign_analysis(campaign=campaign, n_boot=n_boot, seed=seed)
        return csv_lines(SUMMARY_COLUMNS, summary_rows(analysis) if analysis else [])
    if kind == "annotations":
        return annotations_json(campaign=campaign)
    if kind == "judges":
        return csv_lines(JUDGE_COLUMNS, judge_rows(campaign=campaign, n_boot=n_boot, seed=seed))
    if kind == "judgments":
        return csv_lines(JUDGMENT_COLUMNS, judgment_rows(campaign=campaign))
    if kind == "content_reports":
        return csv_lines(CONTENT_REPORT_COLUMNS, content_report_rows(campaign=campaign))
    raise ValueError(f"Unknown export {kind!r}; use one of {', '.join(EXPORT_KINDS)}.")
