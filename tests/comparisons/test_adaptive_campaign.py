"""An adaptive campaign in the rating loop: pairs routed by the plan, k an upper bound, probabilities recorded.

That the recorded probabilities make weighted estimates unbiased (and plain ones drift) is shown by simulation
of the same router in tests/comparisons/stats/test_routing.py; here the loop is checked to use it faithfully."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from django.core.cache import cache
from django.urls import reverse

from comparisons import services
from comparisons.models import Assignment, Comparison, Vote
from comparisons.results import campaign_analysis, export_stream
from comparisons.stats import analyze, read_votes_csv
from comparisons.tracker import campaign_precision
from tests.comparisons.factories import build_campaign, invite_rater, make_user

pytestmark = pytest.mark.django_db

A, B, C = "zebra-model-7", "quokka-llm-13b", "okapi-chat-3"


def vote_adaptively(campaign, *, raters: int = 6, votes: int = 25) -> Counter:
    """Raters vote on what the router serves: A and B exactly as good (they take turns winning), C losing to
    both; which pairs were served, counted.

    Turns rather than a coin: a coin's first few votes between A and B can fall 6-1, the ranking then looks
    settled there and the router rightly sends the next votes elsewhere (about one run in seven), which is
    not what this test asks about."""
    turns = itertools.count()
    served = Counter()
    for _ in range(raters):
        rater = invite_rater(campaign)
        for _ in range(votes):
            assignment = services.assignment_next(rater=rater, campaign=campaign)
            assert assignment is not None
            assert 0 < assignment.routing_probability <= 1
            comparison = assignment.comparison
            shown = {comparison.response_a.model.name, comparison.response_b.model.name}
            served[frozenset(shown)] += 1
            left = (comparison.response_a if assignment.left_is_a else comparison.response_b).model.name
            # C loses to both; the open question is A against B.
            winner = (A, B)[next(turns) % 2] if C not in shown else (shown - {C}).pop()
            services.vote_cast(rater=rater, token=assignment.token, choice="A" if left == winner else "B")
        cache.clear()  # a fresh plan for the next rater, as after the cache's few seconds
    return served


def test_votes_go_where_the_ranking_is_open_with_their_probability_recorded(settings):
    cache.clear()
    campaign = build_campaign(model_names=[A, B, C], n_prompts=40, k=2, routing="adaptive")
    served = vote_adaptively(campaign)
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


def test_the_results_page_analyze_and_the_exports_weight_the_votes_of_an_adaptive_campaign(client, tmp_path):
    cache.clear()
    campaign = build_campaign(slug="routed", model_names=[A, B, C], n_prompts=30, k=2, routing="adaptive")
    vote_adaptively(campaign, raters=4, votes=20)
    votes_csv = tmp_path / "votes.csv"
    votes_csv.write_text("".join(export_stream(campaign=campaign, kind="votes")), encoding="utf-8")
    exported = read_votes_csv(votes_csv)
    stored = Assignment.objects.filter(comparison__campaign=campaign, status=Assignment.Status.VOTED)
    assert sorted(exported["routing_probability"].astype(float)) == sorted(
        stored.values_list("routing_probability", flat=True)
    )
    # The page's analysis has the weighted rate the tracker shows, and `analyze` on the export gives it too.
    page_analysis = campaign_analysis(campaign=campaign, use_cache=False)
    from_export = analyze(exported, n_boot=1000, seed=0)
    trackers = {frozenset((p.model_a, p.model_b)): p for p in campaign_precision(campaign=campaign).pairs}
    for entry in page_analysis["pairs"]:
        tracker = trackers[frozenset((entry["model"], entry["baseline"]))]
        mine = entry["weighted_win_rate"] if entry["model"] == tracker.model_a else 100 - entry["weighted_win_rate"]
        assert mine == pytest.approx(tracker.weighted_win_rate, abs=0.01)
        assert entry["weighted_ci_low"] <= entry["weighted_win_rate"] <= entry["weighted_ci_high"]
    assert from_export["pairs"] == page_analysis["pairs"]
    assert from_export["weighted_ranking"] == page_analysis["weighted_ranking"] != []
    summary = "".join(export_stream(campaign=campaign, kind="summary")).splitlines()
    assert summary[0].endswith(",weighted_win_rate,weighted_ci_low,weighted_ci_high")
    analyst = make_user("ana")
    services.user_make_analyst(user=analyst)
    client.force_login(analyst)
    page = client.get(reverse("comparisons:results", args=[campaign.slug])).content.decode()
    assert "routing-weighted %" in page and "Ranking weighted by routing probability" in page

    # A vote served before routing was switched on has no probability: its pair gets no weighted figures,
    # in the tracker as in the analysis, and there is no weighted ranking.
    unrouted = stored.select_related("comparison__response_a__model", "comparison__response_b__model").first()
    Assignment.objects.filter(pk=unrouted.pk).update(routing_probability=None)
    Vote.objects.filter(assignment_id=unrouted.pk).update(routing_probability=None)  # the vote's copy of it
    pair = {unrouted.comparison.response_a.model.name, unrouted.comparison.response_b.model.name}
    (tracker,) = [p for p in campaign_precision(campaign=campaign).pairs if {p.model_a, p.model_b} == pair]
    assert tracker.weighted_win_rate is None
    mixed = campaign_analysis(campaign=campaign, use_cache=False)
    (entry,) = [e for e in mixed["pairs"] if {e["model"], e["baseline"]} == pair]
    assert entry["weighted_win_rate"] is None and mixed["weighted_ranking"] == []


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
