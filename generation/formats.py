"""Reading and validating the exchange formats of the evaluation data, and matching outputs to prompts.

Pure Python (no Django): the Self-Instruct task file (JSON Lines), AlpacaEval
``model_outputs.json`` (a JSON list) and Self-Instruct prediction files (JSON
Lines). Every problem is raised as :class:`generation.errors.InputError` with a
one-paragraph message that names the file and the line or entry.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from generation.errors import InputError
from generation.prompting import compose_instruction

# Field limits of generation.models.Prompt, checked here so a bad file fails with a message, not a database error.
MAX_EXTERNAL_ID_LENGTH = 200
MAX_CATEGORY_LENGTH = 200
# How many offending entries an error message lists before "and N more".
LISTED = 5

SELF_INSTRUCT_ID = re.compile(r"user_oriented_task_\d+")
SELF_INSTRUCT_DATASET = "selfinstruct"


class OutputFormat(StrEnum):
    ALPACA_EVAL = "alpaca_eval"
    SELF_INSTRUCT_PREDICTIONS = "self_instruct_predictions"

    @property
    def label(self) -> str:
        if self is OutputFormat.ALPACA_EVAL:
            return "AlpacaEval model outputs"
        return "Self-Instruct predictions"


@dataclass(frozen=True)
class Task:
    """One task of a Self-Instruct style evaluation set, as read from the file."""

    line: int
    external_id: str
    instruction: str
    input: str
    category: str
    reference_output: str


@dataclass(frozen=True)
class OutputRecord:
    """One model output read from an outputs file.

    ``input`` is None for AlpacaEval entries, whose ``instruction`` already holds
    the composed form (instruction, blank line, input).
    """

    where: str
    instruction: str
    input: str | None
    output: str
    dataset: str | None = None


@dataclass(frozen=True)
class OutputsFile:
    format: OutputFormat
    records: list[OutputRecord]


@dataclass(frozen=True)
class PromptKey:
    """What matching needs to know about a stored prompt."""

    external_id: str
    instruction: str
    input: str


@dataclass
class Match:
    """The outcome of matching an outputs file against the prompts of an eval set."""

    # prompt index (in the sequence given to match_outputs) -> its output
    outputs: dict[int, OutputRecord] = field(default_factory=dict)
    # dataset name -> number of entries ignored because they belong to another data set
    ignored: Counter[str] = field(default_factory=Counter)
    dataset: str | None = None


def read_text(path: Path) -> str:
    """The file's text, decoded as UTF-8 (a byte-order mark is allowed)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path} does not exist. Check the path (relative paths start from {Path.cwd()}).") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a directory, not a file. Give the path of the file itself.") from None
    except PermissionError:
        raise InputError(f"{path} cannot be read: permission denied.") from None
    except OSError as exc:
        raise InputError(f"{path} cannot be read: {exc.strerror or exc}.") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path} is not UTF-8 text: the byte 0x{data[exc.start]:02x} at position {exc.start} cannot be decoded. "
            "Save the file as UTF-8 and try again; nothing was imported."
        ) from None


