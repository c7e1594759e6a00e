"""The rating JSON API as a browser calls it: session from the invite link, CSRF header, status codes."""

from __future__ import annotations

import csv
import io
import random
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from comparisons.models import Assignment, Comparison, Rater, Vote
from generation.models import Response
from tests.comparisons.conftest import RaterClient
from tests.comparisons.factories import build_campaign

pytestmark = pytest.mark.django_db

CONTRACT_KEYS = {"assignment", "instruction", "input", "responses", "progress"}


def test_invite_link_makes_each_browser_one_rater_and_stores_the_participant_id(rater_client):
    campaign = build_campaign()
    page = RaterClient().get(f"/join/{campaign.invite_token}?PROLIFIC_PID=abc123")
    assert page.status_code == 200
    assert b"Start rating" in page.content

    first = rater_client(campaign, "?PROLIFIC_PID=abc123")
    assert first.rater.participant_id == "abc123"
    assert first.rater.campaign == campaign
    # The same browser coming back stays the same rater.
    again = first.post(f"/join/{campaign.invite_token}", {"csrfmiddlewaretoken": first.csrf()})
    assert again.status_code == 302 and again["Location"] == f"/rate/{campaign.slug}/"
    assert Rater.objects.count() == 1
    second = rater_client(campaign, "?participant=p-2")
    assert second.rater.pk != first.rater.pk and second.rater.participant_id == "p-2"
    assert Rater.objects.count() == 2


def test_unknown_invite_token_is_404_and_a_closed_campaign_admits_nobody():
    campaign = build_campaign(open_it=False)
    assert RaterClient().get("/join/not-a-token").status_code == 404
    client = RaterClient()
    assert b"not accepting raters" in client.get(f"/join/{campaign.invite_token}").content
    assert client.post(f"/join/{campaign.invite_token}", {"csrfmiddlewaretoken": client.csrf()}).status_code == 409
    assert Rater.objects.count() == 0


def test_next_returns_the_contract_with_texts_exactly_as_stored(rater_client):
    campaign = build_campaign(n_prompts=3, k=1)
    client = rater_client(campaign)
    response = client.next(campaign.slug)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == CONTRACT_KEYS
    assert set(body["responses"]) == {"A", "B"}
    assert set(body["progress"]) == {"done", "total"}
    assignment = Assignment.objects.get(token=body["assignment"])
    comparison = assignment.comparison
    stored = (comparison.response_a.text, comparison.response_b.text)
    shown = (body["responses"]["A"], body["responses"]["B"])
    assert shown == (stored if assignment.left_is_a else stored[::-1])
    assert body["instruction"] == comparison.prompt.instruction and body["input"] == comparison.prompt.input
    assert body["progress"] == {"done": 0, "total": 3}
    # Asking again before voting gives the same pair (no new lease).
    assert client.next(campaign.slug).json()["assignment"] == body["assignment"]
    # The page's variant adds rendered HTML beside the contract keys.
    with_html = client.next(campaign.slug, html=1).json()
    assert set(with_html) == CONTRACT_KEYS | {"html"} and "<em>some</em>" in with_html["html"]["A"]


def test_vote_status_codes(rater_client):
    campaign = build_campaign(n_prompts=3, k=1)
    client = rater_client(campaign)
    token = client.next(campaign.slug).json()["assignment"]

    assert client.post_json(f"/api/rate/{token}/vote", None, raw=b"{not json").status_code == 400
    assert client.post_json(f"/api/rate/{token}/vote", ["A"]).status_code == 400
    missing = client.post_json(f"/api/rate/{token}/vote", {"rationale": "x"})
    assert missing.status_code == 400 and "choice" in missing.json()["error"]
    bad = client.vote(token, "left")
    assert bad.status_code == 400 and "A, B, tie, both_bad" in bad.json()["error"]
    assert Vote.objects.count() == 0

    created = client.vote(token, "B", "B is clearer")
    assert created.status_code == 201
    assert created.json() == {
        "assignment": token,
        "choice": "B",
        "rationale": "B is clearer",
        "submitted_at": created.json()["submitted_at"],
        "next": created.json()["next"],
    }
    assert set(created.json()["next"]) == CONTRACT_KEYS
    repeat = client.vote(token, "B", "B is clearer")
    assert repeat.status_code == 200 and repeat.json() == created.json()
    assert client.vote(token, "A").status_code == 409
    assert client.vote("no-such-token", "A").status_code == 404
    assert Vote.objects.count() == 1


