"""Fair rendering: the campaign chooses Markdown or plain text, and either way code keeps its indentation."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from comparisons.models import Campaign, Comparison
from comparisons.served_text import served_text
from generation.models import Response
from tests.comparisons.factories import build_campaign, build_eval_set
from tests.comparisons.test_markdown import UNFENCED_PYTHON

HEADINGS = "\n\n# A very big heading\n\n## Another one\n\nSome text.  \r\n"


def set_texts(campaign: Campaign, text_a: str, text_b: str) -> None:
    for comparison in Comparison.objects.filter(campaign=campaign):
        Response.objects.filter(pk=comparison.response_a_id).update(text=text_a)
        Response.objects.filter(pk=comparison.response_b_id).update(text=text_b)


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["markdown", "plain"])
def test_the_api_renders_in_the_campaigns_mode(rater_client, mode):
    campaign = build_campaign(n_prompts=1, render_mode=mode)
    set_texts(campaign, UNFENCED_PYTHON, HEADINGS)
    body = rater_client(campaign).next(campaign.slug, html=1).json()
    html = body["html"]["A"] + body["html"]["B"]
    assert "# Driver Code" in html and "<h1>Driver Code" not in html
    assert "    if n == 0:" in html  # indentation kept either way
    if mode == "plain":
        assert "<h1>" not in html and "# A very big heading" in html
        assert all(body["html"][side].startswith('<pre class="plain">') for side in "AB")
    else:
        assert "<h1>A very big heading</h1>" in html and "<pre><code>def isPowerOfThree" in html
    assert sorted(body["responses"].values()) == sorted([served_text(UNFENCED_PYTHON), served_text(HEADINGS)])


@pytest.mark.django_db
def test_create_campaign_takes_the_rendering_and_markdown_is_the_default():
    eval_set, _, _ = build_eval_set(n_prompts=2)
    names = ["zebra-model-7", "quokka-llm-13b"]
    base = ["--evalset", eval_set.name, "--models", *names]
    call_command("create_campaign", "plain-one", *base, "--render", "plain", stdout=StringIO())
    call_command("create_campaign", "default-one", *base, stdout=StringIO())
    assert Campaign.objects.get(slug="plain-one").render_mode == "plain"
    assert Campaign.objects.get(slug="default-one").render_mode == "markdown"
    with pytest.raises(CommandError, match="invalid choice: 'html'"):
        call_command("create_campaign", "bad-one", *base, "--render", "html", stdout=StringIO())
    assert not Campaign.objects.filter(slug="bad-one").exists()
