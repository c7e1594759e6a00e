"""An adaptive campaign in the rating loop: pairs routed by the plan, k an upper bound, probabilities recorded.

That the recorded probabilities make weighted estimates unbiased (and plain ones drift) is shown by simulation
of the same router in tests/comparisons/stats/test_routing.py; here the loop is checked to use it faithfully."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from django.core.cache import cache

from comparisons import services
from comparisons.models import Assignment, Comparison
from comparisons.tracker import campaign_precision
from tests.comparisons.factories import build_campaign, invite_rater

pytestmark = pytest.mark.django_db

A, B, C = "zebra-model-7", "quokka-llm-13b", "okapi-chat-3"


def test_votes_go_where_the_ranking_is_open_with_their_probability_recorded(settings):
    cache.clear()
    campaign = build_campaign(model_names=[A, B, C], n_prompts=40, k=2, routing="adaptive")
    rng = random.Random(5)
    served = Counter()
    for _ in range(6):
        rater = invite_rater(campaign)
        for _ in range(25):
            assignment = services.assignment_next(rater=rater, campaign=campaign)
            assert assignment is not None
            assert 0 < assignment.routing_probability <= 1
            comparison = assignment.comparison
            shown = {comparison.response_a.model.name, comparison.response_b.model.name}
            served[frozenset(shown)] += 1
            left = (comparison.response_a if assignment.left_is_a else comparison.response_b).model.name
            # A and B are equally good (a coin), C loses to both: the open question is A against B.
            winner = rng.choice([A, B]) if C not in shown else (shown - {C}).pop()
            services.vote_cast(rater=rater, token=assignment.token, choice="A" if left == winner else "B")
        cache.clear()  # a fresh plan for the next rater, as after the cache's few seconds
    assert served[frozenset({A, B})] > 0.5 * sum(served.values())  # uniform routing would give it a third
    assert min(served.values()) > 0  # exploration: every pair is still served
    assert max(Comparison.objects.filter(campaign=campaign).values_list("votes_count", flat=True)) <= 2
    stored = Assignment.objects.filter(comparison__campaign=campaign, status=Assignment.Status.VOTED)
    assert not stored.filter(routing_probability__isnull=True).exists()
    # The tracker's weighted win rate is the inverse-probability-weighted share of A's wins against B.
    (pair,) = [p for p in campaign_precision(campaign=campaign).pairs if {p.model_a, p.model_b} == {A, B}]
    rows = stored.filter(
        comparison__response_a__model__name=pair.model_a, comparison__response_b__model__name=pair.model_b
    ).values_list("routing_probability", "vote__winner_model__name")
    weights = [(1 / p, 1.0 if w == pair.model_a else 0.0) for p, w in rows]
    expected = 100 * sum(w * s for w, s in weights) / sum(w for w, _ in weights)
    assert pair.weighted_win_rate == pytest.approx(expected, abs=0.01)


def test_uniform_campaigns_record_no_probability_and_an_adaptive_one_runs_out_cleanly():
    uniform = build_campaign(slug="uni", n_prompts=3, k=1)
    rater = invite_rater(uniform)
    assert services.assignment_next(rater=rater, campaign=uniform).routing_probability is None
    cache.clear()
    adaptive = build_campaign(slug="ada", model_names=[A, B, C], n_prompts=2, k=1, routing="adaptive")
    rater = invite_rater(adaptive)
    seen = []
    while (assignment := services.assignment_next(rater=rater, campaign=adaptive)) is not None:
        services.vote_cast(rater=rater, token=assignment.token, choice="tie")
        seen.append(assignment.comparison_id)
    assert sorted(seen) == sorted(Comparison.objects.filter(campaign=adaptive).values_list("pk", flat=True))
