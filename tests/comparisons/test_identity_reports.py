"""Raters report answers that reveal who wrote them: the vote carries the report (API, form, page), the export gains
an `identity_reported` column, and analyses can leave every reported pair out."""

from __future__ import annotations

import csv
import io
import json
import re

import pandas as pd
import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from comparisons import services
from comparisons.models import Vote
from comparisons.results import campaign_analysis
from comparisons.stats import VoteTableError, analyze, read_votes_csv, votes_prepare
from tests.browser import ARTIFACTS, BROWSER_TEST_MARKS, chromium_page, join_by_invite
from tests.comparisons.factories import build_campaign, make_user


def vote_body(token: str, **body):
    return f"/api/rate/{token}/vote", {"choice": "A", **body}


@pytest.mark.django_db
def test_the_api_stores_the_report_with_the_vote_and_refuses_a_non_boolean(rater_client):
    campaign = build_campaign(n_prompts=3, k=1)
    client = rater_client(campaign)

    token = client.next(campaign.slug).json()["assignment"]
    bad = client.post_json(*vote_body(token, reveals_identity="yes"))
    assert bad.status_code == 400 and "'reveals_identity' must be true or false" in bad.json()["error"]
    assert Vote.objects.count() == 0
    assert client.post_json(*vote_body(token, reveals_identity=True)).status_code == 201
    assert Vote.objects.get(assignment__token=token).identity_reported is True

    other = client.next(campaign.slug).json()["assignment"]
    assert client.vote(other, "B").status_code == 201  # no report: the key is optional
    assert Vote.objects.get(assignment__token=other).identity_reported is False


@pytest.mark.django_db
def test_the_form_without_javascript_stores_the_report(rater_client):
    campaign = build_campaign(n_prompts=2, k=1)
    client = rater_client(campaign)
    page = client.get(reverse("comparisons:rate", args=[campaign.slug])).content.decode()
    assert 'name="reveals_identity"' in page and "This reveals who wrote it" in page
    token = client.next(campaign.slug).json()["assignment"]
    response = client.post(
        reverse("comparisons:rate_vote_form", args=[campaign.slug]),
        {"assignment": token, "choice": "tie", "reveals_identity": "1", "csrfmiddlewaretoken": client.csrf()},
    )
    assert response.status_code == 302
    vote = Vote.objects.get(assignment__token=token)
    assert vote.choice == Vote.Choice.TIE and vote.identity_reported is True


@pytest.mark.django_db
def test_the_export_appends_identity_reported_and_the_page_leaves_reported_pairs_out(client, tmp_path):
    campaign = build_campaign(n_prompts=4, k=2)
    raters = [services.rater_create_from_invite(campaign=campaign) for _ in range(2)]
    reported_prompt = None
    for rater in raters:
        while (assignment := services.assignment_next(rater=rater, campaign=campaign)) is not None:
            prompt = assignment.comparison.prompt.external_id
            report = rater is raters[0] and reported_prompt in (None, prompt)
            reported_prompt = prompt if report else reported_prompt
            services.vote_cast(rater=rater, token=assignment.token, choice="A", reveals_identity=report)
    assert Vote.objects.filter(identity_reported=True).count() == 1

    out = tmp_path / "votes.csv"
    call_command("export_votes", campaign.slug, str(out), stdout=io.StringIO())
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0])[-2:] == ["identity_reported", "routing_probability"]
    assert sorted(r["identity_reported"] for r in rows) == ["false"] * 7 + ["true"]

    analyst = make_user("ana")
    services.user_make_analyst(user=analyst)
    client.force_login(analyst)
    url = reverse("comparisons:results", args=[campaign.slug])
    page = client.get(url).content.decode()
    assert "Raters reported 1 vote where an answer reveals who wrote it." in page
    assert "?exclude_identity_reports=1" in page
    left_out = client.get(url + "?exclude_identity_reports=1").content.decode()
    assert "6 votes on 3 prompts (2 excluded)" in left_out
    command = f"python manage.py analyze {campaign.slug}-votes.csv --bootstrap 1000 --seed 0 --ci bca"
    assert f"{command} --exclude-identity-reports" in left_out

    # The page's numbers are the offline command's on the export.
    page_analysis = campaign_analysis(campaign=campaign, exclude_identity_reports=True, use_cache=False)
    stdout = io.StringIO()
    call_command("analyze", str(out), "--json", "--exclude-identity-reports", stdout=stdout)
    offline = json.loads(stdout.getvalue())
    assert offline["pairs"] == page_analysis["pairs"]
    assert offline["votes"] == {**page_analysis["votes"]} and offline["votes"]["excluded"] == 2
    assert offline["settings"]["exclude_identity_reports"] is True


