"""A vote carries its assignment's comparison, rater, left/right order and routing probability, and its
comparison's campaign (`Vote`), so the results page and the export read one table and a rater's votes in a campaign
are one index range: the copy must be the assignment's, for votes cast through the service and for the votes that
existed before the columns did (migrations 0010 and 0012)."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import F, Q

from comparisons import services
from comparisons.models import Vote
from tests.comparisons.factories import build_campaign, invite_rater

BEFORE = [("comparisons", "0009_sessions_of_the_moved_auth_backend")]
AFTER = [("comparisons", "0010_votes_carry_their_assignment")]


def _differing(votes):
    return votes.exclude(
        Q(comparison=F("assignment__comparison"))
        & Q(rater=F("assignment__rater"))
        & Q(left_is_a=F("assignment__left_is_a"))
        & Q(campaign=F("assignment__comparison__campaign"))
        & (
            Q(routing_probability=F("assignment__routing_probability"))
            | Q(routing_probability__isnull=True, assignment__routing_probability__isnull=True)
        )
    )


@pytest.mark.django_db
@pytest.mark.parametrize("routing", ["uniform", "adaptive"])
def test_votes_cast_through_the_service_carry_their_assignments_fields(routing):
    cache.clear()
    campaign = build_campaign(
        slug=f"carry-{routing}", model_names=["zebra-model-7", "quokka-llm-13b", "okapi-chat-3"], n_prompts=4,
        k=2, routing=routing, attention_check_rate=0.3,
    )  # fmt: skip
    for _ in range(3):
        rater = invite_rater(campaign)
        while (assignment := services.assignment_next(rater=rater, campaign=campaign)) is not None:
            result = services.vote_cast(rater=rater, token=assignment.token, choice="A")
            # The instance the service returns holds the copy too, as read back from the database.
            stored = Vote.objects.get(pk=result.vote.pk)
            vote = result.vote
            assert (vote.comparison_id, vote.rater_id, vote.left_is_a, vote.campaign_id) == (
                stored.comparison_id, stored.rater_id, stored.left_is_a, campaign.pk,
            )  # fmt: skip
            assert (
                services.rater_votes_done(rater=rater, campaign=campaign)
                == Vote.objects.filter(assignment__rater=rater, assignment__comparison__campaign=campaign).count()
            )
            assert vote.routing_probability == stored.routing_probability
    votes = Vote.objects.filter(comparison__campaign=campaign)
    assert votes.count() > 10 and votes.filter(comparison__is_attention_check=True).exists()
    routed = votes.filter(routing_probability__isnull=False, comparison__is_attention_check=False)
    assert routed.exists() == (routing == "adaptive")
    assert not _differing(votes).exists()


@pytest.mark.django_db(transaction=True)
def test_the_migration_fills_the_copy_of_votes_cast_before_it():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    Campaign, Comparison = old.get_model("comparisons", "Campaign"), old.get_model("comparisons", "Comparison")
    Rater, Assignment = old.get_model("comparisons", "Rater"), old.get_model("comparisons", "Assignment")
    OldVote, User = old.get_model("comparisons", "Vote"), old.get_model("auth", "User")
    EvalSet, Prompt = old.get_model("generation", "EvalSet"), old.get_model("generation", "Prompt")
    ModelEntry, Response = old.get_model("generation", "ModelEntry"), old.get_model("generation", "Response")
    eval_set = EvalSet.objects.create(name="old-set")
    models = [ModelEntry.objects.create(name=name) for name in ("zebra-model-7", "quokka-llm-13b")]
    campaign = Campaign.objects.create(slug="old", title="Old", eval_set=eval_set, votes_per_comparison=3)
    comparisons = []
    for i in range(3):
        prompt = Prompt.objects.create(eval_set=eval_set, position=i, external_id=f"t{i}", instruction=f"Do {i}.")
        a, b = (Response.objects.create(prompt=prompt, model=m, text=f"{m.name} {i}") for m in models)
        comparisons.append(Comparison.objects.create(campaign=campaign, prompt=prompt, response_a=a, response_b=b))
    raters = [Rater.objects.create(user=User.objects.create(username=f"old-{i}")) for i in range(2)]
    expected = {}
    for n, (comparison, rater) in enumerate((c, r) for c in comparisons for r in raters):
        assignment = Assignment.objects.create(
            comparison=comparison, rater=rater, left_is_a=n % 2 == 0, status="voted",
            leased_until="2026-01-01T00:00:00Z", routing_probability=None if n % 3 else 0.25 + n / 100,
        )  # fmt: skip
        vote = OldVote.objects.create(
            assignment=assignment, choice="tie", seconds=5, submitted_at="2026-01-01T00:00:00Z"
        )
        expected[vote.pk] = (comparison.pk, rater.pk, n % 2 == 0, None if n % 3 else 0.25 + n / 100)
    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps.get_model("comparisons", "Vote")
    filled = {
        pk: (comparison, rater, left_is_a, probability)
        for pk, comparison, rater, left_is_a, probability in new.objects.values_list(
            "pk", "comparison_id", "rater_id", "left_is_a", "routing_probability"
        )
    }
    assert filled == expected
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(latest)
    current = MigrationExecutor(connection).loader.project_state(latest).apps.get_model("comparisons", "Vote")
    assert dict(current.objects.values_list("pk", "campaign_id")) == dict.fromkeys(expected, campaign.pk)
