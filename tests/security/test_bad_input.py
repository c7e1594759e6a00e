"""Bad input sweep: every input surface fed malformed, oversized, wrong-encoding and hostile values.

Each case is one row of a table: the surface, the input, the answer expected (a 4xx with a readable
message, or a command's CommandError), and the check that nothing in the database changed. The
number of cases is printed at the end of the run ("bad-input cases: N").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from comparisons.models import Assignment, Campaign, Comparison, Rater, Vote
from generation.models import EvalSet, ModelEntry, Prompt, Response
from tests.comparisons.conftest import RaterClient
from tests.comparisons.factories import build_campaign

pytestmark = pytest.mark.django_db

CASES_RUN: list[str] = []  # read by the terminal summary hook in conftest.py


def snapshot() -> dict[str, Any]:
    models = [EvalSet, Prompt, ModelEntry, Response, Campaign, Comparison, Rater, Assignment, Vote]
    state: dict[str, Any] = {m.__name__: m.objects.count() for m in models}
    state["users"] = get_user_model().objects.count()
    state["assignments"] = sorted(Assignment.objects.values_list("token", "status"))
    state["votes_count"] = sorted(Comparison.objects.values_list("pk", "votes_count"))
    return state


# ---------------------------------------------------------------- the rating API and pages


@dataclass(frozen=True)
class HttpCase:
    id: str
    method: str
    path: str  # {slug}, {token}, {invite} are filled in
    body: bytes | None = None
    content_type: str = "application/json"
    status: int = 400
    message: str = ""  # a substring of the answer


BIG = 70 * 1024
HTTP_CASES = [
    # vote bodies
    HttpCase("vote: empty body", "POST", "/api/rate/{token}/vote", b"", message="must be JSON"),
    HttpCase("vote: not JSON", "POST", "/api/rate/{token}/vote", b"choice=A", message="must be JSON"),
    HttpCase("vote: truncated JSON", "POST", "/api/rate/{token}/vote", b'{"choice": "A"', message="must be JSON"),
    HttpCase("vote: JSON array", "POST", "/api/rate/{token}/vote", b'["A"]', message="JSON object"),
    HttpCase("vote: JSON string", "POST", "/api/rate/{token}/vote", b'"A"', message="JSON object"),
    HttpCase("vote: JSON null", "POST", "/api/rate/{token}/vote", b"null", message="JSON object"),
    HttpCase("vote: no choice", "POST", "/api/rate/{token}/vote", b'{"rationale": "x"}', message="'choice'"),
    HttpCase("vote: choice null", "POST", "/api/rate/{token}/vote", b'{"choice": null}', message="'choice'"),
    HttpCase("vote: choice number", "POST", "/api/rate/{token}/vote", b'{"choice": 1}', message="'choice'"),
    HttpCase("vote: choice list", "POST", "/api/rate/{token}/vote", b'{"choice": ["A"]}', message="'choice'"),
    HttpCase("vote: choice object", "POST", "/api/rate/{token}/vote", b'{"choice": {"A": 1}}', message="'choice'"),
    HttpCase("vote: unknown choice", "POST", "/api/rate/{token}/vote", b'{"choice": "C"}', message="one of"),
    HttpCase(
        "vote: lone surrogate in the rationale",
        "POST",
        "/api/rate/{token}/vote",
        b'{"choice": "A", "rationale": "fine \\ud800 then"}',
        message="contains a lone surrogate",
    ),
    HttpCase("vote: lower-case a", "POST", "/api/rate/{token}/vote", b'{"choice": "a"}', message="one of"),
    HttpCase("vote: model name as choice", "POST", "/api/rate/{token}/vote", b'{"choice": "left"}', message="one of"),
    HttpCase(
        "vote: HTML as choice", "POST", "/api/rate/{token}/vote", b'{"choice": "<script>x</script>"}', message="one of"
    ),
    HttpCase(
        "vote: rationale number", "POST", "/api/rate/{token}/vote", b'{"choice": "A", "rationale": 5}', message="string"
    ),
    HttpCase(
        "vote: rationale list",
        "POST",
        "/api/rate/{token}/vote",
        b'{"choice": "A", "rationale": ["x"]}',
        message="string",
    ),
    HttpCase(
        "vote: rationale too long",
        "POST",
        "/api/rate/{token}/vote",
        json.dumps({"choice": "A", "rationale": "x" * 5001}).encode(),
        message="limited to",
    ),
    HttpCase(
        "vote: oversized body",
        "POST",
        "/api/rate/{token}/vote",
        json.dumps({"choice": "A", "rationale": "x" * BIG}).encode(),
        status=413,
        message="at most",
    ),
    HttpCase("vote: latin-1 bytes", "POST", "/api/rate/{token}/vote", b'{"choice": "A\xff"}', message="JSON"),
    HttpCase(
        "vote: invalid UTF-8 sequence", "POST", "/api/rate/{token}/vote", b'{"choice": "\xc3\x28"}', message="JSON"
    ),
    HttpCase("vote: lone surrogate", "POST", "/api/rate/{token}/vote", b'{"choice": "\\ud800"}', message="one of"),
    HttpCase("vote: deeply nested JSON", "POST", "/api/rate/{token}/vote", b"[" * 50_000, message="JSON"),
    HttpCase(
        "vote: NUL in rationale",
        "POST",
        "/api/rate/{token}/vote",
        b'{"choice": "A", "rationale": "a\\u0000b"}',
        message="NUL",
    ),
    HttpCase("vote: NaN", "POST", "/api/rate/{token}/vote", b'{"choice": NaN}', message="'choice'"),
    HttpCase(
        "vote: form-encoded", "POST", "/api/rate/{token}/vote", b"choice=A", "application/x-www-form-urlencoded", 400
    ),
    # tokens in the path
    HttpCase("vote: unknown token", "POST", "/api/rate/not-a-token/vote", b'{"choice": "A"}', status=404),
    HttpCase("vote: very long token", "POST", "/api/rate/" + "x" * 5000 + "/vote", b'{"choice": "A"}', status=404),
    HttpCase("vote: unicode token", "POST", "/api/rate/%E2%98%83%F0%9F%92%A9/vote", b'{"choice": "A"}', status=404),
    HttpCase("vote: SQL-ish token", "POST", "/api/rate/'%20OR%201=1--/vote", b'{"choice": "A"}', status=404),
    HttpCase("skip: unknown token", "POST", "/api/rate/nope/skip", b"{}", status=404),
    # query parameters
    HttpCase("next: no campaign", "GET", "/api/rate/next", status=400, message="'campaign'"),
    HttpCase("next: empty campaign", "GET", "/api/rate/next?campaign=", status=400, message="'campaign'"),
    HttpCase("next: unknown campaign", "GET", "/api/rate/next?campaign=unknown", status=404, message="No such"),
    HttpCase("next: very long campaign", "GET", "/api/rate/next?campaign=" + "a" * 10_000, status=404),
    HttpCase("next: unicode campaign", "GET", "/api/rate/next?campaign=%E2%98%83%F0%9F%92%A9", status=404),
    HttpCase("next: SQL-ish campaign", "GET", "/api/rate/next?campaign=%27%20OR%201%3D1--", status=404),
    HttpCase("next: NUL in campaign", "GET", "/api/rate/next?campaign=ab%00cd", message="NUL"),
    HttpCase("vote: NUL in token", "POST", "/api/rate/ab%00cd/vote", b'{"choice": "A"}', message="NUL"),
    HttpCase("join: NUL in token", "GET", "/join/ab%00cd", message="NUL"),
    HttpCase("join: NUL in participant id", "GET", "/join/{invite}?participant=a%00b", message="NUL"),
    HttpCase(
        "join: NUL in posted participant id",
        "POST",
        "/join/{invite}",
        b"participant=a%00b",
        "application/x-www-form-urlencoded",
        message="NUL",
    ),
    HttpCase("next: repeated campaign", "GET", "/api/rate/next?campaign=x&campaign=y", status=404),
    HttpCase("next: invalid percent-encoding", "GET", "/api/rate/next?campaign=%ZZ%C3", status=404),
    HttpCase("rate: unknown slug", "GET", "/rate/unknown/", status=404),
    HttpCase("rate: very long slug", "GET", "/rate/" + "a" * 5000 + "/", status=404),
    HttpCase("join: unknown token", "GET", "/join/unknown", status=404),
    HttpCase("join: very long token", "GET", "/join/" + "t" * 5000, status=404),
    HttpCase("join: unicode token", "GET", "/join/%E2%98%83", status=404),
    HttpCase("results: export as a rater", "GET", "/campaigns/{slug}/export/votes", status=403, message="analysts"),
    # the no-JavaScript vote form
    HttpCase(
        "vote form: oversized form body",
        "POST",
        "/rate/{slug}/vote",
        b"choice=left&rationale=" + b"x" * (3 * 1024 * 1024),
        "application/x-www-form-urlencoded",
        status=413,  # REQUEST_MAX_BODY_BYTES, refused before the body is read
        message="at most",
    ),
]


@pytest.mark.parametrize("case", HTTP_CASES, ids=[c.id for c in HTTP_CASES])
def test_http_bad_input(case: HttpCase, rater_client, settings):
    campaign = build_campaign(slug="sweep")
    client: RaterClient = rater_client(campaign)
    token = client.next(campaign.slug).json()["assignment"]
    path = case.path.format(slug=campaign.slug, token=token, invite=campaign.invite_token)
    before = snapshot()
    if case.method == "GET":
        response = client.get(path)
    else:
        response = client.post(
            path, data=case.body, content_type=case.content_type, headers={"X-CSRFToken": client.csrf()}
        )
    CASES_RUN.append(case.id)
    assert response.status_code == case.status, response.content[:300]
    text = response.content.decode("utf-8", "replace")
    if case.message:
        assert case.message in text, text[:300]
    assert "Traceback" not in text
    assert snapshot() == before
    # The rater's pair is still there to vote on, untouched.
    assert client.vote(token, "A").status_code == 201


ANALYST_CASES = [
    ("/campaigns/{slug}/export/passwords", 404),
    ("/campaigns/{slug}/export/" + "v" * 3000, 404),
    ("/campaigns/unknown/results/", 404),
    ("/campaigns/{slug}/results/?exclude_flagged=%3Cscript%3E", 200),
    ("/campaigns/{slug}/results/?exclude_flagged=" + "1" * 5000, 200),
]


@pytest.mark.parametrize(("path", "status"), ANALYST_CASES)
def test_analyst_query_bad_input(path, status):
    from comparisons import services

    campaign = build_campaign(slug="sweep-results")
    analyst = get_user_model().objects.create_user("ann", password="pw-123456789")
    services.user_make_analyst(user=analyst)
    client = Client()
    client.force_login(analyst)
    before = snapshot()
    response = client.get(path.format(slug=campaign.slug))
    CASES_RUN.append(f"analyst: {path[:60]}")
    assert response.status_code == status
    assert "<script>" not in response.content.decode("utf-8", "replace")
    assert snapshot() == before


def test_participant_id_is_stored_as_text_and_bounded():
    campaign = build_campaign(slug="pid")
    client = RaterClient()
    hostile = "<script>alert(1)</script>" + "x" * 500
    client.get(f"/join/{campaign.invite_token}")
    response = client.post(
        f"/join/{campaign.invite_token}?participant={hostile}", {"csrfmiddlewaretoken": client.csrf()}
    )
    CASES_RUN.append("join: hostile, oversized participant id")
    assert response.status_code == 302
    rater = Rater.objects.get()
    assert len(rater.participant_id) <= 200
    page = client.get(f"/join/{campaign.invite_token}?participant={hostile}").content.decode()
    assert "<script>alert(1)</script>" not in page


# ---------------------------------------------------------------- hostile texts render inert


HOSTILE = [
    "<script>alert('xss')</script>",
    '<img src=x onerror="alert(1)">',
    "<svg onload=alert(1)>",
    '<a href="javascript:alert(1)">click</a>',
    "[click](javascript:alert(1))",
    '<iframe src="https://evil.example"></iframe>',
    "<style>body{display:none}</style>",
    '"><script>alert(2)</script>',
    "</textarea><script>alert(3)</script>",
    "![x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
]
LIVE = [
    re.compile(r"<script\b(?![^>]*\bsrc=\"/static/)", re.I),
    re.compile(r"<[^>]+\son\w+\s*=", re.I),
    re.compile(r"""<[^>]*\bhref\s*=\s*["']?\s*javascript:""", re.I),
    re.compile(r"<iframe\b", re.I),
    re.compile(r"<svg\b", re.I),
    re.compile(r"<style\b", re.I),
    re.compile(r"""<[^>]*\bsrc\s*=\s*["']?\s*data:text/html""", re.I),
]


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_texts_render_inert_on_the_rater_page(payload, rater_client):
    campaign = build_campaign(slug="xss", n_prompts=1, k=1, instructions=payload)
    Prompt.objects.update(instruction=f"Instruction {payload}", input=f"Input {payload}")
    Response.objects.update(text=f"Answer {payload}")
    client = rater_client(campaign)
    page = client.get(f"/rate/{campaign.slug}/").content.decode()
    api = client.get(f"/api/rate/next?campaign={campaign.slug}&html=1")
    CASES_RUN.append(f"hostile text: {payload}")
    # The JSON keeps the text exactly as stored (the contract) and is served as JSON, never as HTML.
    assert api["Content-Type"].startswith("application/json")
    assert api.json()["responses"]["A"] == f"Answer {payload}"
    rendered = " ".join(api.json()["html"].values())
    for where, html in (("page", page), ("api html", rendered)):
        for pattern in LIVE:
            assert not pattern.search(html), f"{where}: {pattern.pattern} live in {html[:2000]}"


