"""The results page and the exports: analysts only, headline numbers on a known campaign, export columns."""

from __future__ import annotations

import csv
import io
import json
import secrets

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from comparisons import services
from comparisons.models import Assignment, Campaign, Rater
from comparisons.results import PROMPT_COLUMNS, campaign_analysis
from comparisons.selectors import VOTE_COLUMNS
from comparisons.stats import SUMMARY_COLUMNS, analyze, headline, read_votes_csv
from tests.comparisons.conftest import UNREACHABLE_REDIS_CACHE
from tests.comparisons.factories import build_campaign, invite_rater, make_user

pytestmark = pytest.mark.django_db

ZEBRA, QUOKKA = "zebra-model-7", "quokka-llm-13b"
# Verdict per prompt position (from zebra's side): zebra wins 4, one tie, quokka wins 1.
PLAN = {0: ZEBRA, 1: ZEBRA, 2: "tie", 3: ZEBRA, 4: QUOKKA, 5: ZEBRA}


def vote_as_planned(campaign: Campaign, rater, plan: dict[int, str]) -> None:
    while (assignment := services.assignment_next(rater=rater, campaign=campaign)) is not None:
        comparison = assignment.comparison
        verdict = plan[comparison.prompt.position]
        left = comparison.response_a if assignment.left_is_a else comparison.response_b
        choice = verdict if verdict in ("tie", "both_bad") else ("A" if left.model.name == verdict else "B")
        services.vote_cast(rater=rater, token=assignment.token, choice=choice)


@pytest.fixture
def campaign() -> Campaign:
    campaign = build_campaign(slug="known-study", n_prompts=6, k=1)
    vote_as_planned(campaign, invite_rater(campaign), PLAN)
    return campaign


@pytest.fixture
def analyst_client(client):
    user = make_user("ana")
    services.user_make_analyst(user=user)
    client.force_login(user)
    return client


def results_url(campaign: Campaign) -> str:
    return reverse("comparisons:results", args=[campaign.slug])


def export_text(client, campaign: Campaign, kind: str) -> str:
    response = client.get(reverse("comparisons:results_export", args=[campaign.slug, kind]))
    assert response.status_code == 200
    assert response.streaming
    return b"".join(response.streaming_content).decode("utf-8")


def test_analyst_sees_the_headline_in_plain_words(analyst_client, campaign):
    response = analyst_client.get(results_url(campaign))
    assert response.status_code == 200
    page = response.content.decode()
    # quokka (alphabetically first) against zebra: 1 win, 1 tie, 4 losses of 6 -> (1 + 0.5) / 6 = 25.0%.
    assert "Model quokka-llm-13b wins 25.0% of comparisons against zebra-model-7 (95% CI " in page
    assert "1 wins, 1 ties, 4 losses)" in page
    assert "0 still missing" not in page and "complete" in page
    assert "<svg" in page  # the forest plot, drawn on the server
    assert "Krippendorff" in page and "Bradley" in page
    assert "routing-weighted" not in page  # a uniformly routed campaign needs no weights


def test_page_is_reproducible_from_the_votes_export(analyst_client, campaign, tmp_path):
    votes = tmp_path / "votes.csv"
    votes.write_text(export_text(analyst_client, campaign, "votes"), encoding="utf-8")
    result = analyze(read_votes_csv(votes), n_boot=1000, seed=0)
    page = analyst_client.get(results_url(campaign)).content.decode()
    from django.utils.html import escape

    assert escape(headline(result["pairs"][0])) in page


def test_baseline_orients_the_headline_and_missing_votes_are_counted(analyst_client):
    campaign = build_campaign(slug="with-baseline", n_prompts=6, k=2)
    campaign.baseline = campaign.models.get(name=QUOKKA)
    campaign.save(update_fields=["baseline"])
    vote_as_planned(campaign, invite_rater(campaign), PLAN)
    page = analyst_client.get(results_url(campaign)).content.decode()
    assert "Model zebra-model-7 wins 75.0% of comparisons against quokka-llm-13b (95% CI " in page
    assert "4 wins, 1 ties, 1 losses)" in page
    assert "6 of 12 votes collected" in page and "6 still missing" in page


