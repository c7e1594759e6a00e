"""Changes to checkpoints and generation runs: add and validate models, start, resume and cancel runs,
and the worker-side steps of a chunk (claim, store, heartbeat, finish, fail).

Celery tasks, admin actions and management commands call these functions and
nothing else; every multi-row write is one transaction, and every write a
redelivered task could repeat is guarded by a status check or a unique
constraint so that repeating it changes nothing.
"""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from evalsite.options import DB_INT_MAX
from generation import identity
from generation.checkpoints import CheckpointError, Limits, archive_kind, extract_archive, inspect_checkpoint
from generation.errors import InputError
from generation.gguf_intake import GGUFLimits, convert_gguf
from generation.models import (
    DType,
    EvalSet,
    GenerationChunk,
    GenerationRun,
    ModelEntry,
    PlaygroundAnswer,
    Prompt,
    PromptTemplate,
    Response,
    name_start_problem,
)

if TYPE_CHECKING:  # torch is imported by workers only, not by the web process
    from generation.generator import GenerationResult

MAX_NAME_LENGTH = 200


# ---------------------------------------------------------------- checkpoints


def checkpoint_area(*, model_id: int) -> Path:
    """The only folder where a model's upload and extraction are written."""
    return Path(settings.MEDIA_ROOT) / "checkpoints" / str(model_id)


def checkpoint_limits() -> Limits:
    return Limits(
        max_files=settings.CHECKPOINT_MAX_FILES,
        max_total_bytes=settings.CHECKPOINT_MAX_BYTES,
        max_ratio=float(settings.CHECKPOINT_MAX_RATIO),
    )


def gguf_limits() -> GGUFLimits:
    return GGUFLimits(
        max_bytes=settings.GGUF_MAX_BYTES,
        max_tensors=settings.GGUF_MAX_TENSORS,
        max_metadata_bytes=settings.GGUF_MAX_METADATA_BYTES,
    )


def _check_generation_settings(
    *, template: str, max_new_tokens: int, temperature: float, top_p: float, dtype: str
) -> None:
    if template not in PromptTemplate.values:
        raise InputError(f"Unknown template {template!r}; choose one of {', '.join(PromptTemplate.values)}.")
    if max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be at least 1 (got {max_new_tokens}).")
    if temperature < 0:
        raise InputError(f"--temperature must be 0 (greedy) or positive (got {temperature}).")
    if not 0 < top_p <= 1:
        raise InputError(f"--top-p must be in (0, 1] (got {top_p}).")
    if dtype not in DType.values:
        raise InputError(f"Unknown dtype {dtype!r}; choose one of {', '.join(DType.values)}.")


def _checked_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InputError(f"A model name must have 1 to {MAX_NAME_LENGTH} characters.")
    if problem := name_start_problem(name):
        raise InputError(f"The model name {name!r} is refused. {problem}")
    return name


@transaction.atomic
def model_add(
    *,
    name: str,
    source: str = "",
    template: str = PromptTemplate.ALPACA,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    dtype: str = DType.AUTO,
    description: str = "",
) -> ModelEntry:
    """Create a checkpoint model entry, pending validation. ``source`` is an archive or a server directory.

    An entry of the same name that never became ready (pending or invalid) is
    replaced, so fixing a refused upload and adding it again just works.
    """
    name = _checked_name(name)
    _check_generation_settings(
        template=template, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, dtype=dtype
    )
    if source:
        path = Path(source).expanduser()
        if not path.exists():
            raise InputError(f"The checkpoint {source} does not exist on this server.")
        try:
            archive_kind(path)
        except CheckpointError as exc:
            raise InputError(str(exc)) from exc
        source = str(path.resolve())
    existing = ModelEntry.objects.select_for_update().filter(name=name).first()
    if existing is not None:
        if existing.kind != ModelEntry.Kind.CHECKPOINT or existing.status in (
            ModelEntry.Status.READY,
            ModelEntry.Status.VALIDATING,
        ):
            raise InputError(
                f"A model named {name!r} already exists ({existing.get_kind_display()}, "
                f"{existing.get_status_display()}); choose another name."
            )
        shutil.rmtree(checkpoint_area(model_id=existing.pk), ignore_errors=True)
        existing.delete()
    return ModelEntry.objects.create(
        name=name,
        kind=ModelEntry.Kind.CHECKPOINT,
        status=ModelEntry.Status.PENDING,
        source=source,
        template=template,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        dtype=dtype,
        description=description,
    )


