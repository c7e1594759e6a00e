"""Opening campaigns: which comparisons are made, which prompts are skipped, bad settings refused."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from comparisons import services
from comparisons.models import Campaign, Comparison
from tests.comparisons.factories import build_campaign, build_eval_set

pytestmark = pytest.mark.django_db


def test_two_models_one_comparison_per_prompt():
    campaign = build_campaign(n_prompts=5)
    assert campaign.status == Campaign.Status.OPEN
    assert campaign.opened_at is not None
    assert Comparison.objects.filter(campaign=campaign).count() == 5
    for comparison in Comparison.objects.filter(campaign=campaign):
        assert comparison.response_a.prompt_id == comparison.prompt_id == comparison.response_b.prompt_id
        assert comparison.response_a.model.name == "quokka-llm-13b"  # pairs ordered by model name
        assert comparison.response_b.model.name == "zebra-model-7"


def test_all_pairs_of_three_models_and_baseline_mode():
    eval_set, models, _ = build_eval_set(n_prompts=4, model_names=["m-one", "m-two", "m-three"])
    all_pairs = services.campaign_create(slug="all", title="", eval_set=eval_set, models=models)
    services.campaign_open(campaign=all_pairs)
    assert all_pairs.comparisons.count() == 4 * 3

    base = models[0]
    vs_base = services.campaign_create(slug="base", title="", eval_set=eval_set, models=models, baseline=base)
    services.campaign_open(campaign=vs_base)
    assert vs_base.comparisons.count() == 4 * 2
    assert set(vs_base.comparisons.values_list("response_b__model__name", flat=True)) == {"m-one"}


def test_prompt_limit_and_subset():
    eval_set, models, prompts = build_eval_set(n_prompts=6)
    limited = services.campaign_create(slug="lim", title="", eval_set=eval_set, models=models, prompt_limit=2)
    services.campaign_open(campaign=limited)
    assert sorted(limited.comparisons.values_list("prompt__position", flat=True)) == [0, 1]
    subset = services.campaign_create(slug="sub", title="", eval_set=eval_set, models=models, prompts=prompts[3:5])
    services.campaign_open(campaign=subset)
    assert sorted(subset.comparisons.values_list("prompt__position", flat=True)) == [3, 4]


def test_prompts_without_both_responses_are_skipped_and_reported():
    eval_set, models, _ = build_eval_set(n_prompts=4, missing={(1, "zebra-model-7"), (3, "quokka-llm-13b")})
    campaign = services.campaign_create(slug="gaps", title="", eval_set=eval_set, models=models)
    report = services.campaign_open(campaign=campaign)
    assert report.created == 2
    assert report.skipped == [("user_oriented_task_1", ["zebra-model-7"]), ("user_oriented_task_3", ["quokka-llm-13b"])]


def test_reopening_does_not_duplicate_comparisons():
    campaign = build_campaign(n_prompts=3)
    services.campaign_pause(campaign=campaign)
    report = services.campaign_open(campaign=campaign)
    assert report.created == 0
    assert campaign.comparisons.count() == 3


def test_attention_checks_pair_an_answer_with_an_off_prompt_answer():
    campaign = build_campaign(n_prompts=10, attention_check_rate=0.2)
    golds = list(campaign.comparisons.filter(is_attention_check=True))
    assert len(golds) == 2
    for gold in golds:
        assert gold.response_a.prompt_id == gold.prompt_id
        assert gold.response_b.prompt_id != gold.prompt_id


def test_attention_checks_take_one_answer_of_each_model_like_real_pairs():
    """A gold pair of one model's texts carries that model's habits on both sides; real pairs never do."""
    campaign = build_campaign(n_prompts=40, attention_check_rate=1.0)
    golds = list(campaign.comparisons.filter(is_attention_check=True).select_related("response_a", "response_b"))
    assert len(golds) == 40
    assert all(gold.response_a.model_id != gold.response_b.model_id for gold in golds)
    # Either model's answer can be the correct side.
    assert len({gold.response_a.model_id for gold in golds}) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"votes_per_comparison": 0}, "at least 1"),
        ({"attention_check_rate": 1.5}, "between 0 and 1"),
        ({"prompt_limit": 0}, "prompt limit"),
        # Precision, stopping and routing (issue 12).
        ({"stopping_rule": "precision"}, "set a target half-width"),
        ({"target_half_width": 0.0}, "above 0 and at most 50"),
        ({"target_half_width": 75.0}, "above 0 and at most 50"),
        ({"target_half_width": float("nan")}, "above 0 and at most 50"),
        ({"vote_budget": 0}, "at least 1"),
        ({"stopping_rule": "whenever"}, "must be one of none, precision, decisive"),
        ({"routing": "adaptive"}, "needs three or more models"),
        ({"routing": "random"}, "must be one of uniform, adaptive"),
    ],
)
def test_bad_settings_are_refused_with_a_message(kwargs, message):
    eval_set, models, _ = build_eval_set(n_prompts=2)
    with pytest.raises(ValidationError, match=message):
        services.campaign_create(slug="bad", title="", eval_set=eval_set, models=models, **kwargs)
    assert not Campaign.objects.filter(slug="bad").exists()


def test_one_model_and_duplicate_slug_are_refused():
    eval_set, models, _ = build_eval_set(n_prompts=2)
    with pytest.raises(ValidationError, match="two different models"):
        services.campaign_create(slug="one", title="", eval_set=eval_set, models=[models[0], models[0]])
    services.campaign_create(slug="dup", title="", eval_set=eval_set, models=models)
    with pytest.raises(ValidationError, match="already exists"):
        services.campaign_create(slug="dup", title="", eval_set=eval_set, models=models)


def test_opening_without_any_complete_prompt_fails_and_changes_nothing():
    eval_set, models, _ = build_eval_set(n_prompts=2, missing={(0, "zebra-model-7"), (1, "zebra-model-7")})
    campaign = services.campaign_create(slug="empty", title="", eval_set=eval_set, models=models)
    with pytest.raises(ValidationError, match="No prompt"):
        services.campaign_open(campaign=campaign)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
    assert campaign.comparisons.count() == 0


def test_tokens_are_unguessable():
    campaign = build_campaign(n_prompts=1)
    # 32 random bytes, URL-safe base64: 43 characters, 256 bits.
    assert len(campaign.invite_token) >= 43


def test_update_checks_the_same_rules_as_create_and_changes_nothing_when_refused():
    campaign = build_campaign(slug="draft-one", n_prompts=2, open_it=False)
    with pytest.raises(ValidationError) as refused:
        services.campaign_update(campaign=campaign, attention_check_rate=1.5, lease_seconds=0)
    assert refused.value.message_dict == {
        "attention_check_rate": ["The attention-check rate is a share between 0 and 1."],
        "lease_seconds": ["A served pair must be held for at least 1 second."],
    }
    campaign.refresh_from_db()
    assert (campaign.attention_check_rate, campaign.lease_seconds) == (0.0, 600)
    updated = services.campaign_update(campaign=campaign, votes_per_comparison=4, title="")
    assert (updated.votes_per_comparison, updated.title) == (4, "draft-one")  # an empty title is the slug


def test_what_the_comparisons_are_built_from_cannot_change_once_they_exist():
    campaign = build_campaign(slug="opened", n_prompts=2, model_names=["zebra-model-7", "quokka-llm-13b", "third-m"])
    first_two = list(campaign.models.order_by("name"))[:2]
    with pytest.raises(ValidationError) as refused:
        services.campaign_update(campaign=campaign, models=first_two)
    assert list(refused.value.message_dict) == ["models"]
    assert "cannot change now" in refused.value.message_dict["models"][0]
    assert campaign.models.count() == 3
    # Re-sending the same models (a form does) is no change; other settings still change.
    same = list(campaign.models.all())
    assert services.campaign_update(campaign=campaign, models=same, lease_seconds=120).lease_seconds == 120
