"""Reads: the blinded rater view, progress, and the vote table every analysis and export starts from.

`rater_view_for_assignment` is the ONE gate between stored comparisons and
anything a rater can reach: it returns texts labelled A/B in the assignment's
left/right order, an opaque token and progress counts, and nothing else
(no model, response, run or comparison id). Every text it returns is the
canonical served text (`comparisons.served_text`), never the stored bytes.
"""

from __future__ import annotations

import statistics as stdlib_statistics
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

import pandas as pd
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Max, Q, Sum

from comparisons import rating_queries, vote_copy
from comparisons.blinding import BYTE_LEVEL_FEATURES, CI_KIND, FEATURE_NAMES, AuditSettings, audit_gold, audit_pair
from comparisons.markdown import render_text
from comparisons.models import Assignment, Campaign, Comparison, Rater, Vote
from comparisons.served_text import served_text
from comparisons.stats.table import EXPORT_COLUMNS, used_in_order
from evalsite.cache import cached
from generation.models import ModelEntry, Prompt, Response

# The one vote schema: the export, `analyze` and the results page all read it.
VOTE_COLUMNS = list(EXPORT_COLUMNS)
# What `stats.analyze` reads of them: all but the campaign, the time and the rationale.
ANALYSIS_COLUMNS = [name for name in VOTE_COLUMNS if name not in ("campaign", "submitted_at", "rationale")]


class Progress(TypedDict):
    done: int
    total: int


def rater_progress(*, rater: Rater, campaign: Campaign) -> Progress:
    """Votes this rater cast in the campaign, of their quota (the per-rater limit, else every pair there is)."""
    done = rating_queries.votes_done(rater_id=rater.pk, campaign_id=campaign.pk)
    total = campaign.comparisons_per_rater or campaign.comparisons_count
    return {"done": done, "total": max(total, done)}


def rater_work_done(*, rater: Rater, campaign: Campaign) -> bool:
    """Whether a rater with nothing left to receive (`assignment_next` gave None) earned the completion code:
    their votes reached the campaign's per-rater cap, or, in a campaign that is not merely paused, they cast
    at least one vote and at least as many votes as pairs they passed over (skipped or let expire).
    Skipping through a campaign therefore earns no code."""
    counts = Assignment.objects.filter(rater=rater, comparison__campaign=campaign).aggregate(
        voted=Count("pk", filter=Q(status=Assignment.Status.VOTED)),
        passed=Count("pk", filter=~Q(status=Assignment.Status.VOTED)),
    )
    voted, passed = counts["voted"], counts["passed"]
    if campaign.comparisons_per_rater is not None and voted >= campaign.comparisons_per_rater:
        return True
    if campaign.status == Campaign.Status.PAUSED:
        return False
    return voted >= 1 and voted >= passed


def campaign_by_slug(slug: str) -> Campaign | None:
    """The campaign with this slug, or None: one written-out statement, as every rater request asks it."""
    return rating_queries.campaign_by_slug(slug)


def rater_view_for_assignment(*, assignment: Assignment, include_html: bool = False) -> dict[str, Any]:
    """What a rater may see of an assignment: the API's JSON body (plus HTML rendered in the campaign's
    rendering, Markdown or plain text, when asked).

    Instruction, input and both responses are canonical served texts (the HTML is rendered from them), so
    a model's byte-level habits (leading whitespace, line endings, invisible characters) never reach a rater.
    One query (the rating loop's hot path), the campaign's rendering included; none when `services.assignment_next`
    read it already (its `view_row` annotation)."""
    row = getattr(assignment, "view_row", None) or rating_queries.rater_view_row(assignment.pk)
    if row is None:
        raise Assignment.DoesNotExist(f"No assignment {assignment.pk}.")
    token, left_is_a, instruction, input_text, text_a, text_b, done, total, render_mode = row
    instruction, input_text, text_a, text_b = (served_text(t) for t in (instruction, input_text, text_a, text_b))
    left, right = (text_a, text_b) if left_is_a else (text_b, text_a)
    view: dict[str, Any] = {
        "assignment": token,
        "instruction": instruction,
        "input": input_text,
        "responses": {"A": left, "B": right},
        "progress": {"done": done, "total": max(total, done)},
    }
    if include_html:
        view["html"] = {
            "instruction": render_text(instruction, mode=render_mode),
            "input": render_text(input_text, mode=render_mode) if input_text else "",
            "A": render_text(left, mode=render_mode),
            "B": render_text(right, mode=render_mode),
        }
    return view