def model_settings_check(
    *, model: ModelEntry, name: str, template: str, max_new_tokens: int, temperature: float, top_p: float, dtype: str
) -> str:
    """`model_settings_update`'s checks alone (for a form to show under its fields): the name as it will be stored,
    or InputError."""
    name = _checked_name(name)
    _check_generation_settings(
        template=template, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, dtype=dtype
    )
    if ModelEntry.objects.filter(name=name).exclude(pk=model.pk).exists():
        raise InputError(f"A model named {name!r} already exists; choose another name.")
    return name


@transaction.atomic
def model_settings_update(
    *,
    model: ModelEntry,
    name: str,
    description: str,
    template: str,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    dtype: str,
) -> ModelEntry:
    """Change a model entry's name, description or generation settings (the admin's change form).

    Checked as `model_add` checks them. Responses already generated keep the settings they were made with
    (their provenance); the next run uses the new ones. A new name is checked like a new entry's, and every
    response is scanned again for self-identification: the detector looks for the models' names, so a response
    that names the new one is flagged now, and one that only named the old one no longer is.
    """
    name = model_settings_check(
        model=model, name=name, template=template, max_new_tokens=max_new_tokens, temperature=temperature,
        top_p=top_p, dtype=dtype,
    )  # fmt: skip
    renamed = ModelEntry.objects.filter(pk=model.pk).exclude(name=name).exists()
    model.name, model.description, model.template = name, description, template
    model.max_new_tokens, model.temperature, model.top_p, model.seed, model.dtype = (
        max_new_tokens, temperature, top_p, seed, dtype,
    )  # fmt: skip
    model.save(
        update_fields=["name", "description", "template", "max_new_tokens", "temperature", "top_p", "seed", "dtype"]
    )
    if renamed:
        responses_scan_identity()
    return model


@transaction.atomic
def response_text_update(*, response: Response, text: str) -> Response:
    """Correct a response's text (the admin's change form) and scan it again for self-identification, in one
    transaction. Its prompt, model, run and provenance stay what they were: a response is one model's answer
    to one prompt."""
    if not text.strip():
        raise InputError("A response's text cannot be empty.")
    response.text = text
    response.save(update_fields=["text"])
    responses_scan_identity(responses=Response.objects.filter(pk=response.pk))
    response.refresh_from_db(fields=["identity_matches"])
    return response


def _safe_filename(name: str) -> str:
    base = Path(name.replace("\\", "/")).name
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")
    return base or "checkpoint"


def model_attach_upload(*, model: ModelEntry, upload: object, original_name: str) -> ModelEntry:
    """Put an upload into the model's checkpoint area: a temporary file on disk is moved, never read into memory.

    ``upload`` is a path to a temporary file, or a Django ``UploadedFile``
    (streamed to disk by TemporaryFileUploadHandler: moved; otherwise copied chunk by chunk).
    """
    area = checkpoint_area(model_id=model.pk) / "upload"
    area.mkdir(parents=True, exist_ok=True)
    target = area / _safe_filename(original_name)
    temporary = getattr(upload, "temporary_file_path", None)
    if isinstance(upload, str | Path):
        shutil.move(str(upload), target)
    elif temporary is not None:
        shutil.move(temporary(), target)
        upload.close()  # type: ignore[attr-defined]  # Django ignores the temp file being gone
    else:
        with target.open("wb") as out:
            for block in upload.chunks():  # type: ignore[attr-defined]
                out.write(block)
    model.source = str(target)
    model.save(update_fields=["source", "updated_at"])
    return model


def _is_uploaded(model: ModelEntry) -> bool:
    return Path(model.source).is_relative_to(checkpoint_area(model_id=model.pk))


def checkpoint_validate_queue(*, model: ModelEntry) -> None:
    """Validate in a worker, once the current transaction has committed."""
    from generation.tasks import validate_checkpoint

    transaction.on_commit(partial(validate_checkpoint.delay, model.pk))


