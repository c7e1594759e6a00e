"""Blinding: nothing a rater can reach names a model or carries a model/run/response/comparison id.

Database ids are pushed to distinctive six-digit ranges first, so an id that leaks
into a page, a JSON body, a header or a redirect is found by a plain text search.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders
from django.db import connection

from comparisons.models import Assignment, Comparison, Vote
from generation.models import GenerationRun, ModelEntry, Prompt, Response
from tests.comparisons.conftest import RaterClient
from tests.comparisons.factories import MODEL_NAMES, build_campaign

pytestmark = pytest.mark.django_db

ID_STARTS = {
    ModelEntry: 731_000,
    Response: 742_000,
    GenerationRun: 753_000,
    Comparison: 764_000,
    Prompt: 775_000,
    Assignment: 786_000,
    Vote: 797_000,
}


def bump_ids() -> None:
    with connection.cursor() as cursor:
        for model, start in ID_STARTS.items():
            table = model._meta.db_table
            if connection.vendor == "postgresql":
                cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [table, start])
            else:
                cursor.execute("DELETE FROM sqlite_sequence WHERE name = %s", [table])
                cursor.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (%s, %s)", [table, start])


def sensitive_ids() -> set[int]:
    ids: set[int] = set()
    for model in ID_STARTS:
        ids.update(model.objects.values_list("pk", flat=True))
    return ids


def answer_text(response) -> str:
    """Everything a browser receives: status line, headers (incl. Location and cookies) and body."""
    parts = [str(response.status_code)]
    parts += [f"{k}: {v}" for k, v in response.headers.items()]
    parts += [morsel.OutputString() for morsel in response.cookies.values()]
    body = b"".join(response.streaming_content) if response.streaming else response.content
    parts.append(body.decode("utf-8", errors="replace"))
    return "\n".join(parts)


def test_every_rater_reachable_answer_is_blind():
    bump_ids()
    campaign = build_campaign(n_prompts=4, k=2, attention_check_rate=0.5)
    GenerationRun.objects.create(model=ModelEntry.objects.get(name=MODEL_NAMES[0]), eval_set=campaign.eval_set)
    assert min(ModelEntry.objects.values_list("pk", flat=True)) > 731_000

    seen: list[tuple[str, str]] = []

    def record(label, response):
        seen.append((label, answer_text(response)))
        return response

    client = RaterClient()
    join = f"/join/{campaign.invite_token}?PROLIFIC_PID=p1"
    record("join GET", client.get(join))
    joined = record("join POST", client.post(join, {"csrfmiddlewaretoken": client.csrf()}))
    record("rate page", client.get(joined["Location"]))
    record("home", client.get("/"))
    for path in ("comparisons/rate.js", "comparisons/rate.css"):
        with open(finders.find(path), encoding="utf-8") as handle:
            seen.append((path, handle.read()))
    # A no-JavaScript vote, then the API until the rater is done, with every error answer on the way.
    page_token = re.search(r'name="assignment" id="assignment" value="([^"]+)"', seen[2][1]).group(1)
    record(
        "form vote",
        client.post(
            f"/rate/{campaign.slug}/vote",
            {"csrfmiddlewaretoken": client.csrf(), "assignment": page_token, "choice": "A"},
        ),
    )
    record("form vote again (409 message)", client.get(f"/rate/{campaign.slug}/"))
    skipped = False
    while True:
        nxt = record("next", client.next(campaign.slug, html=1))
        if nxt.status_code == 204:
            break
        token = nxt.json()["assignment"]
        if not skipped:
            record("skip", client.skip(token))
            skipped = True
            continue
        record("vote", client.vote(token, "B", "because"))
        record("vote repeat", client.vote(token, "B"))
        record("vote conflict", client.vote(token, "A"))
        record("skip voted", client.skip(token))
    record("vote unknown", client.vote("x" * 43, "A"))
    record("vote bad", client.post_json(f"/api/rate/{token}/vote", None, raw=b"nope"))
    record("done", client.get(f"/rate/{campaign.slug}/done"))
    record("rate when done", client.get(f"/rate/{campaign.slug}/"))
    record("admin", client.get("/admin/"))
    record("admin campaign", client.get("/admin/comparisons/campaign/"))

    assert len(seen) > 15
    ids = sensitive_ids()
    names = [m.name.lower() for m in ModelEntry.objects.all()]
    for label, text in seen:
        lowered = text.lower()
        for name in names:
            assert name not in lowered, f"model name {name!r} leaked in {label}"
        for pk in ids:
            assert not re.search(rf"(?<!\d){pk}(?!\d)", text), f"database id {pk} leaked in {label}"
        assert "response_a" not in lowered and "left_is_a" not in lowered, f"internal field name in {label}"

    # The admin is not reachable for a rater: only its login page came back.
    admin_answers = [text for label, text in seen if label.startswith("admin")]
    assert all(text.startswith("302") and "/admin/login/" in text for text in admin_answers)


def test_the_check_would_catch_a_leak():
    """Guard against a vacuous blinding test: the same search does find the names and ids when present."""
    bump_ids()
    build_campaign(n_prompts=1)
    comparison = Comparison.objects.get()
    leaky = f"<div data-id='{comparison.pk}'>{comparison.response_a.model.name}</div>"
    assert re.search(rf"(?<!\d){comparison.pk}(?!\d)", leaky)
    assert MODEL_NAMES[1] in leaky or MODEL_NAMES[0] in leaky