def vote_public(vote: Vote) -> dict[str, Any]:
    """A stored vote as the rater may see it again (screen-relative, no winner identity)."""
    back = {Vote.Choice.LEFT: "A", Vote.Choice.RIGHT: "B"}
    return {
        "assignment": vote.assignment.token,
        "choice": back.get(vote.choice, vote.choice),  # type: ignore[call-overload]
        "rationale": vote.rationale,
        "submitted_at": vote.submitted_at.isoformat(),
    }


# ---------------------------------------------------------------- the vote table


_VOTE_FIELDS = [
    "comparison__prompt__external_id",
    "comparison__prompt__category",
    "comparison__response_a__model__name",
    "comparison__response_b__model__name",
    "left_is_a",
    "choice",
    "winner_model__name",
    "rater__user__username",
    "rater_id",
    "submitted_at",
    "seconds",
    "comparison__response_a_id",
    "comparison__response_b_id",
    "rationale",
    "identity_reported",
    "routing_probability",
]


def served_lengths(*, campaign: Campaign, chunk_size: int = 500) -> dict[int, int]:
    """Characters of the canonical served text of every response in the campaign's real comparisons, by id:
    the lengths raters read (one pass over the texts, whatever the number of votes)."""
    pairs = Comparison.objects.filter(campaign=campaign, is_attention_check=False).order_by()
    in_pairs = Q(pk__in=pairs.values("response_a_id")) | Q(pk__in=pairs.values("response_b_id"))
    texts = Response.objects.filter(in_pairs).order_by().values_list("pk", "text").iterator(chunk_size=chunk_size)
    return {pk: len(served_text(text)) for pk, text in texts}


def attention_failed_raters(*, campaign: Campaign) -> set[int]:
    """Ids of the raters who failed an attention check in this campaign (the export's ``attention_failed``)."""
    return set(
        Vote.objects.filter(comparison__campaign=campaign, attention_failed=True).values_list("rater_id", flat=True)
    )


def vote_rows(*, campaign: Campaign, chunk_size: int = 2000) -> Iterator[list[Any]]:
    """One list per vote in VOTE_COLUMNS order, streamed.

    Attention-check votes are left out (they compare no two models); `attention_failed` says whether the
    vote's rater failed any attention check in this campaign, so analyses can drop such raters' votes.
    `winner` is the picked model's name, `tie` or `both_bad`; `submitted_at` is ISO 8601 in UTC;
    `length_a`/`length_b` are the characters of model_a's and model_b's canonical served texts;
    `identity_reported` whether this rater reported that an answer of the pair reveals who wrote it;
    `routing_probability` the chance the pair had of being served (adaptive routing only, else None).
    This is the definition; on PostgreSQL `comparisons.vote_copy` reads the same rows faster.
    """
    # One query for the raters who failed a check, instead of a correlated
    # subquery per vote row: the export of a million votes depends on it.
    failed_raters = attention_failed_raters(campaign=campaign)
    lengths = served_lengths(campaign=campaign)
    qs = Vote.objects.filter(comparison__campaign=campaign, comparison__is_attention_check=False).order_by(
        "submitted_at", "pk"
    )
    for row in qs.values_list(*_VOTE_FIELDS).iterator(chunk_size=chunk_size):
        (prompt_id, category, model_a, model_b, left_is_a, choice, winner_name, rater, rater_id, at, secs,
         response_a_id, response_b_id, rationale, reported, probability) = row  # fmt: skip
        winner = winner_name if choice in (Vote.Choice.LEFT, Vote.Choice.RIGHT) else choice
        yield [
            campaign.slug,
            prompt_id,
            category,
            model_a,
            model_b,
            model_a if left_is_a else model_b,
            winner,
            rater,
            rater_id in failed_raters,
            _iso(at),
            round(float(secs), 3),
            lengths[response_a_id],
            lengths[response_b_id],
            rationale,
            bool(reported),
            probability,
        ]


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


