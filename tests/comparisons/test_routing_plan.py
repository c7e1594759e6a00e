"""The routing plan of an adaptive campaign, read from its votes (the draw the rating loop makes from it)."""

from __future__ import annotations

import random

import pytest
from django.core.cache import cache

from comparisons import services
from comparisons.models import Campaign, Comparison
from comparisons.routing import routing_draw, routing_plan, routing_plan_compute
from tests.comparisons.factories import build_campaign, invite_rater

pytestmark = pytest.mark.django_db

A, B, C = "zebra-model-7", "quokka-llm-13b", "okapi-chat-3"


def vote(campaign: Campaign, *, votes: int, winner) -> None:  # noqa: ANN001 - winner(name_a, name_b) -> name | None
    rater = invite_rater(campaign)
    for _ in range(votes):
        assignment = services.assignment_next(rater=rater, campaign=campaign)
        assert assignment is not None
        comparison = assignment.comparison
        left, right = (comparison.response_a, comparison.response_b)[:: 1 if assignment.left_is_a else -1]
        wanted = winner(left.model.name, right.model.name)
        choice = "A" if wanted == left.model.name else "B" if wanted == right.model.name else "tie"
        services.vote_cast(rater=rater, token=assignment.token, choice=choice)


def names(campaign: Campaign) -> dict[int, str]:
    return {m.pk: m.name for m in campaign.models.all()}


def test_the_next_vote_goes_mostly_to_the_two_models_whose_order_is_open():
    # A and B tie every time; both always beat C. Which of A and B is better is the open question.
    campaign = build_campaign(model_names=[A, B, C], n_prompts=40, k=1, routing="adaptive")
    vote(campaign, votes=60, winner=lambda x, y: None if C not in (x, y) else (y if x == C else x))
    plan = routing_plan_compute(campaign=campaign)
    label = names(campaign)
    by_name = {frozenset(label[m] for m in pair): p for pair, p in zip(plan.pairs, plan.probability, strict=True)}
    assert sum(plan.probability) == pytest.approx(1.0)
    assert by_name[frozenset({A, B})] == pytest.approx(0.9 + 0.1 / 3)
    assert min(plan.probability) == pytest.approx(0.1 / 3)  # every pair keeps a chance: weights stay finite


def test_full_pairs_get_no_votes_and_a_rater_who_has_seen_a_pair_draws_among_the_others():
    campaign = build_campaign(model_names=[A, B, C], n_prompts=3, k=1, routing="adaptive")
    ids = {v: k for k, v in names(campaign).items()}
    full = (ids[A], ids[B]) if (ids[A], ids[B]) in routing_plan_compute(campaign=campaign).pairs else (ids[B], ids[A])
    Comparison.objects.filter(campaign=campaign, response_a__model_id=full[0], response_b__model_id=full[1]).update(
        votes_count=1
    )
    plan = routing_plan_compute(campaign=campaign)
    chance = dict(zip(plan.pairs, plan.probability, strict=True))
    assert chance[full] == 0 and sum(chance.values()) == pytest.approx(1.0)
    others = [pair for pair in plan.pairs if pair != full]
    drawn, probability = routing_draw(plan, exclude={others[0]}, rng=random.Random(1))
    assert drawn == others[1] and probability == pytest.approx(1.0)
    assert routing_draw(plan, exclude=set(others)) is None


def test_the_plan_is_kept_for_a_few_seconds():
    cache.clear()
    campaign = build_campaign(model_names=[A, B, C], n_prompts=5, k=1, routing="adaptive")
    first = routing_plan(campaign=campaign)
    Comparison.objects.filter(campaign=campaign).update(votes_count=1)  # every pair full now
    assert routing_plan(campaign=campaign) == first  # cached
    cache.clear()
    assert sum(routing_plan(campaign=campaign).probability) == 0