def checkpoint_validate(*, model_id: int) -> ModelEntry | None:
    """Extract (an archive) or convert (a GGUF file), then inspect a model's checkpoint; end ready or invalid.

    A GGUF file is converted once to safetensors in the model's folder; the sha256 of the file itself is
    kept beside the sha256 of the converted weights. Returns None when the entry is gone; a ready entry is
    left as it is.
    """
    with transaction.atomic():
        model = ModelEntry.objects.select_for_update().filter(pk=model_id, kind=ModelEntry.Kind.CHECKPOINT).first()
        if model is None or model.status == ModelEntry.Status.READY:
            return model
        model.status = ModelEntry.Status.VALIDATING
        model.status_reason = ""
        model.save(update_fields=["status", "status_reason", "updated_at"])
    area = checkpoint_area(model_id=model.pk)
    extracted = area / "model"
    source_sha256 = ""
    try:
        if not model.source:
            raise CheckpointError("No checkpoint was given: upload an archive or give a server-side directory.")
        source = Path(model.source)
        kind = archive_kind(source)
        if kind == "directory":
            # Big checkpoints already on a shared volume are used in place.
            info = inspect_checkpoint(source)
        else:
            shutil.rmtree(extracted, ignore_errors=True)
            area.mkdir(parents=True, exist_ok=True)
            if kind == "gguf":
                conversion = convert_gguf(source, extracted, limits=gguf_limits())
                source_sha256 = conversion.source_sha256
                model_dir = conversion.model_dir
            else:
                model_dir = extract_archive(source, extracted, limits=checkpoint_limits())
            info = inspect_checkpoint(model_dir)
            if _is_uploaded(model):
                source.unlink(missing_ok=True)  # the extracted copy is what runs; halve the disk used
    except CheckpointError as exc:
        # The area only ever holds this model's upload and extraction: drop it all.
        _validation_abandon(model, area, reason=str(exc))
        return model
    except BaseException:
        # Interrupted (Ctrl-C, a time limit): never leave the entry stuck in "validating".
        _validation_abandon(model, area, reason="Validation was interrupted before it finished; add it again.")
        raise
    model.status = ModelEntry.Status.READY
    model.checkpoint_dir = str(info.model_dir)
    model.architecture = info.architecture
    model.parameter_count = info.parameter_count
    model.weights_sha256 = info.weights_sha256
    model.source_sha256 = source_sha256
    model.chat_template_sha256 = info.chat_template_sha256
    model.save(
        update_fields=[
            "status", "checkpoint_dir", "architecture", "parameter_count", "weights_sha256", "source_sha256",
            "chat_template_sha256", "updated_at",
        ]
    )  # fmt: skip
    return model


def model_take_in(*, name: str, source: str, **fields: object) -> ModelEntry:
    """Add a checkpoint and validate it here (not in a worker): a ready entry, or InputError and no entry.

    ``fields`` are :func:`model_add`'s generation settings and description.
    """
    model = model_add(name=name, source=source, **fields)  # type: ignore[arg-type]
    validated = checkpoint_validate(model_id=model.pk)
    if validated is None:
        raise InputError(f"Model {name!r} was deleted while it was being validated.")
    if validated.status != ModelEntry.Status.READY:
        model_discard(model=validated)
        raise InputError(f"The checkpoint was refused and model {name!r} was not added: {validated.status_reason}")
    return validated


def demo_models_add(*, gguf: Path) -> list[tuple[ModelEntry, bool]]:
    """The demo's SmolLM2 entries (generation.demo_model.ENTRIES), over one stored copy of the weights.

    The first entry takes the GGUF file in (converted once into its folder); the others use that folder in
    place with their own decoding settings. Entries already ready are kept. Returns (entry, created) pairs.
    """
    from generation import demo_model

    added: list[tuple[ModelEntry, bool]] = []
    weights_dir = ""
    for spec in demo_model.ENTRIES:
        existing = ModelEntry.objects.filter(name=spec.name, status=ModelEntry.Status.READY).first()
        if existing is not None:
            added.append((existing, False))
        else:
            entry = model_take_in(
                name=spec.name,
                source=weights_dir or str(gguf),
                template=spec.template,
                max_new_tokens=spec.max_new_tokens,
                temperature=spec.temperature,
                top_p=spec.top_p,
                seed=spec.seed,
                description=spec.description,
            )
            added.append((entry, True))
        weights_dir = weights_dir or added[-1][0].checkpoint_dir
    return added


def _validation_abandon(model: ModelEntry, area: Path, *, reason: str) -> None:
    shutil.rmtree(area, ignore_errors=True)
    model.status = ModelEntry.Status.INVALID
    model.status_reason = reason
    model.checkpoint_dir = ""
    model.save(update_fields=["status", "status_reason", "checkpoint_dir", "updated_at"])


