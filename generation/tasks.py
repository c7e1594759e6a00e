"""Celery tasks of the generation app: thin callers of generation.services.

Tasks take ids, are acknowledged late, return quietly when their row is gone
or their run is stopped, and write under unique constraints, so a redelivered
or duplicated message changes nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection

from generation import selectors, services

logger = logging.getLogger(__name__)


@shared_task(name="generation.validate_checkpoint", acks_late=True, time_limit=3 * 3600, soft_time_limit=3 * 3600 - 60)
def validate_checkpoint(model_id: int) -> None:
    services.checkpoint_validate(model_id=model_id)


class _Heartbeat(threading.Thread):
    """Beats in the database while a chunk is generating, so a live worker is never taken for dead."""

    def __init__(self, chunk_id: int) -> None:
        super().__init__(daemon=True)
        self.chunk_id = chunk_id
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(settings.GENERATION_HEARTBEAT_SECONDS):
                try:
                    services.chunk_heartbeat(chunk_id=self.chunk_id)
                except Exception:  # a missed beat is not fatal; the next one may succeed
                    logger.exception("heartbeat of chunk %s failed", self.chunk_id)
        finally:
            connection.close()


def _settings(claimed: services.ModelRunSettings, *, batch_size: int):
    """The generator's settings for a claimed chunk or playground answer."""
    from generation.generator import GenerationSettings

    return GenerationSettings(
        max_new_tokens=claimed.max_new_tokens,
        temperature=claimed.temperature,
        top_p=claimed.top_p,
        seed=claimed.seed,
        batch_size=batch_size,
    )


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@shared_task(
    name="generation.run_chunk",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=settings.GENERATION_CHUNK_TIME_LIMIT + 60,
    soft_time_limit=settings.GENERATION_CHUNK_TIME_LIMIT,
)
def run_chunk(chunk_id: int) -> None:
    claimed = services.chunk_claim(chunk_id=chunk_id, worker=_worker_name())
    if claimed is None:
        return
    from generation import generator  # torch and transformers: only in workers, only when needed

    heartbeat = _Heartbeat(chunk_id)
    heartbeat.start()
    try:
        if claimed.prompts:
            loaded = generator.cached_model(claimed.checkpoint_dir, dtype=claimed.dtype, version=claimed.weights_sha256)
            items = [generator.PromptItem(key=p.pk, instruction=p.instruction, input=p.input) for p in claimed.prompts]
            generator.generate_batched(
                loaded,
                items,
                template=claimed.template,
                settings=_settings(claimed, batch_size=claimed.batch_size),
                on_batch=lambda results: services.chunk_store_responses(
                    chunk_id=claimed.chunk_id,
                    run_id=claimed.run_id,
                    model_id=claimed.model_id,
                    results=results,
                    provenance=claimed.provenance,
                ),
                should_stop=lambda: selectors.run_is_stopped(run_id=claimed.run_id),
            )
        services.chunk_finish(chunk_id=chunk_id)
    except SoftTimeLimitExceeded:
        services.chunk_fail(
            chunk_id=chunk_id,
            error=f"Time limit of {settings.GENERATION_CHUNK_TIME_LIMIT} s exceeded; use smaller chunks.",
        )
    except Exception as exc:
        logger.exception("chunk %s failed", chunk_id)
        summary = "".join(traceback.format_exception_only(exc)).strip()
        services.chunk_fail(chunk_id=chunk_id, error=summary[:2000])
    finally:
        heartbeat.stopped.set()


@shared_task(name="generation.playground_answer", acks_late=True, time_limit=15 * 60, soft_time_limit=15 * 60 - 30)
def playground_answer(answer_id: int) -> None:
    claimed = services.playground_claim(answer_id=answer_id)
    if claimed is None:
        return
    from generation import generator

    try:
        loaded = generator.cached_model(claimed.checkpoint_dir, dtype=claimed.dtype, version=claimed.weights_sha256)
        item = generator.PromptItem(key=claimed.answer_id, instruction=claimed.instruction, input=claimed.input)
        [result] = generator.generate_batched(
            loaded,
            [item],
            template=claimed.template,
            settings=_settings(claimed, batch_size=1),
        )
        # The same ids the generator fed the model (it keeps the end of a prompt too long for the context).
        ids = generator.build_prompts(loaded, [item], claimed.template)[0][-result.prompt_tokens :]
        prompt_text = loaded.tokenizer.decode(ids, skip_special_tokens=False)
        services.playground_store(answer_id=claimed.answer_id, prompt_text=prompt_text, result=result)
    except SoftTimeLimitExceeded:
        services.playground_fail(answer_id=claimed.answer_id, error="The answer took longer than 15 minutes.")
    except Exception as exc:
        logger.exception("playground answer %s failed", answer_id)
        services.playground_fail(answer_id=claimed.answer_id, error="".join(traceback.format_exception_only(exc)))
