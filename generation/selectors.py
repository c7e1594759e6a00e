"""Reads about generation: run progress (done/total, tokens per second, ETA) and run lookups."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q, Sum
from django.utils import timezone

from generation.models import GenerationChunk, GenerationRun, PlaygroundAnswer, Response


@dataclass(frozen=True)
class RunProgress:
    status: str
    done: int
    total: int
    tokens_per_second: float | None
    eta_seconds: float | None
    chunks_running: int
    chunks_done: int
    chunks_total: int
    error: str

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 0.0

    @property
    def finished(self) -> bool:
        return self.status in {
            GenerationRun.Status.SUCCEEDED,
            GenerationRun.Status.FAILED,
            GenerationRun.Status.CANCELLED,
        }

    @property
    def picked_up(self) -> bool:
        """Whether any worker has started on the run."""
        return self.chunks_running > 0 or self.chunks_done > 0 or self.done > 0


def run_responses(*, run: GenerationRun):
    """Responses of the run's model to the prompts the run covers."""
    responses = Response.objects.filter(model_id=run.model_id, prompt__eval_set_id=run.eval_set_id)
    if run.prompt_limit:
        last = run.chunks.order_by("-last_position").values_list("last_position", flat=True).first()
        if last is not None:
            responses = responses.filter(prompt__position__lte=last)
    return responses


def run_progress(*, run: GenerationRun) -> RunProgress:
    """Done/total, and since the run (re)started: tokens per second and the time left at that pace."""
    run.refresh_from_db()
    responses = run_responses(run=run)
    done = responses.count()
    chunk_counts = run.chunks.aggregate(
        total=Count("id"),
        running=Count("id", filter=Q(status=GenerationChunk.Status.RUNNING)),
        done=Count("id", filter=Q(status=GenerationChunk.Status.DONE)),
    )
    tokens_per_second = eta = None
    if run.started_at:
        end = run.finished_at or timezone.now()
        elapsed = max((end - run.started_at).total_seconds(), 1e-6)
        recent = responses.filter(created_at__gte=run.started_at).aggregate(
            n=Count("id"), tokens=Sum("completion_tokens")
        )
        if recent["n"]:
            tokens_per_second = (recent["tokens"] or 0) / elapsed
            if not run.is_finished:
                eta = (run.total_prompts - done) * elapsed / recent["n"]
    return RunProgress(
        status=run.status,
        done=done,
        total=run.total_prompts,
        tokens_per_second=tokens_per_second,
        eta_seconds=eta,
        chunks_running=chunk_counts["running"],
        chunks_done=chunk_counts["done"],
        chunks_total=chunk_counts["total"],
        error=run.error,
    )


def run_is_stopped(*, run_id: int) -> bool:
    """True when the run was cancelled or failed (or deleted): workers stop between batches."""
    status = GenerationRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
    return status is None or status in (GenerationRun.Status.CANCELLED, GenerationRun.Status.FAILED)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def run_picked_up_since(*, run: GenerationRun, since) -> bool:
    """Whether a worker has claimed or beaten for one of the run's chunks since ``since``."""
    return run.chunks.filter(heartbeat_at__gte=since).exists()


def playground_answer_view(answer: PlaygroundAnswer) -> dict[str, object]:
    """What the playground page shows of one answer (JSON-ready)."""
    return {
        "token": answer.token,
        "model": answer.model.name,
        "status": answer.status,
        "finished": answer.status in (PlaygroundAnswer.Status.DONE, PlaygroundAnswer.Status.FAILED),
        "prompt_text": answer.prompt_text,
        "text": answer.text,
        "finish_reason": answer.finish_reason,
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "seconds": round(answer.seconds, 2) if answer.seconds is not None else None,
        "settings": answer.generator_config,
        "error": answer.error,
    }


def playground_answers(*, tokens: list[str]) -> list[PlaygroundAnswer]:
    """The answers with these tokens, in the order given (unknown tokens are left out)."""
    found = {a.token: a for a in PlaygroundAnswer.objects.select_related("model").filter(token__in=tokens[:2])}
    return [found[t] for t in tokens[:2] if t in found]