# ---------------------------------------------------------------- runs


def _queue_chunks(chunk_ids: Sequence[int]) -> None:
    from generation.tasks import run_chunk

    for chunk_id in chunk_ids:
        transaction.on_commit(partial(run_chunk.delay, chunk_id))


def run_prompts(*, run: GenerationRun):
    """The prompts a run covers: the eval set's, or its first ``prompt_limit``, in order."""
    prompts = Prompt.objects.filter(eval_set_id=run.eval_set_id).order_by("position")
    if run.prompt_limit:
        prompts = prompts[: run.prompt_limit]
    return prompts


RUN_OPTIONS = {
    "prompt_limit": "The prompt limit (only the first N prompts)",
    "chunk_size": "The chunk size (prompts per worker task)",
    "batch_size": "The batch size (prompts per forward batch)",
}


def run_start_check(
    *,
    model: ModelEntry,
    eval_set: EvalSet,
    prompt_limit: int | None = None,
    chunk_size: int | None = None,
    batch_size: int | None = None,
) -> None:
    """Everything `run_start` refuses, in one place: the run's options (each a whole number from 1, or None
    for the default), a model that is a ready checkpoint, an eval set with prompts. Raises InputError whose
    ``field`` names the argument; `run_start` calls it, and forms call it to show the message under the field."""
    options = {"prompt_limit": prompt_limit, "chunk_size": chunk_size, "batch_size": batch_size}
    for name, value in options.items():
        if value is not None and not 1 <= value <= DB_INT_MAX:
            raise InputError(
                f"{RUN_OPTIONS[name]} must be a whole number from 1 to {DB_INT_MAX:,}, not {value}.", field=name
            )
    if model.kind != ModelEntry.Kind.CHECKPOINT:
        raise InputError(
            f"{model.name} holds imported outputs, not a checkpoint; there is nothing to generate with.", field="model"
        )
    if model.status != ModelEntry.Status.READY:
        reason = f": {model.status_reason}" if model.status_reason else ""
        raise InputError(f"{model.name} is not ready ({model.get_status_display()}{reason}).", field="model")
    if not Prompt.objects.filter(eval_set=eval_set).exists():
        raise InputError(f"Eval set {eval_set.name!r} has no prompts; import some first.", field="eval_set")


@transaction.atomic
def run_start(
    *,
    model: ModelEntry,
    eval_set: EvalSet,
    prompt_limit: int | None = None,
    chunk_size: int | None = None,
    batch_size: int | None = None,
) -> GenerationRun:
    """Start generation for (model, eval set), or resume the existing run of that pair (only what is missing).

    The options (None: the default) apply to a new run; `run_start_check` says what is refused."""
    model = ModelEntry.objects.select_for_update().get(pk=model.pk)
    run_start_check(
        model=model, eval_set=eval_set, prompt_limit=prompt_limit, chunk_size=chunk_size, batch_size=batch_size
    )
    run = GenerationRun.objects.select_for_update().filter(model=model, eval_set=eval_set).first()
    if run is not None:
        run_resume(run=run, requeue_pending=True)
        return run
    fields = {"prompt_limit": prompt_limit}
    if chunk_size is not None:
        fields["chunk_size"] = chunk_size
    if batch_size is not None:
        fields["batch_size"] = batch_size
    run = GenerationRun.objects.create(model=model, eval_set=eval_set, **fields)
    positions = list(run_prompts(run=run).values_list("position", flat=True))
    slices = [positions[start : start + run.chunk_size] for start in range(0, len(positions), run.chunk_size)]
    chunks = [
        GenerationChunk(run=run, index=i, first_position=part[0], last_position=part[-1])
        for i, part in enumerate(slices)
    ]
    GenerationChunk.objects.bulk_create(chunks)
    run.total_prompts = len(positions)
    run.save(update_fields=["total_prompts"])
    _queue_chunks(list(run.chunks.values_list("pk", flat=True)))
    return run


def _stale_before() -> datetime:
    return timezone.now() - timedelta(seconds=settings.GENERATION_STALE_SECONDS)


