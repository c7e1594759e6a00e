"""Blinding against a curious rater, on the real fixtures (Alpaca 7B vs text-davinci-003).

Every text-davinci-003 output in the fixtures starts with a space or a newline and no Alpaca 7B output
does: served as stored, "the side that starts with whitespace" named the model every time. Raters must
get the canonical served text on every surface they can reach.
"""

from __future__ import annotations

import html as html_lib
import random
import re

import pytest
from scipy.stats import binomtest

from comparisons.blinding import audit_pair
from comparisons.markdown import render_text
from comparisons.models import Assignment
from comparisons.selectors import campaign_blinding_audit
from comparisons.served_text import served_text
from generation.models import Response
from tests.comparisons.conftest import RaterClient
from tests.comparisons.real_data import ALPACA, DAVINCI, real_campaign, served_models

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def whitespace_side(responses: dict[str, str]) -> str:
    """The hostile rater's rule: the side whose text starts with whitespace (A when neither or both do)."""
    a, b = (responses[side][:1].isspace() for side in "AB")
    return "B" if b and not a else "A"


def test_the_real_fixtures_differ_in_leading_whitespace_as_stored():
    """The premise: stored texts keep the tell (imports round-trip), so only serving can remove it."""
    real_campaign()
    starts = {
        model: [t[:1].isspace() for t in Response.objects.filter(model__name=model).values_list("text", flat=True)]
        for model in ("alpaca-7b", DAVINCI)
    }
    assert sum(starts[DAVINCI]) == len(starts[DAVINCI]) == 252
    assert sum(starts["alpaca-7b"]) == 0


def test_a_rater_who_picks_the_side_starting_with_whitespace_is_at_chance(rater_client):
    random.seed(20261202)  # the left/right draws; the bound below holds for any seed but at 1 in 10^4
    campaign = real_campaign(k=1)
    client = rater_client(campaign)
    picked_davinci = votes = 0
    while votes < 200:
        pair = client.next(campaign.slug)
        assert pair.status_code == 200
        body = pair.json()
        choice = whitespace_side(body["responses"])
        models = served_models(body["assignment"])
        picked_davinci += models["AB".index(choice)] == DAVINCI
        assert client.vote(body["assignment"], choice).status_code == 201
        votes += 1
    # On texts served as stored this rater picked text-davinci-003 200 times out of 200.
    test = binomtest(picked_davinci, votes, 0.5)
    assert test.pvalue > 1e-4, f"whitespace picked {DAVINCI} {picked_davinci} times of {votes}"


RESPONSE_DIV = re.compile(r'<div id="response-([ab])"[^>]*>(.*?)</div>', re.DOTALL)
RAW_PRE = re.compile(r'<pre id="raw-([ab])"[^>]*>(.*?)</pre>', re.DOTALL)
TOKEN_INPUT = re.compile(r'name="assignment" id="assignment" value="([^"]+)"')


def stored_view(token: str) -> dict[str, str]:
    """The stored (raw) texts of an assignment in its screen order: what the server must NOT send as is."""
    assignment = Assignment.objects.select_related(
        "comparison__prompt", "comparison__response_a", "comparison__response_b"
    ).get(token=token)
    comparison = assignment.comparison
    a, b = comparison.response_a.text, comparison.response_b.text
    left, right = (a, b) if assignment.left_is_a else (b, a)
    return {"instruction": comparison.prompt.instruction, "input": comparison.prompt.input, "A": left, "B": right}


