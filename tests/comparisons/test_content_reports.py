"""Content reports: beside their vote a rater flags either answer (by its side) as harmful, false or offensive;
the report lands on the response shown on that side, in the vote's transaction, and the results page and the
exports give per-model flag rates with intervals."""

from __future__ import annotations

import csv
import io

import pytest
from django.db import connection
from django.urls import reverse

from comparisons import services
from comparisons.models import Assignment, ContentReport, Vote
from comparisons.results import export_stream
from tests.comparisons.factories import MODEL_NAMES, build_campaign, invite_rater, make_user

pytestmark = pytest.mark.django_db
ZEBRA, QUOKKA = MODEL_NAMES


def shown(assignment: Assignment, side: str):
    comparison = assignment.comparison
    left, right = (comparison.response_a, comparison.response_b)[:: 1 if assignment.left_is_a else -1]
    return left if side == "A" else right


def test_a_report_lands_on_the_response_shown_on_that_side_whatever_the_order(rater_client):
    campaign = build_campaign(n_prompts=2, k=1)
    client = rater_client(campaign)
    for left_is_a in (True, False):
        token = client.next(campaign.slug).json()["assignment"]
        Assignment.objects.filter(token=token).update(left_is_a=left_is_a)  # both screen orders, for certain
        response = client.post_json(
            f"/api/rate/{token}/vote",
            {"choice": "A", "content_reports": [{"side": "B", "kind": "harmful"}, {"side": "A", "kind": "false"}]},
        )
        assert response.status_code == 201, response.content
        # The answer is the vote as usual: nothing about who wrote what comes back.
        assert ZEBRA not in response.content.decode() and QUOKKA not in response.content.decode()
        assignment = Assignment.objects.select_related("comparison").get(token=token)
        reports = {(r.response_id, r.kind) for r in ContentReport.objects.filter(vote__assignment=assignment)}
        assert reports == {(shown(assignment, "B").pk, "harmful"), (shown(assignment, "A").pk, "false")}
        assert shown(assignment, "B") == (
            assignment.comparison.response_b if left_is_a else assignment.comparison.response_a
        )


@pytest.mark.parametrize(
    ("reports", "message"),
    [
        ("harmful", "'content_reports' must be a list"),
        ([{"side": "C", "kind": "harmful"}], '\'side\' must be "A" or "B"'),
        ([{"side": "A", "kind": "boring"}], "'kind' must be one of harmful, false, offensive"),
        ([{"side": "A"}], "exactly 'side' and 'kind'"),
        (["A:harmful"], "exactly 'side' and 'kind'"),
        ([{"side": "A", "kind": "harmful"}] * 7, "only 6 possible reports"),
    ],
)
def test_malformed_reports_are_refused_with_400_and_no_vote_is_stored(rater_client, reports, message):
    campaign = build_campaign(n_prompts=2, k=1)
    client = rater_client(campaign)
    token = client.next(campaign.slug).json()["assignment"]
    response = client.post_json(f"/api/rate/{token}/vote", {"choice": "A", "content_reports": reports})
    assert response.status_code == 400 and message in response.json()["error"]
    assert Vote.objects.count() == 0 and ContentReport.objects.count() == 0
    # Without the field the same vote goes through: it is optional.
    assert client.vote(token, "A").status_code == 201


def test_repeating_a_vote_does_not_repeat_its_reports_and_duplicates_count_once():
    campaign = build_campaign(n_prompts=2, k=1)
    rater = invite_rater(campaign)
    assignment = services.assignment_next(rater=rater, campaign=campaign)
    reports = [{"side": "A", "kind": "offensive"}, {"side": "A", "kind": "offensive"}]
    services.vote_cast(rater=rater, token=assignment.token, choice="B", content_reports=reports)
    again = services.vote_cast(rater=rater, token=assignment.token, choice="B", content_reports=reports)
    assert not again.created
    assert ContentReport.objects.count() == 1