@transaction.atomic
def run_resume(*, run: GenerationRun, requeue_pending: bool = False) -> list[int]:
    """Re-queue the chunks of a run that are lost; returns their ids.

    Always: running chunks whose heartbeat is stale (their worker died). With
    ``requeue_pending`` (an explicit restart): also pending chunks (their
    message may be lost, e.g. a purged broker), failed chunks and done chunks
    that miss responses; a cancelled or failed run becomes queued again.
    Queueing a chunk twice is harmless: the second claim finds it taken.
    """
    run = GenerationRun.objects.select_for_update().get(pk=run.pk)
    if run.status == GenerationRun.Status.CANCELLED and not requeue_pending:
        return []
    chunks = list(GenerationChunk.objects.select_for_update().filter(run=run))
    stale_before = _stale_before()
    requeue: list[GenerationChunk] = []
    for chunk in chunks:
        stale = chunk.status == GenerationChunk.Status.RUNNING and (
            chunk.heartbeat_at is None or chunk.heartbeat_at < stale_before
        )
        lost = requeue_pending and (
            chunk.status in (GenerationChunk.Status.PENDING, GenerationChunk.Status.FAILED)
            or chunk.status == GenerationChunk.Status.DONE
            and _chunk_missing(run, chunk)
        )
        if stale or lost:
            requeue.append(chunk)
    for chunk in requeue:
        chunk.status = GenerationChunk.Status.PENDING
        chunk.error = ""
        chunk.save(update_fields=["status", "error"])
    if requeue_pending:
        _run_reopen(run, chunks)
    _queue_chunks([c.pk for c in requeue])
    return [c.pk for c in requeue]


def _run_reopen(run: GenerationRun, chunks: list[GenerationChunk]) -> None:
    """After an explicit restart: succeeded when every chunk is done, else queued (or running) again."""
    unfinished = [c for c in chunks if c.status != GenerationChunk.Status.DONE]
    if not unfinished:
        if run.status != GenerationRun.Status.SUCCEEDED:
            run.status = GenerationRun.Status.SUCCEEDED
            run.error = ""
            run.finished_at = timezone.now()
            run.save(update_fields=["status", "error", "finished_at"])
        return
    running = any(c.status == GenerationChunk.Status.RUNNING for c in unfinished)
    run.status = GenerationRun.Status.RUNNING if running else GenerationRun.Status.QUEUED
    run.error = ""
    run.finished_at = None
    # Speed and ETA are measured from the restart; a claim sets it when nothing runs yet.
    run.started_at = timezone.now() if running else None
    run.save(update_fields=["status", "error", "finished_at", "started_at"])


def _chunk_prompts(run: GenerationRun, chunk: GenerationChunk):
    # Chunks were cut from the run's prompts (limit included), so a position range is exact.
    return Prompt.objects.filter(eval_set_id=run.eval_set_id).filter(
        position__gte=chunk.first_position, position__lte=chunk.last_position
    )


def _chunk_missing(run: GenerationRun, chunk: GenerationChunk) -> bool:
    return _chunk_prompts(run, chunk).exclude(responses__model_id=run.model_id).exists()


@transaction.atomic
def run_cancel(*, run: GenerationRun) -> GenerationRun:
    """Stop a run: workers finish the batch in flight and stop; `generate` again resumes it."""
    run = GenerationRun.objects.select_for_update().get(pk=run.pk)
    if run.status in (GenerationRun.Status.QUEUED, GenerationRun.Status.RUNNING):
        run.status = GenerationRun.Status.CANCELLED
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "finished_at"])
    return run


# ---------------------------------------------------------------- chunks (worker side)


@dataclass(frozen=True, kw_only=True)
class ModelRunSettings:
    """What a worker needs of a model to load it and generate with its settings."""

    checkpoint_dir: str
    weights_sha256: str
    dtype: str
    template: str
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int


@dataclass(frozen=True, kw_only=True)
class ClaimedChunk(ModelRunSettings):
    chunk_id: int
    run_id: int
    model_id: int
    batch_size: int
    prompts: list[Prompt]
    provenance: dict[str, object]


def _model_run_settings(model: ModelEntry) -> dict[str, Any]:
    """The :class:`ModelRunSettings` fields of ``model``."""
    return {
        "checkpoint_dir": model.checkpoint_dir,
        "weights_sha256": model.weights_sha256,
        "dtype": model.dtype,
        "template": model.template,
        "max_new_tokens": model.max_new_tokens,
        "temperature": model.temperature,
        "top_p": model.top_p,
        "seed": model.seed,
    }


