"""Reads: a campaign's precision tracker (per pair of models and for the campaign) and whether its stopping rule
is met. The statistics are `comparisons.stats.precision` and `comparisons.stats.sequential`; this module only
gathers the votes they take, in one query for the comparisons and one for the votes.

Votes are counted as the results page counts them by default: every vote on a real (not attention-check)
comparison, "both bad" as a tie.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from comparisons.models import Campaign, Comparison, Vote
from comparisons.stats.precision import about, precision_project, precision_sentence
from comparisons.stats.routing import ipw_totals
from comparisons.stats.sequential import DEFAULT_ALPHA, confidence_sequence
from generation.models import ModelEntry


@dataclass(frozen=True)
class PairTracker:
    """One pair of models: its precision now, the votes projected to reach the target, and its confidence
    sequence (anytime-valid; its units are complete comparisons)."""

    model_a: str
    model_b: str
    comparisons: int
    votes: int
    prompts: int
    win_rate: float | None
    half_width: float | None
    votes_more: int | None
    room: int
    reached: bool
    cs_low: float | None
    cs_high: float | None
    cs_units: int
    decisive: bool
    leader: str | None
    weighted_win_rate: float | None
    sentence: str


@dataclass(frozen=True)
class CampaignTracker:
    """The whole campaign: its settings, totals, every pair, and whether it should close by itself (``done``,
    with ``reason``)."""

    campaign: str
    status: str
    target_half_width: float | None
    vote_budget: int | None
    stopping_rule: str
    routing: str
    votes: int
    capacity: int
    votes_more: int | None
    pairs: list[PairTracker] = field(default_factory=list)
    done: bool = False
    reason: str = ""
    sentence: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _num(x: float) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), 2)


def campaign_precision(*, campaign: Campaign) -> CampaignTracker:
    """The tracker of ``campaign``: per pair, votes, the 95% interval's half-width (points), the votes projected
    to reach the campaign's target half-width and whether it is reached, the anytime-valid confidence sequence
    and whether it is decisive; for the campaign, the totals and whether the stopping rule or budget is met."""
    k = campaign.votes_per_comparison
    comparisons = list(
        Comparison.objects.filter(campaign=campaign, is_attention_check=False)
        .order_by()
        .values_list("pk", "prompt_id", "response_a__model_id", "response_b__model_id")
    )
    votes = list(
        Vote.objects.filter(comparison__campaign=campaign, comparison__is_attention_check=False)
        .order_by("submitted_at", "pk")
        .values_list("comparison_id", "winner_model_id", "routing_probability")
    )
    pair_keys = sorted({(a, b) for _, _, a, b in comparisons})
    pair_index = {key: i for i, key in enumerate(pair_keys)}
    names = dict(ModelEntry.objects.filter(pk__in={m for key in pair_keys for m in key}).values_list("pk", "name"))
    n_pairs = len(pair_keys)
    row_of = {pk: i for i, (pk, *_rest) in enumerate(comparisons)}
    comparison_pair = np.array([pair_index[(a, b)] for _, _, a, b in comparisons], dtype=np.int64)
    model_a = np.array([a for _, _, a, _ in comparisons], dtype=np.int64)
    model_b = np.array([b for _, _, _, b in comparisons], dtype=np.int64)

    vote_row = np.array([row_of[c] for c, _, _ in votes], dtype=np.int64)
    winner = np.array([-1 if w is None else w for _, w, _ in votes], dtype=np.int64)
    score = np.where(winner == model_a[vote_row], 1.0, np.where(winner == model_b[vote_row], 0.0, 0.5))
    n_rows = len(comparisons)
    cell_votes = np.bincount(vote_row, minlength=n_rows).astype(float)
    cell_score = np.bincount(vote_row, weights=score, minlength=n_rows)
    target = campaign.target_half_width
    projected = precision_project(
        cell_pair=comparison_pair,
        cell_score=cell_score,
        cell_votes=cell_votes,
        n_pairs=n_pairs,
        target_half_width=target,
    )
    # A comparison enters the confidence sequence when its k votes are in, in the order they completed.
    done_at = np.full(n_rows, -1, dtype=np.int64)
    seen = np.zeros(n_rows, dtype=np.int64)
    for position, row in enumerate(vote_row.tolist()):
        seen[row] += 1
        if seen[row] == k:
            done_at[row] = position
    probability = np.array([np.nan if p is None else p for _, _, p in votes], dtype=float)
    # Weighted win rates as the analysis gives them (stats.weighting): only for a pair whose every vote was routed.
    vote_pair = comparison_pair[vote_row]
    routed = ~np.isnan(probability)
    unrouted = np.bincount(vote_pair[~routed], minlength=n_pairs) > 0
    weighted_score, weights = ipw_totals(
        pair=vote_pair[routed], score=score[routed], probability=probability[routed], n_pairs=n_pairs
    )

    capacity_per_pair = np.bincount(comparison_pair, minlength=n_pairs) * k
    pairs: list[PairTracker] = []
    for index, (a, b) in enumerate(pair_keys):
        complete = np.flatnonzero((comparison_pair == index) & (done_at >= 0))
        units = cell_score[complete[np.argsort(done_at[complete])]] / k
        sequence = confidence_sequence(units, alpha=DEFAULT_ALPHA)
        weighted_rate = None
        if weights[index] > 0 and not unrouted[index]:
            weighted_rate = _num(100.0 * weighted_score[index] / weights[index])
        half = _num(projected.half_width[index])
        more = None if np.isnan(projected.votes_more[index]) else int(projected.votes_more[index])
        votes_here = int(projected.votes[index])
        room = int(capacity_per_pair[index]) - votes_here
        pairs.append(
            PairTracker(
                model_a=names[a],
                model_b=names[b],
                comparisons=int(capacity_per_pair[index] // k),
                votes=votes_here,
                prompts=int(projected.prompts[index]),
                win_rate=_num(projected.win_rate[index]),
                half_width=half,
                votes_more=more,
                room=room,
                reached=target is not None and half is not None and half <= target,
                cs_low=_num(sequence.low),
                cs_high=_num(sequence.high),
                cs_units=sequence.units,
                decisive=sequence.decisive,
                leader=None if not sequence.decisive else (names[a] if sequence.leader > 0 else names[b]),
                weighted_win_rate=weighted_rate,
                sentence=precision_sentence(
                    model_a=names[a],
                    model_b=names[b],
                    votes=votes_here,
                    half_width=half,
                    target=target,
                    votes_more=more,
                    room=room,
                ),
            )
        )
    total = len(votes)
    capacity = int(capacity_per_pair.sum())
    known_more = [p.votes_more for p in pairs if p.votes_more is not None]
    votes_more = sum(known_more) if target is not None and len(known_more) == len(pairs) and pairs else None
    done, reason = _stop_reason(campaign, pairs=pairs, votes=total)
    return CampaignTracker(
        campaign=campaign.slug,
        status=campaign.status,
        target_half_width=target,
        vote_budget=campaign.vote_budget,
        stopping_rule=campaign.stopping_rule,
        routing=campaign.routing,
        votes=total,
        capacity=capacity,
        votes_more=votes_more,
        pairs=pairs,
        done=done,
        reason=reason,
        sentence=_campaign_sentence(campaign, pairs=pairs, votes=total, votes_more=votes_more, reason=reason),
    )


def _stop_reason(campaign: Campaign, *, pairs: list[PairTracker], votes: int) -> tuple[bool, str]:
    """Whether the campaign's budget or stopping rule says it is finished, and why (in words)."""
    if campaign.vote_budget is not None and votes >= campaign.vote_budget:
        return True, f"the vote budget of {campaign.vote_budget} is spent ({votes} votes)"
    if not pairs:
        return False, ""
    if campaign.stopping_rule == Campaign.Stopping.PRECISION and all(p.reached for p in pairs):
        return True, f"every pair reached ±{campaign.target_half_width:g} points"
    if campaign.stopping_rule == Campaign.Stopping.DECISIVE and all(p.decisive for p in pairs):
        return True, "every pair is decisive (its anytime-valid 95% confidence sequence leaves 50% out)"
    return False, ""


def _campaign_sentence(
    campaign: Campaign, *, pairs: list[PairTracker], votes: int, votes_more: int | None, reason: str
) -> str:
    head = f"{votes} vote{'' if votes == 1 else 's'} on {len(pairs)} pair{'' if len(pairs) == 1 else 's'}"
    if campaign.vote_budget is not None:
        head += f" (budget {campaign.vote_budget})"
    parts = [head]
    if campaign.target_half_width is not None:
        reached = sum(p.reached for p in pairs)
        target = f"±{campaign.target_half_width:g}"
        parts.append(f"{reached} of {len(pairs)} at {target}")
        if votes_more:
            parts.append(f"about {about(votes_more)} more votes to bring every pair to {target}")
    if campaign.stopping_rule == Campaign.Stopping.DECISIVE:
        parts.append(f"{sum(p.decisive for p in pairs)} of {len(pairs)} decisive")
    sentence = "; ".join(parts)
    if reason:
        verb = "closed" if campaign.status == Campaign.Status.CLOSED else "finished"
        sentence += f". {verb.capitalize()}: {reason}"
    return sentence