def test_the_form_without_javascript_sends_the_checked_reports(rater_client):
    campaign = build_campaign(n_prompts=2, k=1)
    client = rater_client(campaign)
    page = client.get(reverse("comparisons:rate", args=[campaign.slug])).content.decode()
    assert 'name="content_report" value="A:harmful"' in page and 'value="B:offensive"' in page
    token = client.next(campaign.slug).json()["assignment"]
    client.post(
        reverse("comparisons:rate_vote_form", args=[campaign.slug]),
        {"assignment": token, "choice": "tie", "content_report": ["B:offensive"], "csrfmiddlewaretoken": client.csrf()},
    )
    assignment = Assignment.objects.get(token=token)
    report = ContentReport.objects.get()
    assert report.vote.assignment == assignment and report.kind == "offensive"
    assert report.response == shown(assignment, "B")


def vote_flagging(campaign, model_name: str, kind: str, votes: int, flagged: int) -> None:
    """`votes` raters vote on the campaign's first pair; the first `flagged` of them flag `model_name`'s answer."""
    for i in range(votes):
        rater = invite_rater(campaign)
        assignment = services.assignment_next(rater=rater, campaign=campaign)
        side = "A" if shown(assignment, "A").model.name == model_name else "B"
        reports = [{"side": side, "kind": kind}] if i < flagged else []
        services.vote_cast(rater=rater, token=assignment.token, choice="tie", content_reports=reports)


def test_flag_rates_per_model_on_the_results_page_and_in_the_export(client):
    campaign = build_campaign(n_prompts=10, k=1)
    vote_flagging(campaign, ZEBRA, "harmful", votes=10, flagged=3)
    analyst = make_user("ana")
    services.user_make_analyst(user=analyst)
    client.force_login(analyst)
    page = client.get(reverse("comparisons:results", args=[campaign.slug])).content.decode()
    table = page.split('id="content-report-rates"')[1].split("</table>")[0]
    # zebra: 3 of 10 votes flagged its answer, Wilson 95% interval 10.8–60.3; quokka: none of 10.
    assert f'<td>{ZEBRA}</td><td class="num">10</td><td class="num">3</td><td class="num">30.0</td>' in table
    assert "10.8–60.3" in table
    assert f'<td>{QUOKKA}</td><td class="num">10</td><td class="num">0</td><td class="num">0.0</td>' in table

    rows = list(csv.DictReader(io.StringIO("".join(export_stream(campaign=campaign, kind="content_reports")))))
    zebra = {row["kind"]: row for row in rows if row["model"] == ZEBRA}
    assert zebra["any"]["flagged"] == "3" and zebra["harmful"]["flagged"] == "3" and zebra["false"]["flagged"] == "0"
    assert float(zebra["any"]["ci_low"]) == pytest.approx(10.78, abs=0.01)
    response = client.get(reverse("comparisons:results_export", args=[campaign.slug, "content_reports"]))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")


@pytest.mark.django_db(transaction=True)
def test_a_report_that_cannot_be_stored_takes_its_vote_with_it():
    """The reports are written in the vote's transaction: if storing them fails, no vote is left behind."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (a constraint violation inside the vote's transaction)")
    campaign = build_campaign(n_prompts=2, k=1)
    rater = invite_rater(campaign)
    assignment = services.assignment_next(rater=rater, campaign=campaign)
    with connection.cursor() as cursor:  # make every report fail, as a broken write would
        cursor.execute("ALTER TABLE comparisons_contentreport ADD CONSTRAINT test_no_reports CHECK (false)")
    try:
        with pytest.raises(Exception, match="test_no_reports"):
            services.vote_cast(
                rater=rater, token=assignment.token, choice="A", content_reports=[{"side": "A", "kind": "false"}]
            )
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE comparisons_contentreport DROP CONSTRAINT test_no_reports")
    assert Vote.objects.count() == 0
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.LEASED
    assignment.comparison.refresh_from_db()
    assert assignment.comparison.votes_count == 0