def generation_provenance(*, model: ModelEntry, batch_size: int) -> dict[str, object]:
    """What a generated response records about how it was made (Response.generator_config)."""
    return {
        "source": "generated",
        "model": model.name,
        "checkpoint_sha256": model.weights_sha256,
        "converted_from_sha256": model.source_sha256 or None,
        "template": model.template,
        "chat_template_sha256": (model.chat_template_sha256 or None) if model.template == PromptTemplate.CHAT else None,
        "decoding": "greedy" if model.greedy else "sampling",
        "max_new_tokens": model.max_new_tokens,
        "temperature": model.temperature,
        "top_p": model.top_p,
        "seed": model.seed,
        "dtype": model.dtype,
        "batch_size": batch_size,
    }


def _lock_run_and_chunk(chunk_id: int) -> tuple[GenerationRun, GenerationChunk] | None:
    """Lock a chunk's run, then the chunk (None when the chunk is gone), inside the caller's transaction.

    Every service locks a run before any of its chunks, as `run_resume` and `run_cancel` do: a worker that held
    its chunk while waiting for the run deadlocked with a resume holding the run and waiting for the chunks, and
    PostgreSQL's way out (failing one of the two) dropped the chunk's message with the worker's claim."""
    run_id = GenerationChunk.objects.filter(pk=chunk_id).values_list("run_id", flat=True).first()
    if run_id is None:
        return None
    run = GenerationRun.objects.select_for_update(of=("self",)).select_related("model").filter(pk=run_id).first()
    chunk = GenerationChunk.objects.select_for_update().filter(pk=chunk_id).first()
    if run is None or chunk is None:
        return None
    return run, chunk


@transaction.atomic
def chunk_claim(*, chunk_id: int, worker: str) -> ClaimedChunk | None:
    """Take a chunk for ``worker``; None when there is nothing to do (gone, done, taken, run stopped)."""
    locked = _lock_run_and_chunk(chunk_id)
    if locked is None:
        return None
    run, chunk = locked
    if chunk.status == GenerationChunk.Status.DONE:
        return None
    if run.status in (GenerationRun.Status.CANCELLED, GenerationRun.Status.FAILED, GenerationRun.Status.SUCCEEDED):
        return None
    if chunk.status == GenerationChunk.Status.RUNNING and chunk.heartbeat_at and chunk.heartbeat_at >= _stale_before():
        return None  # another worker is alive on it; this message is a duplicate
    if chunk.status == GenerationChunk.Status.FAILED:
        return None  # only an explicit resume retries a failed chunk
    now = timezone.now()
    chunk.status = GenerationChunk.Status.RUNNING
    chunk.worker = worker[:200]
    chunk.attempts = F("attempts") + 1
    chunk.heartbeat_at = now
    chunk.save(update_fields=["status", "worker", "attempts", "heartbeat_at"])
    if run.status == GenerationRun.Status.QUEUED:
        run.status = GenerationRun.Status.RUNNING
        run.started_at = run.started_at or now
        run.save(update_fields=["status", "started_at"])
    model = run.model
    prompts = list(_chunk_prompts(run, chunk).exclude(responses__model_id=run.model_id))
    return ClaimedChunk(
        chunk_id=chunk.pk,
        run_id=run.pk,
        model_id=model.pk,
        **_model_run_settings(model),
        batch_size=run.batch_size,
        prompts=prompts,
        provenance=generation_provenance(model=model, batch_size=run.batch_size),
    )


def chunk_heartbeat(*, chunk_id: int) -> None:
    GenerationChunk.objects.filter(pk=chunk_id, status=GenerationChunk.Status.RUNNING).update(
        heartbeat_at=timezone.now()
    )


def _clean_text(text: str) -> str:
    # PostgreSQL text cannot hold NUL; a model that emits one meant nothing by it.
    return text.replace("\x00", "")


# ---------------------------------------------------------------- self-identifying responses


def model_entry_names() -> list[str]:
    """The names of every model entry: what `identity_matches_of` also looks for in a text."""
    return list(ModelEntry.objects.values_list("name", flat=True))


def identity_matches_of(*, text: str, names: Sequence[str]) -> list[dict]:
    """What ``Response.identity_matches`` holds for ``text``, given the model entry names ``names``."""
    return identity.matches_as_json(identity.detect_identity(text, model_names=names))