_BOOLEAN_TYPES: dict[str, Any] = {"attention_failed": bool, "identity_reported": bool}
_NUMBER_COLUMNS = {"seconds": "float64", "length_a": "int64", "length_b": "int64", "routing_probability": "float64"}


def _vote_frame(data: Any, columns: list[str] = VOTE_COLUMNS, *, text: str = "str") -> pd.DataFrame:
    """A DataFrame with exactly ``columns`` from rows or from columns, each column of one fixed type:
    text as pandas strings (or ``text``), booleans, ``seconds`` and ``routing_probability`` as floats (NaN:
    none), lengths as integers."""
    frame = pd.DataFrame(data, columns=columns)
    types: dict[str, Any] = {name: text for name in columns}
    types |= {name: kind for name, kind in (_BOOLEAN_TYPES | _NUMBER_COLUMNS).items() if name in columns}
    return frame.astype(types)


def vote_table(*, campaign: Campaign, use_copy: bool | None = None) -> pd.DataFrame:
    """The campaign's votes as a DataFrame with exactly VOTE_COLUMNS: the rows of the votes export.

    PostgreSQL reads them with COPY (`comparisons.vote_copy`: a million votes in about a second), other
    databases through `vote_rows`; ``use_copy`` forces one way (tests compare them). Same frame either way."""
    if use_copy is None:
        use_copy = connection.vendor == "postgresql"
    if use_copy:
        failed, lengths = attention_failed_raters(campaign=campaign), served_lengths(campaign=campaign)
        columns = vote_copy.vote_columns(campaign=campaign, failed=failed, lengths=lengths)
        return _vote_frame(columns if columns is not None else [])
    return _vote_frame(list(vote_rows(campaign=campaign)))


def analysis_table(*, campaign: Campaign, use_copy: bool | None = None) -> pd.DataFrame:
    """The campaign's votes with the ANALYSIS_COLUMNS of `vote_table`, the same values in the same order: what
    the results page analyses. PostgreSQL reads them with a leaner COPY (`vote_copy.analysis_columns`)."""
    if use_copy is None:
        use_copy = connection.vendor == "postgresql"
    if use_copy:
        failed, lengths = attention_failed_raters(campaign=campaign), served_lengths(campaign=campaign)
        columns = vote_copy.analysis_columns(campaign=campaign, failed=failed, lengths=lengths)
        frame = _vote_frame(columns if columns is not None else [], ANALYSIS_COLUMNS, text="category")
    else:
        frame = vote_table(campaign=campaign, use_copy=False)[ANALYSIS_COLUMNS]
    # Names repeat over a million votes: as categories (their values sorted, only those that occur) the
    # analysis codes each distinct name once instead of every row.
    for name in _TEXT_ANALYSIS_COLUMNS:
        frame[name] = _used_categories_sorted(frame[name])
    return frame


def _used_categories_sorted(values: pd.Series) -> pd.Categorical:
    """The column as a categorical of only the values that occur, sorted. The COPY's columns are categoricals
    already: the used ones are found by counting codes (pandas' own way hashes a million codes per column)."""
    if not isinstance(values.dtype, pd.CategoricalDtype) or (values.cat.codes.to_numpy() < 0).any():
        used = values.astype("category").cat.remove_unused_categories()
        return used.cat.reorder_categories(sorted(used.cat.categories)).array
    codes, kept = used_in_order(values.array)
    return pd.Categorical.from_codes(codes, values.cat.categories.take(kept))


_TEXT_ANALYSIS_COLUMNS = ("prompt_id", "category", "model_a", "model_b", "left_model", "winner", "rater")