def test_a_vote_answers_with_the_next_pair_as_next_would_and_null_at_the_end(rater_client):
    campaign = build_campaign(n_prompts=2, k=1)
    client = rater_client(campaign)
    first = client.next(campaign.slug).json()["assignment"]
    voted = client.vote(first, "A")
    assert voted.status_code == 201
    following = voted.json()["next"]
    assert set(following) == CONTRACT_KEYS and following["assignment"] != first
    assert following["progress"] == {"done": 1, "total": 2}
    # The pair handed out with the vote is the rater's lease: `next` gives exactly the same object.
    assert client.next(campaign.slug).json() == following
    # The page asks for the HTML beside the texts, as it does of `next`.
    last = client.post_json(f"/api/rate/{following['assignment']}/vote?html=1", {"choice": "tie"})
    assert last.status_code == 201 and last.json()["next"] is None
    assert client.next(campaign.slug).status_code == 204
    again = client.post_json(f"/api/rate/{following['assignment']}/vote?html=1", {"choice": "tie"})
    assert again.status_code == 200 and again.json()["next"] is None
    refused = client.vote(following["assignment"], "A")
    assert refused.status_code == 409 and "next" not in refused.json()


def test_a_vote_with_html_carries_the_next_pair_rendered(rater_client):
    campaign = build_campaign(n_prompts=3, k=1)
    client = rater_client(campaign)
    token = client.next(campaign.slug).json()["assignment"]
    following = client.post_json(f"/api/rate/{token}/vote?html=1", {"choice": "B"}).json()["next"]
    assert set(following) == CONTRACT_KEYS | {"html"}
    assert following == client.next(campaign.slug, html=1).json()


def test_another_raters_token_is_404_and_changes_nothing(rater_client):
    campaign = build_campaign(n_prompts=3)
    owner, stranger = rater_client(campaign), rater_client(campaign)
    token = owner.next(campaign.slug).json()["assignment"]
    assert stranger.vote(token, "A").status_code == 404
    assert stranger.skip(token).status_code == 404
    assert Vote.objects.count() == 0
    assert owner.vote(token, "A").status_code == 201


def test_expired_lease_accepted_under_quota_410_once_filled(rater_client):
    campaign = build_campaign(n_prompts=1, k=1)
    late = rater_client(campaign)
    token = late.next(campaign.slug).json()["assignment"]
    Assignment.objects.filter(token=token).update(leased_until=timezone.now() - timedelta(seconds=5))
    other = rater_client(campaign)
    other_token = other.next(campaign.slug).json()["assignment"]
    gone = late.vote(token, "A")
    assert gone.status_code == 410 and "filled" in gone.json()["error"]
    assert other.vote(other_token, "A").status_code == 201
    assert Comparison.objects.get(campaign=campaign).votes_count == 1

    roomy = build_campaign(slug="roomy", n_prompts=1, k=2)
    slow = rater_client(roomy)
    token = slow.next(roomy.slug).json()["assignment"]
    Assignment.objects.filter(token=token).update(leased_until=timezone.now() - timedelta(seconds=5))
    assert slow.vote(token, "tie").status_code == 201


def test_skip_then_next_gives_another_pair_and_204_at_the_end(rater_client):
    campaign = build_campaign(n_prompts=2, k=1)
    client = rater_client(campaign)
    first = client.next(campaign.slug).json()["assignment"]
    skipped = client.skip(first)
    assert skipped.status_code == 200 and skipped.json() == {"assignment": first, "skipped": True}
    second = client.next(campaign.slug).json()["assignment"]
    assert second != first
    assert client.vote(second, "A").status_code == 201
    assert client.skip(second).status_code == 409
    assert client.next(campaign.slug).status_code == 204