@dataclass(frozen=True)
class IdentityScan:
    """What `responses_scan_identity` found: responses read, flagged and changed, and per model (flagged, read)."""

    scanned: int
    flagged: int
    changed: int
    names: int
    per_model: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def message(self) -> str:
        lines = [
            f"Scanned {self.scanned} responses against {self.names} model entry names: {self.flagged} "
            f"self-identify; {self.changed} changed since the last scan."
        ]
        lines += [
            f"  {name}: {flagged} of {total} self-identify" for name, (flagged, total) in sorted(self.per_model.items())
        ]
        return "\n".join(lines)


def responses_scan_identity(*, responses: QuerySet[Response] | Iterable[Response] | None = None) -> IdentityScan:
    """Run the detector again on ``responses`` (default: all) with the model entry names as they are now.

    Names change as models are added, so a response stored before a rival's entry existed is only
    flagged for naming it once scanned again: `campaign_open` scans its responses this way, and
    ``manage.py scan_identity`` scans any set. Only responses whose matches changed are written.
    """
    names = model_entry_names()
    if responses is None:
        responses = Response.objects.all()
    if isinstance(responses, QuerySet):
        responses = responses.select_related("model").only("pk", "text", "identity_matches", "model__name")
    changed: list[Response] = []
    per_model: dict[str, list[int]] = {}
    scanned = flagged = 0
    for response in responses:
        matches = identity_matches_of(text=response.text, names=names)
        counts = per_model.setdefault(response.model.name, [0, 0])
        counts[1] += 1
        scanned += 1
        if matches:
            counts[0] += 1
            flagged += 1
        if matches != response.identity_matches:
            response.identity_matches = matches
            changed.append(response)
    Response.objects.bulk_update(changed, ["identity_matches"], batch_size=500)
    return IdentityScan(
        scanned=scanned,
        flagged=flagged,
        changed=len(changed),
        names=len(names),
        per_model={name: (counts[0], counts[1]) for name, counts in per_model.items()},
    )


@transaction.atomic
def chunk_store_responses(
    *,
    chunk_id: int,
    run_id: int,
    model_id: int,
    results: Sequence[GenerationResult],
    provenance: dict[str, object] | None = None,
) -> int:
    """Store a finished batch; prompts that already have a response keep it. Returns how many were new.

    ``provenance`` (the claimed chunk's) is stored with each response as its ``generator_config``.
    """
    prompt_ids = [r.key for r in results]
    existing = set(
        Response.objects.filter(model_id=model_id, prompt_id__in=prompt_ids).values_list("prompt_id", flat=True)
    )
    fresh = [r for r in results if r.key not in existing]
    names = model_entry_names() if fresh else []
    Response.objects.bulk_create(
        [
            Response(
                prompt_id=r.key,
                model_id=model_id,
                run_id=run_id,
                text=_clean_text(r.text),
                prompt_tokens=r.prompt_tokens,
                completion_tokens=r.completion_tokens,
                seconds=r.seconds,
                finish_reason=r.finish_reason,
                identity_matches=identity_matches_of(text=_clean_text(r.text), names=names),
                generator_config=provenance or {},
            )
            for r in fresh
        ],
        ignore_conflicts=True,  # a concurrent duplicate loses quietly to the unique constraint
    )
    GenerationRun.objects.filter(pk=run_id).update(
        generated_tokens=F("generated_tokens") + sum(r.completion_tokens for r in fresh),
    )
    GenerationChunk.objects.filter(pk=chunk_id).update(heartbeat_at=timezone.now())
    return len(fresh)


def _run_finish_if_complete(run: GenerationRun) -> None:
    if run.chunks.exclude(status=GenerationChunk.Status.DONE).exists():
        return
    if run.status in (GenerationRun.Status.CANCELLED, GenerationRun.Status.FAILED):
        return
    run.status = GenerationRun.Status.SUCCEEDED
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "finished_at"])


@transaction.atomic
def chunk_finish(*, chunk_id: int) -> None:
    """Mark a chunk done when it has every response; the last chunk done ends the run."""
    locked = _lock_run_and_chunk(chunk_id)
    if locked is None:
        return
    run, chunk = locked
    if _chunk_missing(run, chunk):
        # Stopped early (cancelled): leave it for a resume.
        chunk.status = GenerationChunk.Status.PENDING
        chunk.save(update_fields=["status"])
        return
    chunk.status = GenerationChunk.Status.DONE
    chunk.heartbeat_at = timezone.now()
    chunk.save(update_fields=["status", "heartbeat_at"])
    _run_finish_if_complete(run)