# ---------------------------------------------------------------- blinding audit


@dataclass(frozen=True)
class ServedPair:
    """One comparison as raters receive it (test-side truth: which model wrote which text)."""

    prompt_id: str
    model_a: str
    model_b: str
    text_a: str
    text_b: str
    is_attention_check: bool


def campaign_served_pairs(*, campaign: Campaign, stored: bool = False) -> list[ServedPair]:
    """Every comparison of the campaign (attention checks included) with both texts as raters receive them:
    the canonical served text, or the stored bytes with `stored=True` (what raters would get without it)."""
    serve = (lambda text: text) if stored else served_text
    # Four single-table reads joined here rather than one five-way join: as a server-side cursor PostgreSQL
    # planned that join for the first rows and, with the statistics a busy database happened to have, ran
    # it for over half an hour on 300 comparisons.
    comparisons = list(
        Comparison.objects.filter(campaign=campaign)
        .order_by()
        .values_list("pk", "prompt_id", "response_a_id", "response_b_id", "is_attention_check")
    )
    prompts = {
        pk: (position, external_id)
        for pk, position, external_id in Prompt.objects.filter(pk__in={c[1] for c in comparisons})
        .order_by()
        .values_list("pk", "position", "external_id")
    }
    response_ids = {pk for c in comparisons for pk in c[2:4]}
    stored_texts = Response.objects.filter(pk__in=response_ids).order_by().values_list("pk", "model_id", "text")
    responses = {pk: (model_id, text) for pk, model_id, text in stored_texts}
    names = dict(ModelEntry.objects.filter(pk__in={m for m, _ in responses.values()}).values_list("pk", "name"))
    comparisons.sort(key=lambda c: (prompts[c[1]][0], c[0]))
    return [
        ServedPair(
            prompts[prompt_id][1],
            names[responses[a][0]],
            names[responses[b][0]],
            serve(responses[a][1]),
            serve(responses[b][1]),
            is_check,
        )
        for _, prompt_id, a, b, is_check in comparisons
    ]


def campaign_blinding_audit(
    *, campaign: Campaign, stored: bool = False, settings: AuditSettings | None = None
) -> dict[str, Any]:
    """The blinding audit of a campaign (`comparisons.blinding`): per pair of models, how well surface features
    of the served texts tell which model wrote which side, and whether attention checks can be told from real
    pairs. JSON-ready; the keys are documented in the README ("Blinding audit")."""
    settings = settings or AuditSettings()
    pairs = campaign_served_pairs(campaign=campaign, stored=stored)
    real = [p for p in pairs if not p.is_attention_check]
    gold = [p for p in pairs if p.is_attention_check]
    by_models: dict[tuple[str, str], list[ServedPair]] = defaultdict(list)
    for pair in real:
        by_models[(pair.model_a, pair.model_b)].append(pair)
    audits = [
        audit_pair(
            texts_a=[p.text_a for p in group],
            texts_b=[p.text_b for p in group],
            groups=[p.prompt_id for p in group],
            model_a=model_a,
            model_b=model_b,
            settings=settings,
        )
        for (model_a, model_b), group in sorted(by_models.items())
    ]

    def sides(group: list[ServedPair]) -> tuple[list[str], list[str], list[str]]:
        return [p.text_a for p in group], [p.text_b for p in group], [p.prompt_id for p in group]

    return {
        "campaign": campaign.slug,
        "texts": "stored" if stored else "served",
        "pairs": audits,
        "attention_checks": {
            "byte_level": audit_gold(real=sides(real), gold=sides(gold), names=BYTE_LEVEL_FEATURES, settings=settings),
            "all": audit_gold(real=sides(real), gold=sides(gold), names=FEATURE_NAMES, settings=settings),
        },
        "settings": {
            "folds": settings.folds,
            "bootstrap": settings.n_boot,
            "seed": settings.seed,
            "confidence": settings.confidence,
            "ci": CI_KIND,
        },
    }


