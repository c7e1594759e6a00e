"""Self-identifying answers are kept from raters: a campaign leaves out every comparison where an answer names its
model, its maker or itself as an AI, says how many and why, and builds no attention check from such answers."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from comparisons import services
from comparisons.models import Campaign, Comparison
from generation.models import Response
from generation.services import responses_scan_identity
from tests.comparisons.factories import build_eval_set, make_user
from tests.factories import ModelEntryFactory

pytestmark = pytest.mark.django_db

LEAKS = {
    (0, "zebra-model-7"): "As an AI language model, I cannot taste food, but here is a recipe.",
    (1, "zebra-model-7"): "I was trained by OpenAI. The answer is 42.",
    (1, "quokka-llm-13b"): "I'm ChatGPT! The answer is 42.",
    (4, "quokka-llm-13b"): "Unlike zebra model 7, I keep it short.",
}


def leaky_eval_set(n_prompts: int = 8):
    """Two models on n prompts; the answers in LEAKS self-identify (three by their words, one by naming the other
    model's entry), so the comparisons of prompts 0, 1 and 4 leak."""
    eval_set, models, prompts = build_eval_set(n_prompts=n_prompts)
    for (position, name), text in LEAKS.items():
        Response.objects.filter(prompt=prompts[position], model__name=name).update(text=text)
    return eval_set, models, prompts


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def create(eval_set, *extra: str) -> str:
    return run(
        "create_campaign", "leaky", "--evalset", eval_set.name, "--models", "zebra-model-7", "quokka-llm-13b",
        "--votes-per-pair", "1", "--attention-rate", "0.5", *extra,
    )  # fmt: skip


def served_texts(rater_client, campaign: Campaign, raters: int = 2) -> list[str]:
    """Every text raters receive until nothing is left for them (one vote per pair, k = 1)."""
    texts = []
    for _ in range(raters):
        client = rater_client(campaign)
        while (response := client.next(campaign.slug, html=1)).status_code == 200:
            pair = response.json()
            texts += [pair["responses"]["A"], pair["responses"]["B"], pair["html"]["A"], pair["html"]["B"]]
            assert client.vote(pair["assignment"], "A").status_code == 201
    return texts


def test_by_default_no_self_identifying_answer_is_served_and_the_count_is_reported(rater_client):
    eval_set, _, _ = leaky_eval_set()
    out = create(eval_set)

    assert "3 comparisons left out because an answer names its model, its maker or itself as an AI" in out
    assert "5 comparisons x 1 votes" in out
    assert (
        "left out comparison user_oriented_task_1 (quokka-llm-13b vs zebra-model-7): "
        "quokka-llm-13b “I'm ChatGPT” (model name); zebra-model-7 “I was trained by OpenAI” (vendor)"
    ) in out
    assert "user_oriented_task_4 (quokka-llm-13b vs zebra-model-7): quokka-llm-13b “zebra model 7” (entry name)" in out

    campaign = Campaign.objects.get(slug="leaky")
    assert campaign.identity_leaks_left_out == 3
    assert [leak["prompt_id"] for leak in campaign.identity_leaks] == [
        "user_oriented_task_0",
        "user_oriented_task_1",
        "user_oriented_task_4",
    ]
    leaking = set(Response.objects.exclude(identity_matches=[]).values_list("pk", flat=True))
    assert len(leaking) == 4
    used = Comparison.objects.filter(campaign=campaign).values_list("response_a", "response_b", "is_attention_check")
    assert {kind for *_, kind in used} == {False, True}  # real pairs and gold pairs were built
    assert not leaking & {pk for a, b, _ in used for pk in (a, b)}

    texts = served_texts(rater_client, campaign)
    assert texts, "raters were served pairs"
    for leak in LEAKS.values():
        assert not any(leak.split(",")[0].split(".")[0] in text for text in texts)


def test_keep_identity_leaks_keeps_them_for_real_pairs_but_not_for_gold_pairs():
    eval_set, _, _ = leaky_eval_set()
    out = create(eval_set, "--keep-identity-leaks")

    assert "kept comparison user_oriented_task_0 (quokka-llm-13b vs zebra-model-7)" in out
    assert "3 comparisons with a self-identifying answer kept (--keep-identity-leaks)" in out
    campaign = Campaign.objects.get(slug="leaky")
    assert campaign.keep_identity_leaks and campaign.identity_leaks_left_out == 0
    assert Comparison.objects.filter(campaign=campaign, is_attention_check=False).count() == 8
    leaking = set(Response.objects.exclude(identity_matches=[]).values_list("pk", flat=True))
    golds = Comparison.objects.filter(campaign=campaign, is_attention_check=True)
    assert golds.exists()
    assert not leaking & {pk for pair in golds.values_list("response_a", "response_b") for pk in pair}


def test_opening_scans_again_so_an_answer_naming_a_model_added_later_is_left_out():
    eval_set, _, prompts = build_eval_set(n_prompts=3)
    Response.objects.filter(prompt=prompts[2], model__name="zebra-model-7").update(
        text="Ask walrus-2b instead.", identity_matches=[]
    )
    ModelEntryFactory(name="walrus-2b")  # added after the answer was stored and scanned
    out = create(eval_set)
    assert "user_oriented_task_2 (quokka-llm-13b vs zebra-model-7): zebra-model-7 “walrus-2b” (entry name)" in out
    assert Comparison.objects.filter(campaign__slug="leaky", is_attention_check=False).count() == 2


def test_a_campaign_whose_every_comparison_leaks_is_refused_and_nothing_is_created():
    eval_set, _, prompts = build_eval_set(n_prompts=2)
    Response.objects.filter(model__name="zebra-model-7").update(text="As an AI, I prefer brevity.")
    with pytest.raises(CommandError, match="Every comparison of this campaign has an answer that names its model"):
        create(eval_set)
    assert not Campaign.objects.filter(slug="leaky").exists()
    assert Response.objects.exclude(identity_matches=[]).count() == 0  # the open's rescan was rolled back too


def test_the_admin_creates_opens_and_reports_left_out_comparisons():
    eval_set, models, _ = leaky_eval_set()
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("boss", "boss@example.org", "pw-123456789"))
    form = {
        "slug": "from-admin", "title": "From the admin", "eval_set": eval_set.pk, "models": [m.pk for m in models],
        "votes_per_comparison": 2, "attention_check_rate": 0, "lease_seconds": 600, "render_mode": "markdown",
    }  # fmt: skip
    assert admin.post("/admin/comparisons/campaign/add/", form).status_code == 302
    campaign = Campaign.objects.get(slug="from-admin")
    assert not campaign.keep_identity_leaks
    page = admin.post(
        "/admin/comparisons/campaign/", {"action": "open_campaigns", "_selected_action": [campaign.pk]}, follow=True
    ).content.decode()
    assert "rom-admin is open: 5 new comparisons" in page  # the admin capitalises its messages
    assert "3 comparisons left out because an answer names its model, its maker or itself as an AI" in page

    progress = admin.get(f"/admin/comparisons/campaign/{campaign.pk}/progress/").content.decode()
    assert "user_oriented_task_0 (quokka-llm-13b vs zebra-model-7): zebra-model-7 “As an AI language model”" in progress
    change = admin.get(f"/admin/comparisons/campaign/{campaign.pk}/change/").content.decode()
    assert "3 comparisons left out" in change

    # The checkbox keeps them.
    assert (
        admin.post(
            "/admin/comparisons/campaign/add/", {**form, "slug": "keeps", "keep_identity_leaks": "on"}
        ).status_code
        == 302
    )
    kept = Campaign.objects.get(slug="keeps")
    assert kept.keep_identity_leaks
    admin.post("/admin/comparisons/campaign/", {"action": "open_campaigns", "_selected_action": [kept.pk]})
    assert Comparison.objects.filter(campaign=kept).count() == 8


