"""Generation runs through the services and the task body, in this process (the worker tests use a real worker)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.utils import timezone

from generation import services, tasks
from generation.errors import InputError
from generation.models import GenerationChunk, GenerationRun, ModelEntry, Response
from generation.selectors import run_progress

pytestmark = pytest.mark.django_db


def start(model, eval_set, **kwargs) -> GenerationRun:
    return services.run_start(model=model, eval_set=eval_set, **kwargs)


def work(run: GenerationRun) -> None:
    """What a worker does with every queued chunk (the same function the Celery task runs)."""
    for chunk_id in run.chunks.order_by("index").values_list("pk", flat=True):
        tasks.run_chunk(chunk_id)


def test_a_run_is_split_into_chunks_covering_the_prompts(ready_model, eval_set, django_capture_on_commit_callbacks):
    model = ready_model("llama", max_new_tokens=3)
    with django_capture_on_commit_callbacks() as queued:
        run = start(model, eval_set, prompt_limit=10, chunk_size=4)
    chunks = list(run.chunks.order_by("index").values_list("first_position", "last_position"))
    assert chunks == [(0, 3), (4, 7), (8, 9)]
    assert run.total_prompts == 10
    assert len(queued) == 3  # one Celery message per chunk, sent after commit


def test_chunks_generate_one_response_per_prompt_and_end_the_run(ready_model, eval_set):
    model = ready_model("gpt2", max_new_tokens=4, template="alpaca")
    run = start(model, eval_set, prompt_limit=6, chunk_size=4, batch_size=3)
    work(run)
    run.refresh_from_db()
    assert run.status == GenerationRun.Status.SUCCEEDED
    responses = Response.objects.filter(model=model)
    assert responses.count() == 6
    assert set(responses.values_list("prompt__position", flat=True)) == set(range(6))
    for response in responses:
        assert response.completion_tokens == 4
        assert response.finish_reason == Response.FinishReason.LENGTH
        assert response.prompt_tokens > 0 and response.seconds > 0
        assert response.run_id == run.pk
    progress = run_progress(run=run)
    assert (progress.done, progress.total, progress.finished) == (6, 6, True)
    assert progress.tokens_per_second > 0
    assert run.generated_tokens == 24


def test_a_redelivered_chunk_changes_nothing(ready_model, eval_set):
    model = ready_model("gpt2", max_new_tokens=2)
    run = start(model, eval_set, prompt_limit=4, chunk_size=4)
    work(run)
    texts = dict(Response.objects.values_list("prompt_id", "text"))
    work(run)  # the same messages again
    assert dict(Response.objects.values_list("prompt_id", "text")) == texts
    assert GenerationChunk.objects.get(run=run).attempts == 1


def test_the_database_refuses_a_second_response_for_a_prompt(ready_model, eval_set):
    model = ready_model("gpt2", max_new_tokens=2)
    run = start(model, eval_set, prompt_limit=1)
    work(run)
    response = Response.objects.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        Response.objects.create(prompt=response.prompt, model=model, text="again", finish_reason="stop")


def test_generate_again_only_does_what_is_missing(ready_model, eval_set, django_capture_on_commit_callbacks):
    model = ready_model("gpt2", max_new_tokens=2)
    run = start(model, eval_set, prompt_limit=6, chunk_size=3)
    work(run)
    kept = Response.objects.filter(prompt__position__lt=5)
    kept_ids = set(kept.values_list("pk", flat=True))
    Response.objects.filter(prompt__position=5).delete()
    with django_capture_on_commit_callbacks() as queued:
        again = start(model, eval_set)
    assert again.pk == run.pk
    assert len(queued) == 1  # only the chunk that misses a response
    work(run)
    assert Response.objects.filter(model=model).count() == 6
    assert kept_ids <= set(Response.objects.values_list("pk", flat=True))
    run.refresh_from_db()
    assert run.status == GenerationRun.Status.SUCCEEDED


def test_a_stale_running_chunk_is_requeued_by_resume(
    ready_model, eval_set, settings, django_capture_on_commit_callbacks
):
    settings.GENERATION_STALE_SECONDS = 30
    model = ready_model("gpt2", max_new_tokens=2)
    run = start(model, eval_set, prompt_limit=4, chunk_size=2)
    first, second = run.chunks.order_by("index")
    # A worker took both chunks; the one on `first` died long ago, the one on `second` is alive.
    GenerationChunk.objects.filter(pk=first.pk).update(
        status="running", heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    GenerationChunk.objects.filter(pk=second.pk).update(status="running", heartbeat_at=timezone.now())
    with django_capture_on_commit_callbacks() as queued:
        requeued = services.run_resume(run=run)
    assert requeued == [first.pk]
    assert len(queued) == 1
    tasks.run_chunk(second.pk)  # a duplicate message for a live chunk is ignored
    assert Response.objects.count() == 0
    tasks.run_chunk(first.pk)
    assert Response.objects.count() == 2


def test_cancel_stops_work_and_generate_resumes_it(ready_model, eval_set):
    model = ready_model("gpt2", max_new_tokens=2)
    run = start(model, eval_set, prompt_limit=6, chunk_size=3)
    services.run_cancel(run=run)
    work(run)
    assert Response.objects.count() == 0
    run.refresh_from_db()
    assert run.status == GenerationRun.Status.CANCELLED
    start(model, eval_set)
    work(run)
    run.refresh_from_db()
    assert run.status == GenerationRun.Status.SUCCEEDED
    assert Response.objects.count() == 6


def test_a_failing_chunk_fails_the_run_with_its_error(ready_model, eval_set, tmp_path):
    model = ready_model("gpt2", max_new_tokens=2)
    ModelEntry.objects.filter(pk=model.pk).update(checkpoint_dir=str(tmp_path / "vanished"))
    run = start(model, eval_set, prompt_limit=3)
    work(run)
    run.refresh_from_db()
    assert run.status == GenerationRun.Status.FAILED
    assert "Chunk 0 (prompts 0-2)" in run.error
    assert "vanished" in run.error
    assert run_progress(run=run).error == run.error


def test_a_task_for_a_deleted_run_returns_quietly(ready_model, eval_set):
    model = ready_model("gpt2", max_new_tokens=2)
    run = start(model, eval_set, prompt_limit=2)
    chunk_id = run.chunks.get().pk
    run.delete()
    tasks.run_chunk(chunk_id)
    tasks.validate_checkpoint(123456)


def test_only_ready_checkpoints_can_generate(eval_set, media_root):
    imported = ModelEntry.objects.create(name="imported", kind=ModelEntry.Kind.IMPORTED, status="ready")
    with pytest.raises(InputError, match="imported outputs, not a checkpoint"):
        start(imported, eval_set)
    pending = services.model_add(name="pending")
    with pytest.raises(InputError, match="is not ready"):
        start(pending, eval_set)


def test_responses_stop_at_eos_with_reason_stop(ready_model, eval_set):
    model = ready_model("gpt2", name="eos", always_eos=True, max_new_tokens=8)
    run = start(model, eval_set, prompt_limit=3)
    work(run)
    assert set(Response.objects.values_list("finish_reason", "completion_tokens")) == {("stop", 0)}


def test_generate_again_while_a_cancelled_chunk_is_still_running_reopens_the_run(ready_model, eval_set):
    model = ready_model("gpt2", max_new_tokens=2)
    run = start(model, eval_set, prompt_limit=2)
    GenerationChunk.objects.filter(run=run).update(status="running", heartbeat_at=timezone.now())
    services.run_cancel(run=run)
    start(model, eval_set)  # the live worker keeps its chunk; the run is no longer cancelled
    run.refresh_from_db()
    assert run.status == GenerationRun.Status.RUNNING
    assert run.started_at is not None


def test_generate_again_on_a_cancelled_run_with_everything_done_marks_it_succeeded(ready_model, eval_set):
    model = ready_model("gpt2", max_new_tokens=2)
    run = start(model, eval_set, prompt_limit=2)
    work(run)
    GenerationRun.objects.filter(pk=run.pk).update(status="cancelled")
    start(model, eval_set)
    run.refresh_from_db()
    assert run.status == GenerationRun.Status.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_a_worker_claiming_a_chunk_while_a_resume_holds_its_run_waits_instead_of_deadlocking(ready_model, eval_set):
    # `generate` resumes a run (run, then its chunks) while a worker claims one of its chunks. The claim used to
    # lock the chunk, then the run: PostgreSQL broke the deadlock by failing the claim, and the chunk's message
    # was gone with it, leaving the chunk pending with nobody to run it (seen in the SIGKILL drill).
    if connection.vendor != "postgresql":
        pytest.skip("row locks: SQLite locks the whole database")
    model = ready_model("llama", max_new_tokens=2)
    run = start(model, eval_set, prompt_limit=4, chunk_size=2)
    chunk_id = run.chunks.order_by("index").values_list("pk", flat=True).first()
    run_held = threading.Event()
    claims: list = []
    errors: list[BaseException] = []

    def claim() -> None:
        try:
            run_held.wait(10)
            claims.append(services.chunk_claim(chunk_id=chunk_id, worker="drill"))
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)
        finally:
            connections.close_all()

    worker = threading.Thread(target=claim)
    worker.start()
    with transaction.atomic():
        GenerationRun.objects.select_for_update().get(pk=run.pk)  # what run_resume locks first
        run_held.set()
        deadline = time.monotonic() + 10
        with connection.cursor() as cursor:
            while time.monotonic() < deadline:  # until the claim waits on a lock
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
                if cursor.fetchone()[0]:
                    break
                time.sleep(0.02)
        list(GenerationChunk.objects.select_for_update().filter(run=run))  # then its chunks
    worker.join(30)
    assert not errors, errors
    assert claims and claims[0] is not None and claims[0].chunk_id == chunk_id
    assert GenerationChunk.objects.get(pk=chunk_id).status == GenerationChunk.Status.RUNNING