def test_raters_and_anonymous_users_are_kept_out(client, campaign):
    rater = Assignment.objects.filter(comparison__campaign=campaign).first().rater
    client.force_login(rater.user)
    assert client.get(results_url(campaign)).status_code == 403
    export = reverse("comparisons:results_export", args=[campaign.slug, "votes"])
    assert client.get(export).status_code == 403
    client.logout()
    response = client.get(results_url(campaign))
    assert response.status_code == 302 and "login" in response["Location"]
    assert client.get(export).status_code == 302
    client.force_login(make_user("someone"))
    assert client.get(results_url(campaign)).status_code == 403


def test_staff_may_see_results_and_unknown_things_are_404(client, campaign):
    client.force_login(make_user("admin", is_staff=True))
    assert client.get(results_url(campaign)).status_code == 200
    assert client.get(reverse("comparisons:results", args=["no-such-campaign"])).status_code == 404
    assert client.get(reverse("comparisons:results_export", args=[campaign.slug, "pickle"])).status_code == 404


def test_campaign_without_votes_says_so(analyst_client):
    campaign = build_campaign(slug="empty-study", n_prompts=3, k=2)
    page = analyst_client.get(results_url(campaign)).content.decode()
    assert "No votes yet" in page and "6 still missing" in page
    summary = export_text(analyst_client, campaign, "summary")
    assert summary.strip() == ",".join(SUMMARY_COLUMNS)


def test_votes_and_prompts_exports_have_their_columns(analyst_client, campaign):
    votes = list(csv.DictReader(io.StringIO(export_text(analyst_client, campaign, "votes"))))
    assert list(votes[0]) == VOTE_COLUMNS and len(votes) == 6
    prompts = list(csv.DictReader(io.StringIO(export_text(analyst_client, campaign, "prompts"))))
    assert list(prompts[0]) == PROMPT_COLUMNS and len(prompts) == 6
    by_id = {row["prompt_id"]: row for row in prompts}
    first = by_id["user_oriented_task_0"]
    assert first["majority"] == ZEBRA and first["votes"] == "1"
    assert first["instruction"].startswith("Instruction number 0")
    assert {first["model_a"], first["model_b"]} == {ZEBRA, QUOKKA}
    assert first["output_a"].startswith("Answer in voice")
    assert by_id["user_oriented_task_2"]["majority"] == "tie" and by_id["user_oriented_task_2"]["ties"] == "1"


def test_summary_export_is_the_pairs_table(analyst_client, campaign):
    rows = list(csv.DictReader(io.StringIO(export_text(analyst_client, campaign, "summary"))))
    assert list(rows[0]) == SUMMARY_COLUMNS
    (row,) = rows
    assert (row["model"], row["baseline"], row["wins"], row["ties"], row["losses"]) == (QUOKKA, ZEBRA, "1", "1", "4")
    assert float(row["win_rate"]) == pytest.approx(25.0)


def test_annotations_export_is_alpacaeval_shaped(analyst_client):
    campaign = build_campaign(slug="annotated", n_prompts=6, k=1)
    campaign.baseline = campaign.models.get(name=QUOKKA)
    campaign.save(update_fields=["baseline"])
    vote_as_planned(campaign, invite_rater(campaign), PLAN)
    items = json.loads(export_text(analyst_client, campaign, "annotations"))
    assert len(items) == 6
    keys = {"instruction", "output_1", "generator_1", "output_2", "generator_2", "preference"}
    assert all(keys <= set(item) for item in items)
    # The baseline is output_1 (AlpacaEval's reference side): zebra winning is preference 2.
    assert {item["generator_1"] for item in items} == {QUOKKA}
    by_prompt = {item["prompt_id"]: item["preference"] for item in items}
    assert by_prompt == {
        "user_oriented_task_0": 2,
        "user_oriented_task_1": 2,
        "user_oriented_task_2": 1.5,
        "user_oriented_task_3": 2,
        "user_oriented_task_4": 1,
        "user_oriented_task_5": 2,
    }
    with_input = next(item for item in items if item["prompt_id"] == "user_oriented_task_1")
    assert with_input["instruction"] == "Instruction number 1: explain topic 1.\n\nSome input for task 1."