def json_type_name(value: Any) -> str:
    """A parsed JSON value's kind in words, for messages: "null", "a number", "a list", "an object", …"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _parse_json_lines(text: str, *, path: Path, what: str) -> list[tuple[int, dict[str, Any]]]:
    """Each non-blank line parsed as one JSON object, with its 1-based line number."""
    rows: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{path}, line {number}: not valid JSON ({exc.msg} at column {exc.colno}). "
                f"{what} is JSON Lines: one JSON object on each line. Nothing was imported."
            ) from None
        if not isinstance(value, dict):
            raise InputError(
                f"{path}, line {number}: expected a JSON object, found {json_type_name(value)}. "
                f"{what} is JSON Lines: one JSON object on each line. Nothing was imported."
            )
        rows.append((number, value))
    if not rows:
        raise InputError(f"{path} contains no entries (only blank lines). Nothing was imported.")
    return rows


def _parse_json_document(text: str, *, path: Path) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno} "
            f"(character {exc.pos}). Nothing was imported."
        ) from None


def _string_field(
    entry: dict[str, Any], name: str, *, path: Path, where: str, required: bool = True, default: str = ""
) -> str:
    if name not in entry or (not required and entry[name] is None):
        if required:
            raise InputError(f"{path}, {where}: the field '{name}' is missing. Nothing was imported.")
        return default
    value = entry[name]
    if not isinstance(value, str):
        raise InputError(
            f"{path}, {where}: the field '{name}' is {json_type_name(value)}, expected a string. Nothing was imported."
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON may escape half of a surrogate pair ("\ud800"), which is no text
        raise InputError(
            f"{path}, {where}: the field '{name}' contains a lone surrogate (\\u{ord(value[exc.start]):04x}) at "
            f"character {exc.start}: half of an escaped character pair, which is not text. Fix the file. "
            "Nothing was imported."
        ) from None
    return value


def listing(items: Sequence[str]) -> str:
    shown = "; ".join(items[:LISTED])
    if len(items) > LISTED:
        shown += f"; and {len(items) - LISTED} more"
    return shown


def _excerpt(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def parse_evalset(path: Path) -> list[Task]:
    """Read a Self-Instruct evaluation set: JSON Lines of {id, instruction, instances[0].input/output, motivation_app}.

    ``motivation_app`` (the category) and ``instances[0].output`` (the reference
    answer) may be absent. Ids must be unique, and so must (instruction, input)
    pairs, since outputs are matched to prompts by their text.
    """
    text = read_text(path)
    stripped = text.lstrip()
    if not stripped:
        raise InputError(f"{path} is empty: an evaluation set needs at least one task. Nothing was imported.")
    if stripped[0] == "[":
        raise InputError(
            f"{path} starts with a JSON list, but an evaluation set is JSON Lines in the Self-Instruct format: "
            "one task object {id, instruction, instances, motivation_app} on each line. Nothing was imported."
        )
    what = "A Self-Instruct evaluation set"
    tasks: list[Task] = []
    line_of_id: dict[str, int] = {}
    line_of_text: dict[tuple[str, str], int] = {}
    for number, entry in _parse_json_lines(text, path=path, what=what):
        raw_id = entry.get("id")
        if isinstance(raw_id, int) and not isinstance(raw_id, bool):
            entry = {**entry, "id": str(raw_id)}
        external_id = _string_field(entry, "id", path=path, where=f"line {number}").strip()
        if not external_id:
            raise InputError(f"{path}, line {number}: the field 'id' is empty. Nothing was imported.")
        if len(external_id) > MAX_EXTERNAL_ID_LENGTH:
            raise InputError(
                f"{path}, line {number}: the id is {len(external_id)} characters long; at most "
                f"{MAX_EXTERNAL_ID_LENGTH} are allowed. Nothing was imported."
            )
        where = f"line {number} (id {external_id})"
        instruction = _string_field(entry, "instruction", path=path, where=where)
        if not instruction.strip():
            raise InputError(f"{path}, {where}: the field 'instruction' is empty. Nothing was imported.")
        category = _string_field(entry, "motivation_app", path=path, where=where, required=False).strip()
        if len(category) > MAX_CATEGORY_LENGTH:
            raise InputError(
                f"{path}, {where}: 'motivation_app' is {len(category)} characters long; at most "
                f"{MAX_CATEGORY_LENGTH} are allowed. Nothing was imported."
            )
        if "instances" not in entry:
            raise InputError(f"{path}, {where}: the field 'instances' is missing. Nothing was imported.")
        instances = entry["instances"]
        if not isinstance(instances, list) or not instances:
            raise InputError(
                f"{path}, {where}: 'instances' must be a non-empty list of {{input, output}} objects, found "
                f"{json_type_name(instances)}{' (empty)' if instances == [] else ''}. Nothing was imported."
            )
        first = instances[0]
        if not isinstance(first, dict):
            raise InputError(
                f"{path}, {where}: instances[0] is {json_type_name(first)}, expected an object with 'input' and "
                "'output'. Nothing was imported."
            )
        input_text = _string_field(first, "input", path=path, where=f"{where}, instances[0]")
        reference = _string_field(first, "output", path=path, where=f"{where}, instances[0]", required=False)
        if external_id in line_of_id:
            raise InputError(
                f"{path}: the id {external_id!r} appears on line {line_of_id[external_id]} and again on line "
                f"{number}. Ids must be unique; nothing was imported."
            )
        key = (instruction.strip(), input_text.strip())
        if key in line_of_text:
            raise InputError(
                f"{path}: lines {line_of_text[key]} and {number} have the same instruction and input. Outputs are "
                "matched to prompts by this text, so every task must differ; nothing was imported."
            )
        line_of_id[external_id] = number
        line_of_text[key] = number
        tasks.append(
            Task(
                line=number,
                external_id=external_id,
                instruction=instruction,
                input=input_text,
                category=category,
                reference_output=reference,
            )
        )
    return tasks


def _alpaca_records(value: list[Any], *, path: Path) -> list[OutputRecord]:
    if not value:
        raise InputError(f"{path} is an empty JSON list: there are no outputs to import. Nothing was imported.")
    records = []
    for number, entry in enumerate(value, start=1):
        where = f"entry {number}"
        if not isinstance(entry, dict):
            raise InputError(
                f"{path}, {where}: expected an object {{instruction, output, ...}}, found {json_type_name(entry)}. "
                "Nothing was imported."
            )
        instruction = _string_field(entry, "instruction", path=path, where=where)
        output = _string_field(entry, "output", path=path, where=where)
        dataset = entry.get("dataset")
        if dataset is not None and not isinstance(dataset, str):
            raise InputError(
                f"{path}, {where}: the field 'dataset' is {json_type_name(dataset)}, expected a string. "
                "Nothing was imported."
            )
        records.append(OutputRecord(where=where, instruction=instruction, input=None, output=output, dataset=dataset))
    return records


def _prediction_records(rows: list[tuple[int, dict[str, Any]]], *, path: Path) -> list[OutputRecord]:
    records = []
    for number, entry in rows:
        where = f"line {number}"
        instruction = _string_field(entry, "instruction", path=path, where=where)
        input_text = _string_field(entry, "input", path=path, where=where)
        output = _string_field(entry, "response", path=path, where=where)
        records.append(OutputRecord(where=where, instruction=instruction, input=input_text, output=output))
    return records


def parse_outputs(path: Path) -> OutputsFile:
    """Read model outputs in either supported format, told apart by content (and the extension when ambiguous).

    A JSON list is AlpacaEval ``model_outputs.json`` ({instruction, output, dataset?,
    generator?} entries); JSON Lines of {instruction, input, response, ...} is a
    Self-Instruct predictions file.
    """
    text = read_text(path)
    stripped = text.lstrip()
    if not stripped:
        raise InputError(f"{path} is empty: there are no outputs to import. Nothing was imported.")
    suffix = path.suffix.lower()
    what = "A Self-Instruct predictions file"
    if stripped[0] == "[":
        value = _parse_json_document(text, path=path)
        return OutputsFile(OutputFormat.ALPACA_EVAL, _alpaca_records(value, path=path))
    if stripped[0] == "{" and suffix != ".json":
        rows = _parse_json_lines(text, path=path, what=what)
        return OutputsFile(OutputFormat.SELF_INSTRUCT_PREDICTIONS, _prediction_records(rows, path=path))
    if suffix == ".jsonl":
        # Not an object on the first line: let the line parser say what is wrong where.
        rows = _parse_json_lines(text, path=path, what=what)
        return OutputsFile(OutputFormat.SELF_INSTRUCT_PREDICTIONS, _prediction_records(rows, path=path))
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if stripped[0] == "{" and exc.msg == "Extra data":
            # Several objects one after another: JSON Lines saved with a .json name.
            rows = _parse_json_lines(text, path=path, what=what)
            return OutputsFile(OutputFormat.SELF_INSTRUCT_PREDICTIONS, _prediction_records(rows, path=path))
        value = _parse_json_document(text, path=path)
    raise InputError(
        f"{path} contains {json_type_name(value)} at the top level. Expected either a JSON list of "
        "{instruction, output, dataset, generator} objects (AlpacaEval model_outputs.json) or JSON Lines of "
        "{instruction, input, response} objects (a Self-Instruct predictions .jsonl file). Nothing was imported."
    )


def alpaca_key(text: str) -> str:
    return text.strip()


def prediction_key(instruction: str, input_text: str) -> tuple[str, str]:
    # The Self-Instruct prediction files carry stray surrounding whitespace on some instructions and inputs.
    return instruction.strip(), input_text.strip()


def match_outputs(outputs: OutputsFile, *, prompts: Sequence[PromptKey], path: Path, eval_set: str) -> Match:
    """Pair each output with its prompt; ignore (and count) AlpacaEval entries of other data sets.

    AlpacaEval entries match by the composed instruction; prediction lines by
    (instruction, input); both ignoring surrounding whitespace. For AlpacaEval
    files the eval set's data set is the most common ``dataset`` among the
    entries that match a prompt: entries with another ``dataset`` are ignored,
    and entries of that data set (or without one) that match no prompt are an
    error, as are two outputs for one prompt.
    """
    index: dict[Any, int] = {}
    for position, prompt in enumerate(prompts):
        key: Any
        if outputs.format is OutputFormat.ALPACA_EVAL:
            key = alpaca_key(compose_instruction(prompt.instruction.strip(), prompt.input.strip()))
        else:
            key = prediction_key(prompt.instruction, prompt.input)
        if key in index:
            raise InputError(
                f"Eval set '{eval_set}' has two prompts with the same text ({prompts[index[key]].external_id} and "
                f"{prompt.external_id}), so outputs cannot be matched to them. Nothing was imported."
            )
        index[key] = position

    found: list[tuple[OutputRecord, int | None]] = []
    for record in outputs.records:
        if record.input is None:
            found.append((record, index.get(alpaca_key(record.instruction))))
        else:
            found.append((record, index.get(prediction_key(record.instruction, record.input))))

    result = Match()
    if outputs.format is OutputFormat.ALPACA_EVAL:
        datasets = Counter(record.dataset for record, slot in found if slot is not None)
        if datasets:
            # most_common keeps first-seen order on ties, so the choice is deterministic.
            result.dataset = datasets.most_common(1)[0][0]
        if result.dataset is not None:
            kept: list[tuple[OutputRecord, int | None]] = []
            for record, slot in found:
                if record.dataset is not None and record.dataset != result.dataset:
                    result.ignored[record.dataset] += 1
                else:
                    kept.append((record, slot))
            found = kept

    unmatched = [record for record, slot in found if slot is None]
    if unmatched and len(unmatched) == len(found):
        raise InputError(
            f"None of the {len(found)} outputs in {path} matches a prompt of eval set '{eval_set}' "
            f"(for example {listing([f'{r.where}: {_excerpt(r.instruction)}' for r in unmatched[:3]])}). "
            "Is it the right eval set? Nothing was imported."
        )
    if unmatched:
        described = [f"{r.where}: {_excerpt(r.instruction)}" for r in unmatched]
        scope = f" of data set '{result.dataset}'" if result.dataset else ""
        raise InputError(
            f"{len(unmatched)} output{'s' if len(unmatched) != 1 else ''}{scope} in {path} "
            f"match{'es' if len(unmatched) == 1 else ''} no prompt of eval "
            f"set '{eval_set}': {listing(described)}. Every output must belong to a prompt (AlpacaEval entries "
            "by instruction, a blank line and the input; predictions by instruction and input). Nothing was imported."
        )

    where_of: dict[int, str] = {}
    duplicates: list[str] = []
    for record, slot in found:
        assert slot is not None
        if slot in where_of:
            duplicates.append(f"{prompts[slot].external_id} ({where_of[slot]} and {record.where})")
            continue
        where_of[slot] = record.where
        result.outputs[slot] = record
    if duplicates:
        raise InputError(
            f"{path} has two outputs for the same prompt: {listing(duplicates)}. Each prompt takes one output "
            "per model; remove the extra entries. Nothing was imported."
        )
    return result


def dataset_label(*, name: str, external_ids: Sequence[str]) -> str:
    """The AlpacaEval ``dataset`` value for an eval set.

    "selfinstruct" for the Self-Instruct user-oriented set (every id is
    ``user_oriented_task_N``), as AlpacaEval names it; otherwise the eval set's name.
    """
    if external_ids and all(SELF_INSTRUCT_ID.fullmatch(external_id) for external_id in external_ids):
        return SELF_INSTRUCT_DATASET
    return name
