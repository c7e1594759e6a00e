"""The precision tracker, the campaign's stopping settings and closing by itself, as an admin meets them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from comparisons import services
from comparisons.models import Campaign
from comparisons.selectors import vote_table
from comparisons.services import campaigns as campaign_services
from comparisons.stats.pairs import cells_build
from comparisons.stats.precision import precision_project
from comparisons.stats.table import votes_prepare
from comparisons.tracker import campaign_precision
from evalsite.celery import app as celery_app
from tests.comparisons.factories import build_campaign, build_eval_set, invite_rater

pytestmark = pytest.mark.django_db

THREE = ["zebra-model-7", "quokka-llm-13b", "okapi-chat-3"]


def vote_until_full(campaign: Campaign, *, favour: str | None, raters: int = 1, limit: int | None = None) -> int:
    """Raters take pairs until nothing is left (or ``limit`` votes), voting for ``favour`` when it is shown, a
    tie otherwise. Returns the votes cast."""
    cast = 0
    for _ in range(raters):
        rater = invite_rater(campaign)
        while limit is None or cast < limit:
            assignment = services.assignment_next(rater=rater, campaign=campaign)
            if assignment is None:
                break
            comparison = assignment.comparison
            left, right = (comparison.response_a, comparison.response_b)[:: 1 if assignment.left_is_a else -1]
            choice = "A" if left.model.name == favour else "B" if right.model.name == favour else "tie"
            services.vote_cast(rater=rater, token=assignment.token, choice=choice)
            cast += 1
    return cast


# ---------------------------------------------------------------- settings


def test_good_settings_are_stored_and_adaptive_routing_is_checked_again_when_opening():
    campaign = build_campaign(
        model_names=THREE, target_half_width=5.0, vote_budget=900, stopping_rule="precision", routing="adaptive"
    )
    assert (campaign.target_half_width, campaign.vote_budget, campaign.stopping_rule, campaign.routing) == (
        5.0,
        900,
        "precision",
        "adaptive",
    )
    two = build_campaign(slug="two", open_it=False)
    Campaign.objects.filter(pk=two.pk).update(routing="adaptive")  # as an edit in the admin could
    two.refresh_from_db()
    with pytest.raises(ValidationError, match="three or more models"):
        services.campaign_open(campaign=two)
    two.refresh_from_db()
    assert two.status == Campaign.Status.DRAFT and not two.comparisons.exists()


def test_create_campaign_command_takes_the_settings_and_refuses_bad_ones(capsys):
    eval_set, _, _ = build_eval_set(n_prompts=3, model_names=THREE)
    base = ["create_campaign", "--evalset", eval_set.name, "--models", *THREE]
    call_command(*base[:1], "cmd-ok", *base[1:], "--target-half-width", "4.5", "--vote-budget", "100",
                 "--stop", "decisive", "--routing", "adaptive")  # fmt: skip
    made = Campaign.objects.get(slug="cmd-ok")
    assert (made.target_half_width, made.vote_budget, made.stopping_rule, made.routing) == (
        4.5,
        100,
        "decisive",
        "adaptive",
    )
    with pytest.raises(CommandError, match="set a target half-width"):
        call_command(*base[:1], "cmd-bad", *base[1:], "--stop", "precision")
    with pytest.raises(CommandError, match="at most 50"):
        call_command(*base[:1], "cmd-bad", *base[1:], "--target-half-width", "80")
    assert not Campaign.objects.filter(slug="cmd-bad").exists()


# ---------------------------------------------------------------- the tracker


def test_the_tracker_agrees_with_the_statistics_on_the_exported_votes():
    campaign = build_campaign(n_prompts=30, k=2, target_half_width=10.0)
    vote_until_full(campaign, favour="zebra-model-7", raters=2, limit=45)
    tracker = campaign_precision(campaign=campaign)
    (pair,) = tracker.pairs
    votes = votes_prepare(vote_table(campaign=campaign))
    cells = cells_build(
        first=votes.first, second=votes.second, outcome=votes.outcome, prompt=votes.prompt,
        n_models=len(votes.models), n_prompts=len(votes.prompts),
    )  # fmt: skip
    expected = precision_project(
        cell_pair=cells.cell_pair, cell_score=cells.score, cell_votes=cells.votes, n_pairs=1, target_half_width=10.0
    )
    assert pair.votes == tracker.votes == 45
    assert pair.half_width == pytest.approx(expected.half_width[0], abs=0.01)
    assert pair.votes_more == expected.votes_more[0]
    first_model = votes.models[0]  # the statistics' first model is the alphabetically first
    rate = expected.win_rate[0] if pair.model_a == first_model else 100 - expected.win_rate[0]
    assert pair.win_rate == pytest.approx(rate, abs=0.01)
    assert pair.sentence.startswith(f"{pair.model_a} vs {pair.model_b}: ±{pair.half_width:.1f} points after 45 votes")
    assert pair.room == 60 - 45
    assert not tracker.done  # no stopping rule, no budget


def test_campaign_status_command_prints_the_sentences_and_json(capsys):
    campaign = build_campaign(model_names=THREE, n_prompts=12, k=1, target_half_width=5.0)
    vote_until_full(campaign, favour="okapi-chat-3", limit=30)
    call_command("campaign_status", campaign.slug)
    text = capsys.readouterr().out
    first_line, *pair_lines = text.strip().splitlines()
    assert first_line.startswith(f"{campaign.slug} (open): 30 votes on 3 pairs; 0 of 3 at ±5")
    assert len(pair_lines) == 3
    assert all(" vs " in line and "more to reach ±5" in line and "anytime-valid" in line for line in pair_lines)
    call_command("campaign_status", campaign.slug, "--json")
    data = json.loads(capsys.readouterr().out)
    assert data["votes"] == 30 and data["capacity"] == 36 and data["target_half_width"] == 5.0
    assert {p["model_a"] for p in data["pairs"]} <= set(THREE) and len(data["pairs"]) == 3
    for key in ("votes", "half_width", "votes_more", "cs_low", "cs_high", "decisive", "sentence", "reached"):
        assert key in data["pairs"][0]
    with pytest.raises(CommandError, match="No campaign with slug 'nope'"):
        call_command("campaign_status", "nope")


def test_the_progress_page_shows_the_tracker(client):
    campaign = build_campaign(n_prompts=10, k=1, target_half_width=5.0)
    vote_until_full(campaign, favour=None, limit=8)
    user = get_user_model().objects.create_superuser("boss", "boss@example.org", "pw-123456789")
    client.force_login(user)
    page = client.get(reverse("admin:comparisons_campaign_progress", args=[campaign.pk])).content.decode()
    (pair,) = campaign_precision(campaign=campaign).pairs
    assert 'id="precision"' in page
    assert pair.sentence.replace("±", "±") in page
    assert "8 votes on 1 pair" in page


# ---------------------------------------------------------------- closing by itself


def test_a_campaign_closes_when_its_vote_budget_is_spent_and_only_once():
    campaign = build_campaign(n_prompts=10, k=1, vote_budget=6)
    vote_until_full(campaign, favour=None, limit=5)
    assert services.campaign_close_if_done(campaign_id=campaign.pk) is None
    vote_until_full(campaign, favour=None, limit=1)
    assert services.campaign_close_if_done(campaign_id=campaign.pk) == "the vote budget of 6 is spent (6 votes)"
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CLOSED and campaign.closed_at is not None
    closed_at = campaign.closed_at
    assert services.campaign_close_if_done(campaign_id=campaign.pk) is None  # a rerun changes nothing
    campaign.refresh_from_db()
    assert campaign.closed_at == closed_at
    assert services.campaign_close_if_done(campaign_id=10**9) is None  # a campaign gone: quietly nothing


def test_a_campaign_closes_when_every_pair_reached_its_precision():
    campaign = build_campaign(n_prompts=40, k=1, target_half_width=25.0, stopping_rule="precision")
    vote_until_full(campaign, favour=None, limit=1)
    assert services.campaign_close_if_done(campaign_id=campaign.pk) is None  # one prompt: no precision yet
    vote_until_full(campaign, favour="zebra-model-7", limit=20)
    assert services.campaign_close_if_done(campaign_id=campaign.pk) == "every pair reached ±25 points"
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CLOSED


def test_decisive_stopping_needs_the_anytime_valid_sequence_not_a_lucky_streak():
    campaign = build_campaign(n_prompts=60, k=1, stopping_rule="decisive")
    vote_until_full(campaign, favour="quokka-llm-13b", limit=5)
    # Five wins in five votes would already exclude 50% by an exact test at the end; the sequence waits.
    assert services.campaign_close_if_done(campaign_id=campaign.pk) is None
    vote_until_full(campaign, favour="quokka-llm-13b", limit=30)
    (pair,) = campaign_precision(campaign=campaign).pairs
    assert pair.decisive and pair.leader == "quokka-llm-13b" and pair.cs_low is not None
    assert services.campaign_close_if_done(campaign_id=campaign.pk).startswith("every pair is decisive")


def test_without_a_rule_or_budget_a_campaign_never_closes_by_itself():
    campaign = build_campaign(n_prompts=5, k=1)
    vote_until_full(campaign, favour="zebra-model-7")
    assert services.campaign_close_if_done(campaign_id=campaign.pk) is None
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.OPEN


def test_the_vote_that_spends_the_budget_closes_the_campaign(django_capture_on_commit_callbacks, monkeypatch, request):
    # Through the rating loop: each committed vote queues a stop check (run at once here).
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    request.addfinalizer(lambda: setattr(celery_app.conf, "task_always_eager", eager))
    monkeypatch.setattr(campaign_services, "_stop_checks_due", {})
    campaign = build_campaign(n_prompts=10, k=1, vote_budget=3)
    rater = invite_rater(campaign)
    for n in range(3):
        assignment = services.assignment_next(rater=rater, campaign=campaign)
        assert assignment is not None
        campaign_services._stop_checks_due.clear()  # no throttling between these votes
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            services.vote_cast(rater=rater, token=assignment.token, choice="tie")
        assert len(callbacks) == 1
        campaign.refresh_from_db()
        assert campaign.status == (Campaign.Status.CLOSED if n == 2 else Campaign.Status.OPEN)
    assert services.assignment_next(rater=rater, campaign=campaign) is None


def test_stop_checks_are_throttled_per_campaign(monkeypatch):
    queued: list[int] = []
    from comparisons import tasks

    monkeypatch.setattr(tasks.campaign_stop_check, "apply_async", lambda args, countdown: queued.append(args[0]))
    monkeypatch.setattr(campaign_services, "_stop_checks_due", {})
    with_rule = build_campaign(n_prompts=3, k=1, vote_budget=10)
    without = build_campaign(slug="no-rule", n_prompts=3, k=1)
    for _ in range(5):
        services.campaign_stop_check_soon(campaign_id=with_rule.pk)
        services.campaign_stop_check_soon(campaign_id=without.pk)
    assert queued == [with_rule.pk]
    assert np.isfinite(campaign_services._stop_checks_due[without.pk])


def test_the_admin_form_refuses_adaptive_routing_for_two_models(client):
    eval_set, models, _ = build_eval_set(n_prompts=3)
    user = get_user_model().objects.create_superuser("boss", "boss@example.org", "pw-123456789")
    client.force_login(user)
    form = {
        "slug": "adm", "title": "Adm", "eval_set": eval_set.pk, "models": [m.pk for m in models],
        "votes_per_comparison": 3, "attention_check_rate": 0, "lease_seconds": 600, "render_mode": "markdown",
        "routing": "adaptive", "stopping_rule": "none",
    }  # fmt: skip
    page = client.post(reverse("admin:comparisons_campaign_add"), form).content.decode()
    assert "needs three or more models" in page
    assert not Campaign.objects.filter(slug="adm").exists()
    form["routing"] = "uniform"
    form["stopping_rule"] = "precision"
    page = client.post(reverse("admin:comparisons_campaign_add"), form).content.decode()
    assert "set a target half-width" in page
    form["target_half_width"] = 5
    assert client.post(reverse("admin:comparisons_campaign_add"), form).status_code == 302
    assert Campaign.objects.get(slug="adm").stopping_rule == "precision"


def test_no_new_pair_is_handed_out_beyond_the_budget():
    campaign = build_campaign(n_prompts=5, k=1, vote_budget=3)
    held = [services.assignment_next(rater=invite_rater(campaign), campaign=campaign) for _ in range(4)]
    assert [a is not None for a in held] == [True, True, True, False]  # three held: the budget is taken
    assert vote_until_full(campaign, favour=None) == 0
    assert services.campaign_close_if_done(campaign_id=campaign.pk) is None  # leases are not votes
    for assignment in held[:3]:
        services.vote_cast(rater=assignment.rater, token=assignment.token, choice="tie")
    assert services.campaign_close_if_done(campaign_id=campaign.pk) == "the vote budget of 3 is spent (3 votes)"


def test_a_broker_that_cannot_be_reached_does_not_fail_the_vote(monkeypatch, caplog):
    from comparisons import tasks

    def unreachable(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.campaign_stop_check, "apply_async", unreachable)
    monkeypatch.setattr(campaign_services, "_stop_checks_due", {})
    campaign = build_campaign(n_prompts=3, k=1, vote_budget=10)
    services.campaign_stop_check_soon(campaign_id=campaign.pk)
    assert "could not queue the stop check" in caplog.text
    assert campaign.pk not in campaign_services._stop_checks_due  # the next vote tries again