def test_export_results_command(campaign, tmp_path):
    out = tmp_path / "prompts.csv"
    call_command("export_results", campaign.slug, "prompts", str(out), stdout=io.StringIO())
    header = out.read_text(encoding="utf-8").splitlines()[0]
    assert header == ",".join(PROMPT_COLUMNS)
    call_command("export_results", campaign.slug, "summary", str(tmp_path / "s.csv"), stdout=io.StringIO())
    assert (tmp_path / "s.csv").read_text(encoding="utf-8").startswith(",".join(SUMMARY_COLUMNS))
    with pytest.raises(CommandError, match="No campaign"):
        call_command("export_results", "nope", "votes", str(tmp_path / "x.csv"))
    with pytest.raises(CommandError, match="does not exist"):
        call_command("export_results", campaign.slug, "votes", str(tmp_path / "missing" / "x.csv"))
    assert not list((tmp_path).glob(".x.csv*"))


def test_the_analysis_is_cached_until_a_vote_or_a_flag_changes_it(settings):
    settings.MIN_SECONDS_PER_VOTE = 0  # these votes are cast by code, instantly
    campaign = build_campaign(slug="cached-study", n_prompts=6, k=2)
    first_rater, second_rater = invite_rater(campaign), invite_rater(campaign)
    vote_as_planned(campaign, first_rater, PLAN)
    computed = campaign_analysis(campaign=campaign, n_boot=50)
    assert computed["votes"]["used"] == 6

    # Asked again: the answer comes from the cache, after four small queries that check it is current (none
    # of them reads the votes: on a million-vote campaign that alone took longer than the cached page).
    with CaptureQueriesContext(connection) as checked:
        assert campaign_analysis(campaign=campaign, n_boot=50) == computed
    assert len(checked) == 4, [q["sql"] for q in checked.captured_queries]
    assert not any('"comparisons_vote"' in q["sql"] for q in checked.captured_queries)

    # A new vote is in the next analysis (never a stale page).
    assignment = services.assignment_next(rater=second_rater, campaign=campaign)
    services.vote_cast(rater=second_rater, token=assignment.token, choice="tie")
    assert campaign_analysis(campaign=campaign, n_boot=50)["votes"]["used"] == 7

    # Flagging a rater changes what "exclude flagged" leaves.
    assert campaign_analysis(campaign=campaign, n_boot=50, exclude_flagged=True)["votes"]["used"] == 7
    Rater.objects.filter(pk=second_rater.pk).update(flagged=True)
    assert campaign_analysis(campaign=campaign, n_boot=50, exclude_flagged=True)["votes"]["used"] == 6
    # Other options are other entries: a different bootstrap size is computed, not served from the cache.
    assert campaign_analysis(campaign=campaign, n_boot=60)["settings"]["bootstrap"] == 60
    # A rater deleted with their votes (in the admin) takes them out of the next analysis too.
    second_rater.user.delete()
    assert campaign_analysis(campaign=campaign, n_boot=50)["votes"]["used"] == 6


def test_the_analysis_is_computed_when_the_cache_is_unreachable(settings, caplog):
    settings.CACHES = {"default": UNREACHABLE_REDIS_CACHE}
    campaign = build_campaign(slug="no-cache-study", n_prompts=6, k=1)
    vote_as_planned(campaign, invite_rater(campaign), PLAN)
    assert campaign_analysis(campaign=campaign, n_boot=50)["votes"]["used"] == 6
    assert "Analysis cache unavailable" in caplog.text


