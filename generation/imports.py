"""Services that bring evaluation data in and out: eval sets, imported model outputs, AlpacaEval export.

Each import validates the whole file first and then writes in one
transaction, so it either imports everything or changes nothing; importing the
same file again is a no-op. Bad input raises :class:`generation.errors.InputError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction

from evalsite.files import atomic_text_file
from generation import formats
from generation.checkpoints import file_sha256
from generation.errors import InputError
from generation.models import EvalSet, ModelEntry, Prompt, Response, name_start_problem
from generation.services import identity_matches_of, model_entry_names

MAX_NAME_LENGTH = 200


@dataclass(frozen=True)
class EvalSetImportResult:
    eval_set: str
    created: int
    present: int
    categories: int

    @property
    def message(self) -> str:
        if not self.created:
            return f"Eval set '{self.eval_set}' already has these {self.present} prompts, nothing changed."
        return (
            f"Imported {self.created} prompts into eval set '{self.eval_set}' "
            f"({self.categories} {'category' if self.categories == 1 else 'categories'})."
        )


@dataclass(frozen=True)
class OutputsImportResult:
    model: str
    eval_set: str
    format: formats.OutputFormat
    created: int
    present: int
    model_created: bool
    prompts_without_output: int
    ignored: dict[str, int] = field(default_factory=dict)
    self_identifying: int = 0

    @property
    def message(self) -> str:
        parts = []
        if self.created:
            parts.append(
                f"Imported {self.created} outputs ({self.format.label}) for model '{self.model}' "
                f"on eval set '{self.eval_set}'" + (" (new model)" if self.model_created else "")
            )
            if self.present:
                parts.append(f"{self.present} outputs already present")
        else:
            parts.append(f"{self.present} outputs already present, nothing changed")
        if self.ignored:
            per_dataset = ", ".join(f"{name} {count}" for name, count in sorted(self.ignored.items()))
            parts.append(f"ignored {sum(self.ignored.values())} entries of other data sets ({per_dataset})")
        if self.prompts_without_output:
            parts.append(f"{self.prompts_without_output} prompts of the eval set have no output from this model")
        if self.self_identifying:
            parts.append(
                f"{self.self_identifying} of the new outputs name their model, their maker or themselves as an AI "
                "(campaigns leave them out; see Responses in the admin)"
            )
        return "; ".join(parts) + "."


@dataclass(frozen=True)
class OutputsExportResult:
    path: Path
    model: str
    eval_set: str
    dataset: str
    exported: int
    prompts_without_output: int

    @property
    def message(self) -> str:
        text = (
            f"Wrote {self.exported} outputs of model '{self.model}' on eval set '{self.eval_set}' "
            f"(dataset '{self.dataset}') to {self.path}"
        )
        if self.prompts_without_output:
            text += f"; {self.prompts_without_output} prompts have no response yet and are not in the file"
        return text + "."


def _check_name(value: str, *, what: str) -> str:
    name = value.strip()
    if not name:
        raise InputError(f"The {what} name is empty; give a name.")
    if len(name) > MAX_NAME_LENGTH:
        raise InputError(f"The {what} name is {len(name)} characters long; at most {MAX_NAME_LENGTH} are allowed.")
    if problem := name_start_problem(name):
        raise InputError(f"The {what} name {name!r} is refused. {problem} Nothing was changed.")
    return name


def _eval_set_get(*, name: str) -> EvalSet:
    try:
        return EvalSet.objects.get(name=name)
    except EvalSet.DoesNotExist:
        known = list(EvalSet.objects.order_by("name").values_list("name", flat=True)[:10])
        hint = f"Known eval sets: {', '.join(repr(n) for n in known)}." if known else "There are no eval sets yet."
        raise InputError(
            f"There is no eval set named '{name}'. {hint} Import one with `python manage.py import_evalset PATH "
            "--name NAME`. Nothing was changed."
        ) from None


def evalset_import(*, path: Path | str, name: str) -> EvalSetImportResult:
    """Create the eval set ``name`` from a Self-Instruct JSONL file, keeping ids, order and categories.

    An eval set that already has prompts is never changed: importing the same
    file again reports them as present; a different file is refused, because
    outputs and votes refer to the existing prompts.
    """
    path = Path(path)
    name = _check_name(name, what="eval set")
    tasks = formats.parse_evalset(path)
    wanted = [
        (position, task.external_id, task.instruction, task.input, task.category, task.reference_output)
        for position, task in enumerate(tasks)
    ]
    with transaction.atomic():
        eval_set, _ = EvalSet.objects.get_or_create(
            name=name, defaults={"source": f"Self-Instruct JSONL: {path.name}"[:500]}
        )
        eval_set = EvalSet.objects.select_for_update().get(pk=eval_set.pk)
        existing = list(
            eval_set.prompts.order_by("position").values_list(
                "position", "external_id", "instruction", "input", "category", "reference_output"
            )
        )
        if existing:
            if existing == wanted:
                return EvalSetImportResult(eval_set=name, created=0, present=len(existing), categories=0)
            difference = next(
                (
                    f"prompt {old[1]} at position {old[0]}"
                    for old, new in zip(existing, wanted, strict=False)
                    if old != new
                ),
                f"it has {len(existing)} prompts, the file {len(wanted)}",
            )
            raise InputError(
                f"Eval set '{name}' already exists with {len(existing)} prompts that differ from {path} "
                f"(first difference: {difference}). Existing prompts are never changed, because outputs and votes "
                "refer to them; import the file under a new --name. Nothing was changed."
            )
        Prompt.objects.bulk_create(
            Prompt(
                eval_set=eval_set,
                external_id=task.external_id,
                position=position,
                instruction=task.instruction,
                input=task.input,
                category=task.category,
                reference_output=task.reference_output,
            )
            for position, task in enumerate(tasks)
        )
    categories = len({task.category for task in tasks if task.category})
    return EvalSetImportResult(eval_set=name, created=len(tasks), present=0, categories=categories)


def outputs_import(*, path: Path | str, model_name: str, eval_set_name: str) -> OutputsImportResult:
    """Import one model's outputs on an eval set from an AlpacaEval or Self-Instruct predictions file.

    Creates the imported-outputs model entry if needed. Outputs already stored
    with the same text are counted as present; a different text for a prompt
    that already has a response from this model is refused (nothing is
    overwritten).
    """
    path = Path(path)
    model_name = _check_name(model_name, what="model")
    eval_set_name = _check_name(eval_set_name, what="eval set")
    parsed = formats.parse_outputs(path)
    eval_set = _eval_set_get(name=eval_set_name)
    prompts = list(eval_set.prompts.order_by("position"))
    if not prompts:
        raise InputError(f"Eval set '{eval_set_name}' has no prompts yet, so no output can match. Nothing was changed.")
    match = formats.match_outputs(
        parsed,
        prompts=[formats.PromptKey(p.external_id, p.instruction, p.input) for p in prompts],
        path=path,
        eval_set=eval_set_name,
    )
    provenance = {
        "source": "imported",
        "outputs_file": path.name,
        "outputs_sha256": file_sha256(path),
        "format": parsed.format.value,
    }
    with transaction.atomic():
        model, model_created = ModelEntry.objects.get_or_create(
            name=model_name,
            defaults={
                "kind": ModelEntry.Kind.IMPORTED,
                "status": ModelEntry.Status.READY,
                "description": f"Outputs imported from {path.name}",
            },
        )
        model = ModelEntry.objects.select_for_update().get(pk=model.pk)
        if model.kind != ModelEntry.Kind.IMPORTED:
            raise InputError(
                f"Model '{model_name}' is a {model.get_kind_display().lower()}, whose responses come from generation "
                "runs; imported outputs need their own model entry. Choose another --model name. Nothing was changed."
            )
        stored = dict(Response.objects.filter(model=model, prompt__eval_set=eval_set).values_list("prompt_id", "text"))
        conflicts = [
            prompts[position].external_id
            for position, record in match.outputs.items()
            if prompts[position].pk in stored and stored[prompts[position].pk] != record.output
        ]
        if conflicts:
            raise InputError(
                f"Model '{model_name}' already has different responses on eval set '{eval_set_name}' for "
                f"{len(conflicts)} of these prompts ({formats.listing(conflicts)}). Imports never overwrite "
                "responses; import under another --model name, or delete the old responses first. Nothing was changed."
            )
        names = model_entry_names()
        new = [
            Response(
                prompt=prompts[position],
                model=model,
                text=record.output,
                finish_reason=Response.FinishReason.IMPORTED,
                identity_matches=identity_matches_of(text=record.output, names=names),
                generator_config=provenance,
            )
            for position, record in sorted(match.outputs.items())
            if prompts[position].pk not in stored
        ]
        Response.objects.bulk_create(new)
        if model.status != ModelEntry.Status.READY:
            model.status = ModelEntry.Status.READY
            model.status_reason = ""
            model.save(update_fields=["status", "status_reason", "updated_at"])
    return OutputsImportResult(
        model=model_name,
        eval_set=eval_set_name,
        format=parsed.format,
        created=len(new),
        present=len(match.outputs) - len(new),
        model_created=model_created,
        prompts_without_output=len(prompts) - len(stored) - len(new),
        ignored=dict(match.ignored),
        self_identifying=sum(1 for response in new if response.identity_matches),
    )


def evalset_dataset_label(*, eval_set: EvalSet) -> str:
    """The AlpacaEval ``dataset`` value for this eval set ("selfinstruct" for the Self-Instruct set)."""
    external_ids = list(eval_set.prompts.values_list("external_id", flat=True))
    return formats.dataset_label(name=eval_set.name, external_ids=external_ids)


def outputs_export(
    *, model_name: str, eval_set_name: str, path: Path | str, dataset: str | None = None
) -> OutputsExportResult:
    """Write a model's responses on an eval set as AlpacaEval ``model_outputs.json``, in prompt order.

    Each entry is {instruction (composed: instruction, blank line, input),
    output, generator (the model name), dataset, generator_config (the
    response's provenance: checkpoint hash, template and decoding settings, or
    the imported file and its hash)}. Works for imported and generated
    responses alike; importing the file back yields the same texts.
    """
    path = Path(path)
    eval_set = _eval_set_get(name=_check_name(eval_set_name, what="eval set"))
    try:
        model = ModelEntry.objects.get(name=_check_name(model_name, what="model"))
    except ModelEntry.DoesNotExist:
        raise InputError(f"There is no model named '{model_name}'. Nothing was written.") from None
    if path.is_dir():
        raise InputError(f"{path} is a directory; give the path of the JSON file to write. Nothing was written.")
    if not path.parent.is_dir():
        raise InputError(f"The folder {path.parent} does not exist; create it first. Nothing was written.")
    responses = list(
        Response.objects.filter(model=model, prompt__eval_set=eval_set)
        .select_related("prompt")
        .order_by("prompt__position")
    )
    if not responses:
        raise InputError(
            f"Model '{model.name}' has no responses on eval set '{eval_set.name}': import outputs or run "
            "generation first. Nothing was written."
        )
    label = dataset if dataset is not None else evalset_dataset_label(eval_set=eval_set)
    entries = [
        {
            "instruction": response.prompt.composed_instruction,
            "output": response.text,
            "generator": model.name,
            "dataset": label,
            "generator_config": response.generator_config,
        }
        for response in responses
    ]
    try:
        with atomic_text_file(path) as handle:
            json.dump(entries, handle, ensure_ascii=False, indent=2)
            handle.write("\n")
    except OSError as exc:
        raise InputError(f"Cannot write {path}: {exc.strerror or exc}. Nothing was written.") from None
    return OutputsExportResult(
        path=path,
        model=model.name,
        eval_set=eval_set.name,
        dataset=label,
        exported=len(entries),
        prompts_without_output=eval_set.prompts.count() - len(entries),
    )
