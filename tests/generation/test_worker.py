"""Generation through a real Celery worker process, killed with SIGKILL in the middle of a run.

Runs on the embedded defaults (SQLite file + kombu filesystem broker) and, in
CI, on PostgreSQL + Redis: the worker fixture hands the worker whatever the
test process uses.
"""

from __future__ import annotations

import pytest
from django.db.models import Count, Max

from generation import services
from generation.models import GenerationChunk, GenerationRun, Response
from tests.worker import wait_for, wait_while_progressing

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.integration]

WORKER_ENV = {"GENERATION_HEARTBEAT_SECONDS": "1", "GENERATION_STALE_SECONDS": "4"}


def responses_of(model) -> int:
    return Response.objects.filter(model=model).count()


def run_status(run) -> str:
    run.refresh_from_db()
    return run.status


def test_a_worker_generates_a_slice_of_the_eval_set(celery_worker, ready_model, eval_set, settings):
    model = ready_model("gpt_neox", max_new_tokens=4)
    celery_worker(env=WORKER_ENV)
    run = services.run_start(model=model, eval_set=eval_set, prompt_limit=12, chunk_size=5, batch_size=4)
    wait_for(lambda: run_status(run) == GenerationRun.Status.SUCCEEDED, timeout=120, message="the run to succeed")
    assert responses_of(model) == 12
    assert set(Response.objects.filter(model=model).values_list("prompt__position", flat=True)) == set(range(12))
    assert set(run.chunks.values_list("status", flat=True)) == {GenerationChunk.Status.DONE}


def run_progress(run) -> tuple:
    """What moves while a run advances: responses stored, chunk states and attempts, the latest heartbeat."""
    chunks = GenerationChunk.objects.filter(run=run)
    return (
        Response.objects.filter(model=run.model).count(),
        sorted(chunks.values_list("status", "attempts")),
        chunks.aggregate(latest=Max("heartbeat_at"))["latest"],
    )


# The waits below end when the work stops moving, not at a fixed time: on a loaded 2-core machine the drill
# is slower, not broken. The overall bound (and the test's timeout above it) is only a backstop.
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_sigkill_mid_run_then_a_new_worker_completes_it_exactly_once(
    celery_worker, ready_model, eval_set, settings, pool
):
    settings.GENERATION_STALE_SECONDS = 4
    model = ready_model("llama", max_new_tokens=48)
    total = 20
    chunk_size = 5
    first = celery_worker(env=WORKER_ENV, pool=pool)
    run = services.run_start(model=model, eval_set=eval_set, prompt_limit=total, chunk_size=chunk_size, batch_size=2)

    def chunk_half_done() -> bool:
        # Kill only while a chunk is in flight with part of its batches stored: between two chunks (one done,
        # the next not yet taken) a kill would interrupt nothing, and the drill would test nothing.
        stored = responses_of(model)
        running = GenerationChunk.objects.filter(run=run, status=GenerationChunk.Status.RUNNING).exists()
        return running and stored % chunk_size != 0

    wait_while_progressing(
        chunk_half_done,
        progress=lambda: run_progress(run),
        stall=240,  # the worker's start and model load move nothing in the database
        limit=900,
        interval=0.05,
        message="a chunk in flight with some responses stored",
    )
    first.kill()  # SIGKILL: no warm shutdown, the chunk in flight is abandoned
    kept = set(Response.objects.filter(model=model).values_list("pk", flat=True))
    done_at_kill = len(kept)
    assert 0 < done_at_kill < total, "the run must be interrupted in the middle"
    assert run_status(run) == GenerationRun.Status.RUNNING
    assert GenerationChunk.objects.filter(run=run, status=GenerationChunk.Status.RUNNING).exists()

    second = celery_worker(env=WORKER_ENV, pool=pool)
    # What `generate` does again (and `generate --wait` periodically): re-queue what is lost.
    requeued = wait_for(lambda: services.run_resume(run=run), timeout=120, message="the dead chunk to go stale")
    assert requeued
    wait_while_progressing(
        lambda: run_status(run) != GenerationRun.Status.RUNNING,
        progress=lambda: run_progress(run),
        stall=240,
        limit=900,
        message="the run to end",
    )
    assert run.status == GenerationRun.Status.SUCCEEDED, second.log()[-3000:]

    assert responses_of(model) == total
    per_prompt = Response.objects.filter(model=model).values("prompt").annotate(n=Count("id"))
    assert {row["n"] for row in per_prompt} == {1}
    assert set(Response.objects.filter(model=model).values_list("prompt__position", flat=True)) == set(range(total))
    assert GenerationChunk.objects.filter(run=run, attempts__gte=2).exists()  # the killed chunk was taken again
    # The responses stored before the kill were kept, not generated again.
    assert kept <= set(Response.objects.filter(model=model).values_list("pk", flat=True))


def test_an_unseen_architecture_uploaded_as_an_archive_answers_all_252_prompts(
    celery_worker, media_root, tiny_checkpoint, eval_set, tmp_path
):
    """The issue's "done when": add_model from an archive, generate through a worker, export 252 outputs."""
    import json
    from io import StringIO

    from django.core.management import call_command

    from tests.generation.tiny_models import pack_tar

    archive = pack_tar(tiny_checkpoint("qwen2"), tmp_path / "qwen2-tiny.tar.gz", folder="qwen2-tiny")
    call_command("add_model", "qwen2-tiny", "--checkpoint", str(archive), "--max-new-tokens", "4", stdout=StringIO())
    celery_worker(env=WORKER_ENV)
    out = StringIO()
    call_command("generate", "qwen2-tiny", "--evalset", "self-instruct", "--wait", stdout=out)
    assert "Done: 252/252 responses." in out.getvalue()
    exported = tmp_path / "qwen2-tiny.json"
    call_command("export_outputs", "qwen2-tiny", "--evalset", "self-instruct", str(exported), stdout=StringIO())
    outputs = json.loads(exported.read_text())
    assert len(outputs) == 252
    assert {o["generator"] for o in outputs} == {"qwen2-tiny"}
    assert Response.objects.filter(model__name="qwen2-tiny").count() == 252
