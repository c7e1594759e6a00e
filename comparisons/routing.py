"""Reads for adaptive routing: the chance each pair of models in a campaign has of getting the next vote.

The decision is `comparisons.stats.routing` (a Bradley–Terry fit of the votes so far, a one-step look-ahead,
one vote in ten spread uniformly); this module gathers the votes per pair and the pairs that still have a
comparison under k, and keeps the plan in the shared cache for a few seconds, so the rating loop does not
refit on every request. `routing_draw` picks a pair for one rater and says with what probability, which the
lease records (its inverse weights the vote, see the stats module).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from django.core.cache import cache
from django.db.models import Count, F, Q

from comparisons.models import Campaign, Comparison, Vote
from comparisons.stats import routing as stats_routing
from evalsite.cache import cached

ROUTING_CACHE_SECONDS = 10


@dataclass(frozen=True)
class RoutingPlan:
    """Pairs as comparisons hold them, (model_a_id, model_b_id), and each one's chance of the next vote."""

    pairs: list[tuple[int, int]]
    probability: list[float]


def routing_plan_compute(*, campaign: Campaign) -> RoutingPlan:
    """The plan from the campaign's votes now (no cache): pairs with no comparison under k get 0."""
    k = campaign.votes_per_comparison
    real = Comparison.objects.filter(campaign=campaign, is_attention_check=False).order_by()
    rows = list(
        real.values_list("response_a__model_id", "response_b__model_id").annotate(
            open=Count("pk", filter=Q(votes_count__lt=k))
        )
    )
    pairs = sorted((a, b) for a, b, _ in rows)
    if not pairs:
        return RoutingPlan(pairs=[], probability=[])
    still_open = {(a, b): n > 0 for a, b, n in rows}
    models = sorted({m for pair in pairs for m in pair})
    index = {m: i for i, m in enumerate(models)}
    tallies = {
        (a, b): (n, wins_a, wins_b)
        for a, b, n, wins_a, wins_b in Vote.objects.filter(
            comparison__campaign=campaign, comparison__is_attention_check=False
        )
        .order_by()
        .values_list("comparison__response_a__model_id", "comparison__response_b__model_id")
        .annotate(
            n=Count("pk"),
            wins_a=Count("pk", filter=Q(winner_model_id=F("comparison__response_a__model_id"))),
            wins_b=Count("pk", filter=Q(winner_model_id=F("comparison__response_b__model_id"))),
        )
    }
    games = np.array([tallies.get(pair, (0, 0, 0))[0] for pair in pairs], dtype=float)
    wins_a = np.array([tallies.get(pair, (0, 0, 0))[1] for pair in pairs], dtype=float)
    wins_b = np.array([tallies.get(pair, (0, 0, 0))[2] for pair in pairs], dtype=float)
    first = np.array([index[a] for a, _ in pairs], dtype=np.int64)
    second = np.array([index[b] for _, b in pairs], dtype=np.int64)
    fit = stats_routing.bt_fit_pairs(
        n_models=len(models),
        pair_first=first,
        pair_second=second,
        first_score=(wins_a + 0.5 * (games - wins_a - wins_b))[None, :],
        games=games[None, :],
    )
    available = np.array([[still_open[pair] for pair in pairs]])
    probs = stats_routing.probabilities(fit, pair_first=first, pair_second=second, available=available)[0]
    return RoutingPlan(pairs=pairs, probability=[float(p) for p in probs])


def routing_plan(*, campaign: Campaign) -> RoutingPlan:
    """The campaign's plan, from the shared cache when one was made in the last ROUTING_CACHE_SECONDS."""
    key = f"blindeval:routing:{campaign.pk}:{campaign.created_at.timestamp()}"

    def compute() -> tuple[list, list]:
        plan = routing_plan_compute(campaign=campaign)
        return plan.pairs, plan.probability

    pairs, probability = cached(cache, key, compute, ROUTING_CACHE_SECONDS, what="Routing plan")
    return RoutingPlan(pairs=[tuple(p) for p in pairs], probability=list(probability))  # type: ignore[misc]


def routing_draw(
    plan: RoutingPlan, *, exclude: set[tuple[int, int]], rng: random.Random | None = None
) -> tuple[tuple[int, int], float] | None:
    """A pair drawn from the plan among those not in ``exclude`` (pairs this rater has nothing left in), and its
    probability given that exclusion (the plan renormalized); None when no pair with a chance is left."""
    rng = rng or random.Random()  # noqa: S311 - routing needs no cryptographic randomness
    left = [(pair, p) for pair, p in zip(plan.pairs, plan.probability, strict=True) if pair not in exclude and p > 0]
    total = sum(p for _, p in left)
    if not left or total <= 0:
        return None
    draw = rng.random() * total
    for pair, p in left:
        draw -= p
        if draw < 0:
            return pair, p / total
    pair, p = left[-1]
    return pair, p / total