def crawl_served_pairs(campaign) -> list[dict]:
    """Rate the whole campaign as one rater, reading every pair on every surface a rater can reach: the page,
    the API with and without HTML, and the page reached after a no-JavaScript form vote. Returns per pair what
    each surface served."""
    client = RaterClient()
    client.join(campaign)
    crawled: list[dict] = []
    page = client.get(f"/rate/{campaign.slug}/")
    while page.status_code == 200:
        token = TOKEN_INPUT.search(page.content.decode()).group(1)
        plain = client.next(campaign.slug).json()
        rich = client.next(campaign.slug, html=1).json()
        assert plain["assignment"] == rich["assignment"] == token
        divs = dict(RESPONSE_DIV.findall(page.content.decode()))
        raw = dict(RAW_PRE.findall(page.content.decode()))
        crawled.append(
            {"token": token, "plain": plain, "rich": rich, "page": {"A": divs["a"], "B": divs["b"]},
             "page_raw": {"A": html_lib.unescape(raw["a"]), "B": html_lib.unescape(raw["b"])}}
        )  # fmt: skip
        # Alternate the no-JavaScript form and the API for the vote; the form lands on the page again.
        if len(crawled) % 2:
            form = {"csrfmiddlewaretoken": client.csrf(), "assignment": token, "choice": "tie"}
            page = client.post(f"/rate/{campaign.slug}/vote", form, follow=True)
        else:
            assert client.vote(token, "tie").status_code == 201
            page = client.get(f"/rate/{campaign.slug}/", follow=True)
        if page.redirect_chain and page.redirect_chain[-1][0].endswith("/done"):
            break
    return crawled


def test_every_surface_serves_the_canonical_text_of_both_sides():
    campaign = real_campaign(k=1)
    crawled = crawl_served_pairs(campaign)
    assert len(crawled) == 252
    for pair in crawled:
        stored = stored_view(pair["token"])
        for body in (pair["plain"], pair["rich"]):
            assert body["instruction"] == served_text(stored["instruction"])
            assert body["input"] == served_text(stored["input"])
            for side in "AB":
                text = body["responses"][side]
                assert text == served_text(stored[side]) and served_text(text) == text
                assert not text[:1].isspace() and not text[-1:].isspace() and "\r" not in text
        for side in "AB":
            assert pair["page_raw"][side] == pair["plain"]["responses"][side]  # "show raw text" on the page
            expected = render_text(pair["plain"]["responses"][side])
            assert pair["rich"]["html"][side] == expected
            assert html_lib.unescape(pair["page"][side]) == html_lib.unescape(expected)
        assert pair["rich"]["html"]["instruction"] == render_text(pair["plain"]["instruction"])

    # What the rater received, side by side with the truth: the audit finds byte-level features at chance.
    texts = {ALPACA: [], DAVINCI: []}
    for pair in crawled:
        for side, model in zip("AB", served_models(pair["token"]), strict=True):
            texts[model].append(pair["plain"]["responses"][side])
    audit = audit_pair(texts_a=texts[ALPACA], texts_b=texts[DAVINCI], groups=[str(i) for i in range(252)],
                       model_a=ALPACA, model_b=DAVINCI)  # fmt: skip
    byte_level = audit["classifier"]["byte_level"]
    assert byte_level["at_chance"] and byte_level["accuracy"] == 50.0
    assert all(f["at_chance"] for f in audit["features"] if f["group"] == "byte-level")


def test_attention_checks_cannot_be_told_from_real_pairs_by_byte_level_features():
    """On the real fixtures, with attention checks at 20%: the audit's gold-versus-real classifier is at chance
    on the byte-level features of the served texts. Even on the stored bytes it stays near chance, as each gold
    pair carries one answer of each model like a real pair (gold pairs of one model's texts: 100%)."""
    campaign = real_campaign(slug="gold-study", attention_check_rate=0.2)
    assert campaign.comparisons.filter(is_attention_check=True).count() == 51
    served = campaign_blinding_audit(campaign=campaign)["attention_checks"]["byte_level"]
    assert served["gold_pairs"] == 51 and served["real_pairs"] == 252
    assert served["at_chance"] and served["balanced_accuracy"] == 50.0
    stored = campaign_blinding_audit(campaign=campaign, stored=True)["attention_checks"]["byte_level"]
    assert stored["balanced_accuracy"] < 62 and stored["ci_low"] < 55, stored