def votes_frame(**extra) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "prompt_id": ["p1", "p1", "p1", "p2", "p2", "p3"],
            "model_a": ["x", "y", "x", "x", "x", "x"],
            "model_b": ["y", "x", "z", "y", "y", "y"],
            "winner": ["x", "tie", "z", "y", "x", "both_bad"],
        }
    )
    for column, values in extra.items():
        frame[column] = values
    return frame


def test_a_report_takes_every_vote_on_its_pair_out_in_either_model_order_and_nothing_else():
    # Reported: the second vote on (p1, x, y), written as model_a=y, model_b=x.
    frame = votes_frame(identity_reported=["false", "true", "false", "", "no", "0"])
    kept = votes_prepare(frame, exclude_identity_reports=True).frame
    assert list(zip(kept["prompt_id"], kept["model_a"], kept["model_b"], strict=True)) == [
        ("p1", "x", "z"),  # same prompt, another pair of models
        ("p2", "x", "y"),  # same models, another prompt
        ("p2", "x", "y"),
        ("p3", "x", "y"),
    ]
    assert votes_prepare(frame).n == 6  # without the option every vote counts
    result = analyze(frame, n_boot=0, exclude_identity_reports=True, categories=False)
    assert result["votes"]["excluded"] == 2 and result["settings"]["exclude_identity_reports"] is True


def test_an_older_export_without_the_column_is_still_read_but_cannot_drop_reports(tmp_path):
    old = tmp_path / "old.csv"
    votes_frame().to_csv(old, index=False)
    frame = read_votes_csv(old)
    assert analyze(frame, n_boot=0)["votes"]["used"] == 6
    with pytest.raises(VoteTableError, match="needs an 'identity_reported' column"):
        analyze(frame, n_boot=0, exclude_identity_reports=True)
    with pytest.raises(CommandError, match="needs an 'identity_reported' column"):
        call_command("analyze", str(old), "--exclude-identity-reports", stdout=io.StringIO())
    text = io.StringIO()
    call_command("analyze", str(old), "--bootstrap", "0", stdout=text)
    assert "6 votes on 3 prompts (0 excluded)" in text.getvalue()


def test_a_bad_identity_reported_value_names_its_line(tmp_path):
    path = tmp_path / "bad.csv"
    votes_frame(identity_reported=["false", "maybe", "false", "false", "false", "false"]).to_csv(path, index=False)
    with pytest.raises(CommandError, match=r"line 3: column 'identity_reported' must be a boolean"):
        call_command("analyze", str(path), stdout=io.StringIO())


def report_in_the_browser(base_url: str, invite_token: str, slug: str) -> dict:
    """Tick the report, vote with the keyboard, and check the next pair starts unticked (no database access here)."""
    from playwright.sync_api import expect

    seen: dict = {"errors": []}
    with chromium_page(seen) as page:
        join_by_invite(page, base_url, invite_token, slug)
        page.get_by_label("This reveals who wrote it").check()
        page.screenshot(path=str(ARTIFACTS / "rater-page-identity-report.png"), full_page=True)
        seen["token"] = page.locator("#assignment").input_value()
        page.keyboard.press("2")  # a shortcut still works while the checkbox has the focus
        expect(page.locator("#progress")).to_have_attribute("aria-valuenow", "1")
        seen["checked_after"] = page.get_by_label("This reveals who wrote it").is_checked()
    return seen


def browser_test(test):
    for mark in BROWSER_TEST_MARKS:
        test = mark(test)
    return test


@browser_test
def test_the_rater_page_sends_the_report_with_the_vote(live_server):
    campaign = build_campaign(n_prompts=2, k=1)
    seen = report_in_the_browser(live_server.url, campaign.invite_token, campaign.slug)
    assert seen["errors"] == []
    vote = Vote.objects.get(assignment__token=seen["token"])
    assert vote.choice == Vote.Choice.TIE and vote.identity_reported is True
    assert seen["checked_after"] is False


@pytest.mark.django_db
def test_the_progress_page_counts_the_reports_and_links_to_the_reported_votes(rater_client):
    campaign = build_campaign(n_prompts=3, k=1)
    client = rater_client(campaign)
    reported = client.next(campaign.slug).json()["assignment"]
    client.post_json(*vote_body(reported, reveals_identity=True))
    client.vote(client.next(campaign.slug).json()["assignment"], "B")

    admin = make_user("boss", is_staff=True, is_superuser=True)
    staff = Client()
    staff.force_login(admin)
    page = staff.get(reverse("admin:comparisons_campaign_progress", args=[campaign.pk])).content.decode()
    assert "Votes whose rater reported that an answer reveals who wrote it: 1" in page
    link = re.search(r'href="([^"]*identity_reported__exact=1[^"]*)"', page).group(1).replace("&amp;", "&")
    listed = staff.get(link).content.decode()
    assert "1 vote" in listed and "2 votes" not in listed