BLINDING_AUDIT_CACHE_SECONDS = 24 * 3600


def campaign_blinding_audit_cached(*, campaign: Campaign) -> dict[str, Any] | None:
    """The default audit of the campaign's served texts for the admin's progress page, kept in the shared cache
    (its comparisons and texts do not change once it is open); None before the campaign has comparisons."""
    stats = Comparison.objects.filter(campaign=campaign).aggregate(n=Count("pk"), last=Max("pk"))
    if not stats["n"]:
        return None
    key = f"blindeval:blinding-audit:{campaign.pk}:{campaign.created_at.timestamp()}:{stats['n']}:{stats['last']}"
    return cached(
        cache, key, lambda: campaign_blinding_audit(campaign=campaign), BLINDING_AUDIT_CACHE_SECONDS,
        what="Blinding audit",
    )  # fmt: skip


# ---------------------------------------------------------------- admin progress


@dataclass
class RaterProgress:
    username: str
    participant_id: str
    votes: int
    median_seconds: float | None
    attention_failures: int
    flagged: bool
    flag_reason: str


@dataclass(frozen=True)
class VoteTotals:
    """A campaign's progress: k votes wanted per real comparison (attention checks left out), votes collected."""

    comparisons: int
    comparisons_complete: int
    needed: int
    collected: int

    @property
    def missing(self) -> int:
        return max(self.needed - self.collected, 0)

    @property
    def percent(self) -> float:
        return 100.0 * self.collected / self.needed if self.needed else 100.0


def campaign_vote_totals(*, campaign: Campaign) -> VoteTotals:
    """Votes wanted, collected and still missing, and the comparisons that have all theirs; one query."""
    k = campaign.votes_per_comparison
    totals = Comparison.objects.filter(campaign=campaign, is_attention_check=False).aggregate(
        comparisons=Count("pk"),
        collected=Sum("votes_count"),
        complete=Count("pk", filter=Q(votes_count__gte=k)),
    )
    return VoteTotals(
        comparisons=totals["comparisons"],
        comparisons_complete=totals["complete"],
        needed=totals["comparisons"] * k,
        collected=totals["collected"] or 0,
    )


@dataclass
class CampaignProgress:
    totals: VoteTotals
    attention_checks: int
    live_leases: int
    raters: list[RaterProgress] = field(default_factory=list)

    @property
    def flagged(self) -> list[RaterProgress]:
        return [r for r in self.raters if r.flagged]


def campaign_progress(*, campaign: Campaign) -> CampaignProgress:
    """Votes collected of needed, live leases, and per-rater counts with median seconds per vote."""
    from django.utils import timezone

    progress = CampaignProgress(
        totals=campaign_vote_totals(campaign=campaign),
        attention_checks=Comparison.objects.filter(campaign=campaign, is_attention_check=True).count(),
        live_leases=Assignment.objects.filter(
            comparison__campaign=campaign,
            status=Assignment.Status.LEASED,
            leased_until__gt=timezone.now(),
        ).count(),
    )
    seconds: dict[int, list[float]] = defaultdict(list)
    failures: dict[int, int] = defaultdict(int)
    for rater_id, vote_seconds, failed in Vote.objects.filter(comparison__campaign=campaign).values_list(
        "rater_id", "seconds", "attention_failed"
    ):
        seconds[rater_id].append(vote_seconds)
        failures[rater_id] += int(failed)
    raters = Rater.objects.filter(pk__in=list(seconds)).select_related("user") | Rater.objects.filter(
        campaign=campaign
    ).select_related("user")
    for rater in raters.distinct().order_by("created_at"):
        times = seconds.get(rater.pk, [])
        progress.raters.append(
            RaterProgress(
                username=rater.user.username,
                participant_id=rater.participant_id,
                votes=len(times),
                median_seconds=stdlib_statistics.median(times) if times else None,
                attention_failures=failures.get(rater.pk, 0),
                flagged=rater.flagged,
                flag_reason=rater.flag_reason,
            )
        )
    return progress
