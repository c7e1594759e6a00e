"""Every response carries what the self-identification detector found: at import, at generation, and after a rescan."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from generation import services
from generation.generator import GenerationResult
from generation.models import EvalSet, GenerationChunk, GenerationRun, ModelEntry, Response
from tests.factories import ModelEntryFactory, PromptFactory, ResponseFactory

pytestmark = pytest.mark.django_db

FIXTURES = Path(settings.BASE_DIR) / "fixtures"
EVAL_SET = "self-instruct"


def run(*args: object, **options: object) -> str:
    out = StringIO()
    call_command(*[str(a) for a in args], stdout=out, **options)
    return out.getvalue()


@pytest.fixture
def eval_set() -> EvalSet:
    run("import_evalset", FIXTURES / "self_instruct" / "user_oriented_instructions.jsonl", name=EVAL_SET)
    return EvalSet.objects.get(name=EVAL_SET)


def flagged(model: str) -> dict[str, list[str]]:
    return {
        r.prompt.external_id: [m["phrase"] for m in r.identity_matches]
        for r in Response.objects.filter(model__name=model).select_related("prompt")
        if r.identity_matches
    }


def test_importing_the_real_outputs_flags_none_of_them(eval_set):
    run("import_outputs", FIXTURES / "alpaca_eval" / "alpaca-7b.json", model="alpaca-7b", evalset=EVAL_SET)
    message = run(
        "import_outputs",
        FIXTURES / "self_instruct" / "predictions" / "text-davinci-003.jsonl",
        model="text-davinci-003",
        evalset=EVAL_SET,
    )
    assert Response.objects.count() == 504
    assert flagged("alpaca-7b") == {} and flagged("text-davinci-003") == {}
    assert "name their model" not in message


def test_an_import_stores_the_matches_of_each_output_and_says_how_many_self_identify(eval_set, tmp_path):
    entries = [
        e
        for e in json.loads((FIXTURES / "alpaca_eval" / "alpaca-7b.json").read_text())
        if e["dataset"] == "selfinstruct"
    ]
    entries[0]["output"] = "As an AI language model, I cannot send emails. " + entries[0]["output"]
    entries[5]["output"] = "I'm ChatGPT. Here is your poem."
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(entries), encoding="utf-8")

    message = run("import_outputs", path, model="leaky", evalset=EVAL_SET)

    assert flagged("leaky") == {
        "user_oriented_task_0": ["As an AI language model"],
        "user_oriented_task_5": ["I'm ChatGPT"],
    }
    assert "2 of the new outputs name their model, their maker or themselves as an AI" in message
    stored = Response.objects.get(model__name="leaky", prompt__external_id="user_oriented_task_5").identity_matches
    assert stored == [{"phrase": "I'm ChatGPT", "kind": "model_name", "start": 0, "end": 11}]


def test_a_generated_response_is_scanned_when_the_worker_stores_it():
    model = ModelEntryFactory(name="tiny-llama-3m")
    first, second = PromptFactory(), PromptFactory()
    run_ = GenerationRun.objects.create(model=model, eval_set=first.eval_set, total_prompts=2)
    chunk = GenerationChunk.objects.create(run=run_, index=0, first_position=0, last_position=1)
    results = [
        GenerationResult(key=first.pk, text="I was trained by OpenAI.", prompt_tokens=3, completion_tokens=5,
                         seconds=0.1, finish_reason="stop"),
        GenerationResult(key=second.pk, text="tiny-llama-3m at your service", prompt_tokens=3, completion_tokens=5,
                         seconds=0.1, finish_reason="stop"),
    ]  # fmt: skip

    assert services.chunk_store_responses(chunk_id=chunk.pk, run_id=run_.pk, model_id=model.pk, results=results) == 2

    by_prompt = {r.prompt_id: r.identity_matches for r in Response.objects.filter(model=model)}
    assert [m["kind"] for m in by_prompt[first.pk]] == ["vendor"]
    assert [m["phrase"] for m in by_prompt[second.pk]] == ["tiny-llama-3m"]


def test_a_rescan_finds_the_name_of_a_model_added_later_and_reports_per_model():
    older = ResponseFactory(text="Compared with Zebra 7B, this answer is short.")
    clean = ResponseFactory(model=older.model, text="A short answer.")
    assert older.identity_matches == []

    ModelEntryFactory(name="zebra-7b")
    output = run("scan_identity", model=older.model.name)

    older.refresh_from_db()
    clean.refresh_from_db()
    assert [m["phrase"] for m in older.identity_matches] == ["Zebra 7B"]
    assert clean.identity_matches == []
    assert "Scanned 2 responses" in output and "1 self-identify; 1 changed" in output
    assert f"{older.model.name}: 1 of 2 self-identify" in output
    # Nothing new: a second scan changes nothing.
    assert "0 changed" in run("scan_identity")


@pytest.mark.parametrize(
    ("options", "message"),
    [({"model": "no-such-model"}, "no model named 'no-such-model'"), ({"evalset": "nope"}, "no eval set named 'nope'")],
)
def test_scan_identity_refuses_unknown_names_and_changes_nothing(options, message):
    response = ResponseFactory(text="I am an AI.")
    ModelEntry.objects.filter(pk=response.model_id).update(name="renamed")
    with pytest.raises(CommandError, match=message):
        run("scan_identity", **options)
    response.refresh_from_db()
    assert response.identity_matches == []


def test_editing_a_response_in_the_admin_scans_its_new_text(admin_client):
    response = ResponseFactory(text="A short answer.")
    form = {
        "prompt": response.prompt_id, "model": response.model_id, "run": "", "text": "Hello! I am Bard.",
        "prompt_tokens": "", "completion_tokens": "", "seconds": "", "finish_reason": "stop",
    }  # fmt: skip
    reply = admin_client.post(f"/admin/generation/response/{response.pk}/change/", form)
    assert reply.status_code == 302, reply.content.decode()[:3000]
    response.refresh_from_db()
    assert response.text == "Hello! I am Bard."
    assert [m["phrase"] for m in response.identity_matches] == ["I am Bard"]


def test_the_admin_corrects_only_a_response_text_and_adds_none(admin_client):
    response = ResponseFactory(text="A short answer.", finish_reason="stop")
    other = ModelEntryFactory(name="other-model")
    form = {"prompt": response.prompt_id + 1, "model": other.pk, "text": "A shorter answer.", "finish_reason": "length"}
    reply = admin_client.post(f"/admin/generation/response/{response.pk}/change/", form)
    assert reply.status_code == 302, reply.content.decode()[:3000]
    response.refresh_from_db()
    assert response.text == "A shorter answer."
    # One model's answer to one prompt, made as recorded: those fields are shown, not editable.
    assert (response.model_id, response.finish_reason) != (other.pk, "length")
    assert admin_client.get("/admin/generation/response/add/").status_code == 403
    # An empty text is refused under the field; nothing changes.
    refused = admin_client.post(f"/admin/generation/response/{response.pk}/change/", {"text": "  "})
    assert refused.status_code == 200 and "This field is required." in refused.content.decode()
    response.refresh_from_db()
    assert response.text == "A shorter answer."


def test_renaming_a_model_in_the_admin_scans_every_response_for_the_new_name(admin_client):
    older = ResponseFactory(text="Compared with Zebra 7B, this answer is short.")
    renamed = ModelEntryFactory(name="placeholder-model")
    assert older.identity_matches == []
    settings = {"template": "alpaca", "max_new_tokens": 64, "temperature": 0, "top_p": 1, "seed": 0, "dtype": "auto"}
    url = f"/admin/generation/modelentry/{renamed.pk}/change/"

    refused = admin_client.post(url, {"name": "zebra-7b", "description": "", **settings, "max_new_tokens": 0})
    assert refused.status_code == 200 and "--max-new-tokens must be at least 1" in refused.content.decode()
    taken = admin_client.post(url, {"name": older.model.name, "description": "", **settings})
    assert taken.status_code == 200 and "already exists" in taken.content.decode()
    renamed.refresh_from_db()
    assert renamed.name == "placeholder-model"

    reply = admin_client.post(url, {"name": "zebra-7b", "description": "renamed", **settings})
    assert reply.status_code == 302, reply.content.decode()[:3000]
    renamed.refresh_from_db()
    assert (renamed.name, renamed.max_new_tokens, renamed.description) == ("zebra-7b", 64, "renamed")
    older.refresh_from_db()
    assert [m["phrase"] for m in older.identity_matches] == ["Zebra 7B"]
