"""The add_model and generate commands, as an admin types them."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from generation import tasks
from generation.models import GenerationRun, ModelEntry, Response

ROOT = Path(settings.BASE_DIR)


def run(*args: object) -> str:
    out = StringIO()
    call_command(*[str(a) for a in args], stdout=out)
    return out.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize(("architecture", "suffix"), [("llama", ".tar.gz"), ("gpt2", ".zip"), ("gpt_neox", ".tar")])
def test_add_model_validates_an_archive_and_keeps_its_settings(media_root, tiny_archive, architecture, suffix):
    output = run(
        "add_model", "alpaca-repro", "--checkpoint", tiny_archive(architecture, suffix), "--template", "chat",
        "--max-new-tokens", 12, "--temperature", 0.7, "--top-p", 0.9, "--seed", 3,
    )  # fmt: skip
    assert "is ready" in output
    model = ModelEntry.objects.get(name="alpaca-repro")
    assert model.status == ModelEntry.Status.READY
    assert (model.template, model.max_new_tokens, model.temperature, model.top_p, model.seed) == (
        "chat",
        12,
        0.7,
        0.9,
        3,
    )
    assert model.architecture in output


@pytest.mark.django_db
def test_add_model_refuses_pickle_weights_and_adds_nothing(media_root, tmp_path, tiny_checkpoint):
    model_dir = tmp_path / "pickled"
    shutil.copytree(tiny_checkpoint("gpt2"), model_dir)
    (model_dir / "model.safetensors").unlink()
    (model_dir / "pytorch_model.bin").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(CommandError, match=r"refused .* pickle files \(pytorch_model\.bin\).*safe_serialization=True"):
        run("add_model", "pickled", "--checkpoint", model_dir)
    assert not ModelEntry.objects.exists()
    assert [p for p in media_root.rglob("*") if p.is_file()] == []


@pytest.mark.django_db
def test_add_model_refuses_bad_settings(media_root, tiny_checkpoint):
    with pytest.raises(CommandError, match=r"--top-p: must be a finite number greater than 0 and at most 1"):
        run("add_model", "x", "--checkpoint", tiny_checkpoint("gpt2"), "--top-p", 1.5)
    with pytest.raises(CommandError, match="--max-new-tokens: must be a whole number from 1 to"):
        run("add_model", "x", "--checkpoint", tiny_checkpoint("gpt2"), "--max-new-tokens", 0)
    assert not ModelEntry.objects.exists()


@pytest.mark.django_db
def test_an_existing_ready_model_name_is_refused(media_root, tiny_checkpoint):
    run("add_model", "same", "--checkpoint", tiny_checkpoint("gpt2"))
    with pytest.raises(CommandError, match="A model named 'same' already exists"):
        run("add_model", "same", "--checkpoint", tiny_checkpoint("llama"))


def test_add_model_exits_non_zero_without_traceback(tmp_path):
    env = {**os.environ, "BLINDEVAL_VAR_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "add_model", "m", "--checkpoint", str(tmp_path / "missing.zip")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert "missing.zip does not exist on this server" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.django_db
def test_generate_refuses_unknown_names(eval_set):
    with pytest.raises(CommandError, match="no model named 'nobody'"):
        run("generate", "nobody", "--evalset", "self-instruct")
    with pytest.raises(CommandError, match="no eval set named 'nothing'"):
        ModelEntry.objects.create(name="m", kind="checkpoint", status="ready")
        run("generate", "m", "--evalset", "nothing")


@pytest.mark.django_db
def test_generate_without_wait_queues_and_export_outputs_writes_generated_responses(ready_model, eval_set, tmp_path):
    model = ready_model("gpt2", name="tiny-gpt2", max_new_tokens=3)
    output = run("generate", "tiny-gpt2", "--evalset", "self-instruct", "--limit", 5)
    assert "0/5 done" in output and "Queued" in output
    run_ = GenerationRun.objects.get(model=model)
    for chunk_id in run_.chunks.values_list("pk", flat=True):
        tasks.run_chunk(chunk_id)
    assert "5/5 done" in run("generate", "tiny-gpt2", "--evalset", "self-instruct")
    out = tmp_path / "outputs.json"
    run("export_outputs", "tiny-gpt2", "--evalset", "self-instruct", out)
    exported = json.loads(out.read_text())
    texts = {r.prompt.composed_instruction: r.text for r in Response.objects.filter(model=model)}
    generated = [e for e in exported if e["instruction"] in texts]
    assert len(generated) == 5
    assert all(e["output"] == texts[e["instruction"]] and e["generator"] == "tiny-gpt2" for e in generated)


@pytest.mark.django_db
def test_generate_wait_says_when_no_worker_picks_up_the_work(ready_model, eval_set):
    ready_model("gpt2", name="lonely", max_new_tokens=2)
    with pytest.raises(CommandError, match=r"No worker has picked up the work after 1\.5 seconds.*celery -A evalsite"):
        run("generate", "lonely", "--evalset", "self-instruct", "--limit", 2, "--wait", "--worker-timeout", 1.5)
    run_ = GenerationRun.objects.get(model__name="lonely")
    assert run_.status == GenerationRun.Status.QUEUED


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
@pytest.mark.integration
def test_generate_wait_shows_progress_until_a_real_worker_is_done(celery_worker, ready_model, eval_set):
    ready_model("gpt_neox", name="neox", max_new_tokens=8)
    celery_worker()
    output = run("generate", "neox", "--evalset", "self-instruct", "--limit", 9, "--chunk-size", 3, "--wait")
    assert "[" + "#" * 30 + "] 9/9 (100%)" in output
    assert "tok/s" in output
    assert "Done: 9/9 responses." in output
    assert Response.objects.filter(model__name="neox").count() == 9


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
@pytest.mark.integration
def test_generate_wait_exits_non_zero_when_the_run_fails(celery_worker, ready_model, eval_set, tmp_path):
    model = ready_model("gpt2", name="broken", max_new_tokens=2)
    ModelEntry.objects.filter(pk=model.pk).update(checkpoint_dir=str(tmp_path / "gone"))
    celery_worker()
    with pytest.raises(CommandError, match=r"The run failed: Chunk 0 .*gone"):
        run("generate", "broken", "--evalset", "self-instruct", "--limit", 2, "--wait")
    assert GenerationRun.objects.get(model=model).status == GenerationRun.Status.FAILED
