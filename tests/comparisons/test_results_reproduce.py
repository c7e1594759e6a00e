"""The results page's "exclude flagged" mode: its printed `analyze` command gives the page's figures exactly
from the votes export, and its words say what was left out."""

from __future__ import annotations

import html
import io
import json
import re
import shlex

import pytest
from django.core.management import call_command

from comparisons import services
from comparisons.models import Rater, Vote
from comparisons.results import campaign_analysis
from tests.comparisons.factories import build_campaign, invite_rater, make_user
from tests.comparisons.test_results import vote_as_planned

pytestmark = pytest.mark.django_db

ZEBRA, QUOKKA = "zebra-model-7", "quokka-llm-13b"
CAREFUL = {i: ZEBRA if i % 3 else QUOKKA for i in range(10)}  # zebra wins two prompts in three
HOSTILE = {i: QUOKKA for i in range(10)}  # the flagged raters always pick quokka


@pytest.fixture
def mixed_campaign(settings):
    """Careful raters (some votes too fast), a rater who failed an attention check and was unflagged by an
    admin afterwards, and a rater an admin flagged (named like an option: '-flagged')."""
    settings.MIN_SECONDS_PER_VOTE = 3
    campaign = build_campaign(slug="mixed", n_prompts=10, k=4)
    careful = [invite_rater(campaign) for _ in range(2)]
    failed = invite_rater(campaign)
    flagged = services.rater_create_named(username="-flagged", password="pw-123456789", campaigns=[campaign])
    for rater in careful:
        vote_as_planned(campaign, rater, CAREFUL)
    for rater in (failed, flagged):
        vote_as_planned(campaign, rater, HOSTILE)
    Vote.objects.update(seconds=12.0)
    # Every third vote of the careful raters was cast too fast; they pick quokka there.
    fast = Vote.objects.filter(assignment__rater=careful[0], assignment__comparison__prompt__position__in=[0, 3, 6])
    assert fast.update(seconds=1.0) == 3
    Vote.objects.filter(pk=Vote.objects.filter(assignment__rater=failed).order_by("pk").first().pk).update(
        attention_failed=True
    )
    Rater.objects.filter(pk=failed.pk).update(flagged=False)  # an admin cleared the flag; the failure stays
    Rater.objects.filter(pk=flagged.pk).update(flagged=True, flag_reason="Flagged by an admin.")
    return campaign


def test_the_printed_command_reproduces_the_exclude_flagged_page_exactly(mixed_campaign, client, tmp_path):
    analyst = make_user("ana")
    services.user_make_analyst(user=analyst)
    client.force_login(analyst)
    page = client.get(f"/campaigns/{mixed_campaign.slug}/results/?exclude_flagged=1").content.decode()
    command = html.unescape(re.search(r"<code>(python manage\.py analyze [^<]*)</code>", page).group(1))
    words = " ".join(html.unescape(re.search(r'<span id="left-out">(.*?)</span>', page, re.S).group(1)).split())
    assert words == (
        "Left out: 20 votes of 2 raters who failed an attention check or are flagged, "
        "and 3 other votes cast in under 3 seconds."
    )

    args = shlex.split(command)
    assert args[:3] == ["python", "manage.py", "analyze"] and args[3] == "mixed-votes.csv"
    assert "--exclude-rater=-flagged" in args
    export = tmp_path / args[3]
    call_command("export_votes", mixed_campaign.slug, str(export), stdout=io.StringIO())
    out = io.StringIO()
    call_command("analyze", str(export), *args[4:], "--json", stdout=out)
    offline = json.loads(out.getvalue())

    shown = campaign_analysis(campaign=mixed_campaign, exclude_flagged=True)
    assert offline["votes"]["used"] == shown["votes"]["used"] == 40 - 20 - 3
    assert offline["pairs"] == shown["pairs"]
    assert offline["ranking"] == shown["ranking"]
    # The page prints the win rate the offline run gives.
    rate = shown["pairs"][0]["win_rate"]
    assert f"{rate:.1f}" in page