@transaction.atomic
def chunk_fail(*, chunk_id: int, error: str) -> None:
    """Record a chunk's error; the run fails with it (its other chunks stop) until it is resumed."""
    locked = _lock_run_and_chunk(chunk_id)
    if locked is None:
        return
    run, chunk = locked
    chunk.status = GenerationChunk.Status.FAILED
    chunk.error = error
    chunk.save(update_fields=["status", "error"])
    if run.status in (GenerationRun.Status.QUEUED, GenerationRun.Status.RUNNING):
        run.status = GenerationRun.Status.FAILED
        run.error = f"Chunk {chunk.index} (prompts {chunk.first_position}-{chunk.last_position}): {error}"
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "error", "finished_at"])


@transaction.atomic
def model_discard(*, model: ModelEntry) -> None:
    """Remove a model entry that never became usable, with the files the platform wrote for it."""
    shutil.rmtree(checkpoint_area(model_id=model.pk), ignore_errors=True)
    model.delete()


# ---------------------------------------------------------------- playground

PLAYGROUND_MAX_CHARS = 20_000


def playground_models():
    """Models the playground can run: ready checkpoints."""
    return ModelEntry.objects.filter(kind=ModelEntry.Kind.CHECKPOINT, status=ModelEntry.Status.READY)


@transaction.atomic
def playground_ask(
    *, model_ids: Sequence[int], instruction: str, input_text: str = "", user_id: int | None = None
) -> list[PlaygroundAnswer]:
    """Queue one answer per model (one or two, side by side) to the same instruction and input."""
    instruction = instruction.strip()
    if not instruction:
        raise InputError("Write an instruction for the model to answer.")
    if len(instruction) + len(input_text) > PLAYGROUND_MAX_CHARS:
        raise InputError(f"Instruction and input together may have at most {PLAYGROUND_MAX_CHARS} characters.")
    ids = list(dict.fromkeys(model_ids))
    if not 1 <= len(ids) <= 2:
        raise InputError("Choose one model, or two different models to compare side by side.")
    models = {m.pk: m for m in playground_models().filter(pk__in=ids)}
    if len(models) != len(ids):
        raise InputError("Only ready checkpoint models can answer in the playground.")
    answers = [
        PlaygroundAnswer.objects.create(
            token=secrets.token_hex(16),
            model=models[pk],
            requested_by_id=user_id,
            instruction=instruction,
            input=input_text,
        )
        for pk in ids
    ]
    from generation.tasks import playground_answer

    for answer in answers:
        transaction.on_commit(partial(playground_answer.delay, answer.pk))
    return answers


@dataclass(frozen=True, kw_only=True)
class ClaimedAnswer(ModelRunSettings):
    answer_id: int
    instruction: str
    input: str


@transaction.atomic
def playground_claim(*, answer_id: int) -> ClaimedAnswer | None:
    """Take a queued answer for this worker; None when it is gone or already taken."""
    answer = PlaygroundAnswer.objects.select_for_update().select_related("model").filter(pk=answer_id).first()
    if answer is None or answer.status != PlaygroundAnswer.Status.QUEUED:
        return None
    model = answer.model
    answer.status = PlaygroundAnswer.Status.RUNNING
    answer.generator_config = generation_provenance(model=model, batch_size=1)
    answer.save(update_fields=["status", "generator_config"])
    return ClaimedAnswer(
        answer_id=answer.pk,
        **_model_run_settings(model),
        instruction=answer.instruction,
        input=answer.input,
    )


def playground_store(*, answer_id: int, prompt_text: str, result: GenerationResult) -> None:
    PlaygroundAnswer.objects.filter(pk=answer_id).update(
        status=PlaygroundAnswer.Status.DONE,
        prompt_text=_clean_text(prompt_text),
        text=_clean_text(result.text),
        finish_reason=result.finish_reason,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        seconds=result.seconds,
        finished_at=timezone.now(),
    )


def playground_fail(*, answer_id: int, error: str) -> None:
    PlaygroundAnswer.objects.filter(pk=answer_id).update(
        status=PlaygroundAnswer.Status.FAILED, error=error[:2000], finished_at=timezone.now()
    )