def test_next_needs_a_campaign_the_rater_may_rate(rater_client):
    mine = build_campaign(slug="mine")
    theirs = build_campaign(slug="theirs")
    client = rater_client(mine)
    assert client.get("/api/rate/next").status_code == 400
    assert client.next("nope").status_code == 404
    assert client.next(theirs.slug).status_code == 404
    assert client.get("/rate/theirs/").status_code == 404


def test_anonymous_and_csrf_less_requests_are_refused(rater_client):
    campaign = build_campaign()
    anonymous = RaterClient()
    assert anonymous.next(campaign.slug).status_code == 403
    client = rater_client(campaign)
    token = client.next(campaign.slug).json()["assignment"]
    no_header = client.post(f"/api/rate/{token}/vote", data='{"choice": "A"}', content_type="application/json")
    assert no_header.status_code == 403
    assert Vote.objects.count() == 0


def test_simulated_raters_finish_a_campaign_and_the_export_credits_the_picked_model(rater_client, tmp_path):
    """Done-when: several raters using only the API, exactly k votes per comparison, export attributes choices."""
    rng = random.Random(7)
    k = 3
    campaign = build_campaign(n_prompts=5, k=k, model_names=["zebra-model-7", "quokka-llm-13b", "yak-9"])
    model_of_text = {r.text: r.model.name for r in Response.objects.all()}
    picked: dict[tuple[str, str, frozenset[str]], str] = {}
    clients = [rater_client(campaign) for _ in range(6)]
    active = list(clients)
    while active:
        client = rng.choice(active)
        response = client.next(campaign.slug)
        if response.status_code == 204:
            active.remove(client)
            continue
        body = response.json()
        choice = rng.choice(["A", "B", "tie", "both_bad"])
        assert client.vote(body["assignment"], choice).status_code == 201
        winner = model_of_text[body["responses"][choice]] if choice in ("A", "B") else choice
        pair = frozenset(model_of_text[text] for text in body["responses"].values())
        key = (client.rater.user.username, body["instruction"], pair)
        assert key not in picked  # never the same pair twice for one rater
        picked[key] = winner

    comparisons = Comparison.objects.filter(campaign=campaign)
    assert comparisons.count() == 15  # 5 prompts x 3 pairs
    for comparison in comparisons:
        assert comparison.votes_count == k
        assert Vote.objects.filter(assignment__comparison=comparison).count() == k
    assert len(picked) == 15 * k

    out = tmp_path / "votes.csv"
    call_command("export_votes", campaign.slug, str(out), stdout=io.StringIO())
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == [
        "campaign", "prompt_id", "category", "model_a", "model_b", "left_model",
        "winner", "rater", "attention_failed", "submitted_at", "seconds", "length_a", "length_b", "rationale",
        "identity_reported", "routing_probability",
    ]  # fmt: skip
    assert len(rows) == 15 * k
    instruction_of = {c.prompt.external_id: c.prompt.instruction for c in comparisons}
    for row in rows:
        pair = frozenset((row["model_a"], row["model_b"]))
        assert row["winner"] == picked[(row["rater"], instruction_of[row["prompt_id"]], pair)]
        assert row["left_model"] in (row["model_a"], row["model_b"])
        assert row["attention_failed"] == "false"
        assert float(row["seconds"]) >= 0


def test_paused_campaign_serves_nothing_new_but_takes_votes_on_served_pairs(rater_client):
    from comparisons import services

    campaign = build_campaign(n_prompts=3)
    client = rater_client(campaign)
    token = client.next(campaign.slug).json()["assignment"]
    services.campaign_pause(campaign=campaign)
    # The pair already served is still this rater's; a vote on it counts.
    assert client.next(campaign.slug).json()["assignment"] == token
    assert client.vote(token, "tie").status_code == 201
    assert client.next(campaign.slug).status_code == 204
    end = client.get(f"/rate/{campaign.slug}/done")
    assert b"paused" in end.content
    services.campaign_close(campaign=campaign)
    assert b"ended" in client.get(f"/rate/{campaign.slug}/done").content