# ---------------------------------------------------------------- management commands


def _write(tmp_path: Path, name: str, content: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


GOOD_TASK = {
    "id": "user_oriented_task_0",
    "motivation_app": "Gmail",
    "instruction": "Say hi.",
    "instances": [{"input": "", "output": "hi"}],
}


def command_cases(tmp_path: Path) -> list[tuple[str, list[str]]]:
    jsonl = json.dumps(GOOD_TASK).encode() + b"\n"
    return [
        ("import_evalset: missing file", ["import_evalset", str(tmp_path / "nope.jsonl"), "--name", "x"]),
        ("import_evalset: empty file", ["import_evalset", _write(tmp_path, "e.jsonl", b""), "--name", "x"]),
        ("import_evalset: not JSON", ["import_evalset", _write(tmp_path, "n.jsonl", b"hello\n"), "--name", "x"]),
        (
            "import_evalset: latin-1 file",
            ["import_evalset", _write(tmp_path, "l.jsonl", b'{"id": "caf\xe9"}\n'), "--name", "x"],
        ),
        (
            "import_evalset: one bad line among good",
            ["import_evalset", _write(tmp_path, "m.jsonl", jsonl + b"{broken\n"), "--name", "x"],
        ),
        (
            "import_evalset: missing instruction",
            ["import_evalset", _write(tmp_path, "i.jsonl", b'{"id": "t1", "instances": []}\n'), "--name", "x"],
        ),
        ("import_evalset: a directory", ["import_evalset", str(tmp_path), "--name", "x"]),
        ("import_evalset: empty name", ["import_evalset", _write(tmp_path, "g.jsonl", jsonl), "--name", ""]),
        (
            "import_outputs: unknown eval set",
            ["import_outputs", _write(tmp_path, "o.json", b"[]"), "--model", "m", "--evalset", "nope"],
        ),
        (
            "import_outputs: not JSON",
            ["import_outputs", _write(tmp_path, "o2.json", b"<html>"), "--model", "m", "--evalset", "base"],
        ),
        (
            "import_outputs: wrong shape",
            ["import_outputs", _write(tmp_path, "o3.json", b'{"a": 1}'), "--model", "m", "--evalset", "base"],
        ),
        (
            "import_outputs: lone surrogate",
            [
                "import_outputs",
                _write(tmp_path, "o5.json", b'[{"instruction": "Say hi.", "output": "hi \\ud800"}]'),
                "--model",
                "m",
                "--evalset",
                "base",
            ],  # fmt: skip
        ),
        (
            "import_outputs: binary file",
            ["import_outputs", _write(tmp_path, "o4.json", b"\x00\xff\xfe" * 100), "--model", "m", "--evalset", "base"],
        ),
        ("add_model: missing checkpoint", ["add_model", "m2", "--checkpoint", str(tmp_path / "nope.zip")]),
        (
            "add_model: not an archive",
            ["add_model", "m3", "--checkpoint", _write(tmp_path, "model.zip", b"this is not a zip")],
        ),
        (
            "add_model: pickle weights",
            ["add_model", "m4", "--checkpoint", _write(tmp_path, "pytorch_model.bin", b"\x80\x04K\x01.")],
        ),
        ("analyze: missing file", ["analyze", str(tmp_path / "nope.csv")]),
        ("analyze: empty file", ["analyze", _write(tmp_path, "a.csv", b"")]),
        ("analyze: header only", ["analyze", _write(tmp_path, "b.csv", b"prompt_id,model_a,model_b,winner\n")]),
        ("analyze: missing columns", ["analyze", _write(tmp_path, "c.csv", b"x,y\n1,2\n")]),
        (
            "analyze: unknown winner",
            ["analyze", _write(tmp_path, "d.csv", b"prompt_id,model_a,model_b,winner\np1,m1,m2,m3\n")],
        ),
        (
            "analyze: same model twice",
            ["analyze", _write(tmp_path, "s.csv", b"prompt_id,model_a,model_b,winner\np1,m1,m1,m1\n")],
        ),
        (
            "analyze: negative seconds",
            ["analyze", _write(tmp_path, "n.csv", b"prompt_id,model_a,model_b,winner,seconds\np1,a,b,a,-4\n")],
        ),
        ("analyze: binary file", ["analyze", _write(tmp_path, "bin.csv", b"\x00\xff\xfe\x00" * 64)]),
        (
            "analyze: UTF-16 file",
            ["analyze", _write(tmp_path, "u16.csv", "prompt_id,model_a,model_b,winner\np1,a,b,a\n".encode("utf-16"))],
        ),
        ("analyze: bad --bootstrap", ["analyze", _write(tmp_path, "ok.csv", b"p,a\n"), "--bootstrap", "-5"]),
        ("export_votes: unknown campaign", ["export_votes", "nope", str(tmp_path / "v.csv")]),
        ("create_campaign: unknown eval set", ["create_campaign", "c1", "--evalset", "nope", "--models", "a", "b"]),
        ("create_campaign: one model", ["create_campaign", "c2", "--evalset", "base", "--models", "alpha-m"]),
        (
            "create_campaign: bad slug",
            ["create_campaign", "<b>bad slug</b>", "--evalset", "base", "--models", "a", "b"],
        ),
        ("invite: unknown campaign", ["invite", "nope"]),
    ]


def test_commands_refuse_bad_input_cleanly(tmp_path, capsys):
    EvalSet.objects.create(name="base")
    before = snapshot()
    failures = []
    for case_id, args in command_cases(tmp_path):
        CASES_RUN.append(case_id)
        try:
            call_command(*args)
        except CommandError as exc:
            message = str(exc)
            if len(message) < 15 or "Traceback" in message:
                failures.append(f"{case_id}: unhelpful message {message!r}")
        except SystemExit as exc:  # argparse refusing an argument: exit status 2 with a usage line
            if exc.code in (0, None):
                failures.append(f"{case_id}: exited 0")
        except Exception as exc:  # noqa: BLE001 - any other exception is a traceback for the user
            failures.append(f"{case_id}: {type(exc).__name__}: {exc}")
        else:
            failures.append(f"{case_id}: accepted")
        if snapshot() != before:
            failures.append(f"{case_id}: changed the database")
            before = snapshot()
    assert not failures, "\n".join(failures)
    assert not list(tmp_path.glob("v.csv")), "a refused export must not leave a file behind"


def test_admin_upload_of_a_non_archive_is_refused():
    admin = get_user_model().objects.create_superuser("root", "r@example.org", "pw-123456789")
    client = Client()
    client.force_login(admin)
    from django.core.files.uploadedfile import SimpleUploadedFile

    before = snapshot()
    upload = SimpleUploadedFile("weights.pkl", b"\x80\x04K\x01.", content_type="application/octet-stream")
    response = client.post("/admin/generation/modelentry/add/", {"name": "pickled", "checkpoint_file": upload})
    CASES_RUN.append("admin upload: pickle file")
    assert response.status_code == 200  # the form again, with its error
    assert "errornote" in response.content.decode() or "errorlist" in response.content.decode()
    assert snapshot() == before
