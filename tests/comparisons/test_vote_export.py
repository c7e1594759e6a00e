"""The votes export carries the served-text lengths and the rationales, so the results page's length-bias table
can be reproduced offline from it (`manage.py analyze`), and analysts keep what raters wrote."""

from __future__ import annotations

import csv
import json
import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from comparisons import services
from comparisons.models import Comparison
from comparisons.results import campaign_analysis
from comparisons.served_text import served_text
from comparisons.stats import EXPORT_COLUMNS
from generation.models import Response
from tests.comparisons.factories import build_campaign, invite_rater, make_user

pytestmark = pytest.mark.django_db

OLD_COLUMNS = ["campaign", "prompt_id", "category", "model_a", "model_b", "left_model", "winner", "rater",
               "attention_failed", "submitted_at", "seconds"]  # fmt: skip
RATIONALE = 'B is exact, "A" rambles,\nand\ttabs'


def padded(words: int, i: int) -> str:
    """A text whose stored bytes are longer than what raters read (leading newlines, CRLF, trailing spaces)."""
    return "\n\n " + "\r\n".join(f"line {k} " + "word " * words for k in range(1 + i % 3)) + "  \r\n"


@pytest.fixture
def voted_campaign():
    campaign = build_campaign(slug="lengths", n_prompts=8, k=3)
    for i, comparison in enumerate(Comparison.objects.filter(campaign=campaign).order_by("pk")):
        Response.objects.filter(pk=comparison.response_a_id).update(text=padded(5 + 60 * (i % 4), i))
        Response.objects.filter(pk=comparison.response_b_id).update(text=padded(8 + 25 * (i % 3), i + 1))
    for r in range(3):
        rater = invite_rater(campaign)
        for n in range(8):
            assignment = services.assignment_next(rater=rater, campaign=campaign)
            choice = ["A", "B", "tie", "A", "B", "both_bad", "A", "A"][(n + r) % 8]
            services.vote_cast(
                rater=rater, token=assignment.token, choice=choice, rationale=RATIONALE if n == 0 else ""
            )
    return campaign


def test_the_export_appends_served_lengths_and_rationales_after_the_old_columns(voted_campaign, tmp_path):
    out = tmp_path / "votes.csv"
    call_command("export_votes", voted_campaign.slug, str(out), stdout=StringIO())
    rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    assert (
        list(rows[0])
        == [*OLD_COLUMNS, "length_a", "length_b", "rationale", "identity_reported", "routing_probability"]
        == list(EXPORT_COLUMNS)
    )
    assert len(rows) == 24
    assert {row["routing_probability"] for row in rows} == {""}  # served without adaptive routing
    texts = {
        (c.prompt.external_id, c.response_a.model.name): (c.response_a.text, c.response_b.text)
        for c in Comparison.objects.filter(campaign=voted_campaign).select_related(
            "prompt", "response_a__model", "response_b"
        )
    }
    for row in rows:
        text_a, text_b = texts[(row["prompt_id"], row["model_a"])]
        assert int(row["length_a"]) == len(served_text(text_a)) < len(text_a)
        assert int(row["length_b"]) == len(served_text(text_b)) < len(text_b)
    assert sorted(row["rationale"] for row in rows).count(RATIONALE) == 3  # quoted: commas, quotes, newline


def test_the_results_page_length_bias_is_reproduced_by_analyze_on_the_export(voted_campaign, tmp_path, client):
    out = tmp_path / "votes.csv"
    call_command("export_votes", voted_campaign.slug, str(out), stdout=StringIO())
    printed = StringIO()
    call_command("analyze", str(out), "--json", stdout=printed)
    offline = json.loads(printed.getvalue())

    page_analysis = campaign_analysis(campaign=voted_campaign, use_cache=False)
    assert page_analysis["length_bias"]["available"] and len(page_analysis["length_bias"]["buckets"]) >= 2
    assert offline["length_bias"] == page_analysis["length_bias"]

    # And on the page itself, as an analyst reads it.
    user = make_user("ana")
    services.user_make_analyst(user=user)
    client.force_login(user)
    html = client.get(reverse("comparisons:results", args=[voted_campaign.slug])).content.decode()
    row = re.search(r"Longer response wins \(ties half\)</th>\s*<td>(\d+)</td><td class=\"num\">([\d.]+)</td>", html)
    bias = offline["length_bias"]
    assert row is not None and (int(row.group(1)), float(row.group(2))) == (
        bias["votes"],
        round(bias["longer_win_rate"], 1),
    )