def test_the_results_page_shows_each_models_leak_rate_and_what_was_left_out(client):
    eval_set, _, _ = leaky_eval_set()
    create(eval_set)
    analyst = make_user("ana")
    services.user_make_analyst(user=analyst)
    client.force_login(analyst)

    page = client.get(reverse("comparisons:results", args=["leaky"])).content.decode()

    # zebra: prompts 0 and 1 of 8; quokka: prompts 1 and 4 of 8.
    rates = page[page.index('id="identity-rates"') :]
    assert re.search(r"<td>quokka-llm-13b</td><td[^>]*>2</td><td[^>]*>8</td><td[^>]*>25\.0</td>", rates)
    assert re.search(r"<td>zebra-model-7</td><td[^>]*>2</td><td[^>]*>8</td><td[^>]*>25\.0</td>", rates)
    assert "3 comparisons were left out because an answer names its model, its maker or itself as an AI" in page


def test_the_admin_lists_self_identifying_responses_with_the_phrase():
    leaky_eval_set()
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("boss", "boss@example.org", "pw-123456789"))
    responses_scan_identity()  # the texts were changed behind the detector's back: scan them

    flagged = admin.get("/admin/generation/response/?self_identifies=yes").content.decode()
    assert "“I was trained by OpenAI” (vendor)" in flagged
    assert "“As an AI language model” (self description)" in flagged
    assert "“zebra model 7” (entry name)" in flagged
    assert "4 responses" in flagged
    clean = admin.get("/admin/generation/response/?self_identifies=no").content.decode()
    assert "“I was trained by OpenAI”" not in clean and "12 responses" in clean