def test_page_says_how_each_interval_was_made_and_which_models_cannot_be_compared(analyst_client):
    # Four models, but votes only on m-a vs m-b and m-c vs m-d: two groups that never met.
    campaign = build_campaign(slug="two-groups", n_prompts=4, model_names=["m-a", "m-b", "m-c", "m-d"], k=1)
    rater = invite_rater(campaign)
    wanted = ({"m-a", "m-b"}, {"m-c", "m-d"})
    seen: set[str] = set()
    while (assignment := services.assignment_next(rater=rater, campaign=campaign)) is not None:
        if assignment.token in seen:
            break
        seen.add(assignment.token)
        comparison = assignment.comparison
        if {comparison.response_a.model.name, comparison.response_b.model.name} in wanted:
            services.vote_cast(rater=rater, token=assignment.token, choice="A")
        else:
            services.assignment_skip(rater=rater, token=assignment.token)
    page = analyst_client.get(results_url(campaign)).content.decode()
    assert "cannot be compared with one of another group: group 1 (m-" in page
    assert "<th>group</th>" in page
    # Four prompts per pair: too few for the bootstrap, so the exact interval, marked as such.
    assert "(exact)" in page and "Clopper" in page
    assert "sign-flip test over prompts" in page
    assert "exact sign test on decisive votes" not in page


def test_page_shows_the_length_controlled_win_rate_beside_the_raw_one(analyst_client, campaign):
    analysis = campaign_analysis(campaign=campaign, use_cache=False)
    pair = analysis["pairs"][0]
    assert pair["lc_win_rate"] is not None  # the page's votes carry both responses' lengths
    page = analyst_client.get(results_url(campaign)).content.decode()
    assert "<th>length-controlled %</th>" in page
    assert f'<td class="num">{pair["lc_win_rate"]:.1f}</td>' in page


def test_the_page_lists_the_raters_who_agree_least_and_counts_the_others():
    from comparisons.results_views import RATERS_SHOWN, _raters_shown

    raters = [{"rater": f"r{i:03d}", "votes": 5, "units": 5, "agreement": 100.0 - i % 90} for i in range(120)]
    raters.append({"rater": "newcomer", "votes": 1, "units": 0, "agreement": None})
    shown = _raters_shown(raters)
    agreements = [r["agreement"] for r in shown["rows"]]
    assert len(shown["rows"]) == RATERS_SHOWN and shown["more"] == len(raters) - RATERS_SHOWN
    assert agreements == sorted(agreements) and agreements[0] == 11.0  # the least agreeing first
    assert _raters_shown(raters[:3])["rows"][-1]["rater"] == "r000" and _raters_shown(raters[:3])["more"] == 0


def test_the_page_draws_its_figures_once_until_the_numbers_change(analyst_client, settings, monkeypatch):
    from comparisons import plots, results

    settings.MIN_SECONDS_PER_VOTE = 0
    # Keys of their own: an earlier test's identical figures may sit in a shared cache.
    monkeypatch.setattr(results, "_FIGURES_CODE", secrets.token_hex(8))
    drawn: list[int] = []
    draw = plots.forest_plot_svg
    monkeypatch.setattr(plots, "forest_plot_svg", lambda pairs, **kw: drawn.append(len(pairs)) or draw(pairs, **kw))
    campaign = build_campaign(slug="figures-study", n_prompts=6, k=2)
    vote_as_planned(campaign, invite_rater(campaign), PLAN)

    def forest() -> str:
        page = analyst_client.get(results_url(campaign)).content.decode()
        start = page.index("<svg")
        return page[start : page.index("</svg>", start)]

    first = forest()
    assert "75.0%" in first or "25.0%" in first  # zebra: 4 wins, a tie and a loss in 6
    assert forest() == first
    assert drawn == [1]
    # A new vote changes the numbers: the figure is drawn anew, never served stale.
    rater = invite_rater(campaign)
    assignment = services.assignment_next(rater=rater, campaign=campaign)
    services.vote_cast(rater=rater, token=assignment.token, choice="tie")
    assert forest() != first
    assert drawn == [1, 1]
