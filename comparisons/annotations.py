"""Reading an automatic judge's AlpacaEval annotations file and matching it to a campaign's comparisons.

Pure Python (no Django). The file is AlpacaEval's annotations format: a JSON list of objects with
``instruction`` (the instruction, a blank line and the input when there is one), ``output_1``, ``output_2``,
``generator_1``, ``generator_2``, ``preference`` (1 = output_1 is better, 2 = output_2 is better, values
between for ties: 1.5) and ``annotator``. Items are matched to comparisons by the instruction and the two
texts (either order), compared in their canonical served form so stray whitespace or line endings do not
stop a match. Every problem raises `generation.errors.InputError` with one paragraph.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comparisons.served_text import served_text
from generation.errors import InputError
from generation.formats import json_type_name, listing, read_text
from generation.prompting import compose_instruction

NOTHING = "Nothing was imported."


@dataclass(frozen=True)
class Annotation:
    """One item of the file: where it is (``entry N``), its texts and its preference."""

    where: str
    instruction: str
    output_1: str
    output_2: str
    generator_1: str
    generator_2: str
    preference: float
    annotator: str


@dataclass(frozen=True)
class ComparisonKey:
    """What matching needs to know of one comparison of the campaign."""

    comparison_id: int
    instruction: str
    input: str
    text_a: str
    text_b: str


@dataclass
class JudgmentMatch:
    """Matched items as comparison id -> (preference oriented to the comparison: 1 = response A, annotator),
    and the items that matched no comparison."""

    matched: dict[int, tuple[float, str]] = field(default_factory=dict)
    unmatched: list[Annotation] = field(default_factory=list)


def _text(entry: dict[str, Any], name: str, *, path: Path, where: str, required: bool = True) -> str:
    if name not in entry or entry[name] is None:
        if required:
            raise InputError(f"{path}, {where}: the field '{name}' is missing. {NOTHING}")
        return ""
    value = entry[name]
    if not isinstance(value, str):
        raise InputError(
            f"{path}, {where}: the field '{name}' is {json_type_name(value)}, expected a string. {NOTHING}"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON may escape half of a surrogate pair ("\ud800"), which is no text
        raise InputError(
            f"{path}, {where}: the field '{name}' contains a lone surrogate (\\u{ord(value[exc.start]):04x}) at "
            f"character {exc.start}, which is not text. Fix the file. {NOTHING}"
        ) from None
    if "\x00" in value:  # PostgreSQL text cannot hold NUL
        raise InputError(f"{path}, {where}: the field '{name}' contains a NUL (\\u0000) character. {NOTHING}")
    return value


def _preference(entry: dict[str, Any], *, path: Path, where: str) -> float:
    value = entry.get("preference")
    if "preference" not in entry or value is None:
        raise InputError(
            f"{path}, {where}: the field 'preference' is missing or null; it must be 1 (output_1 is better), "
            f"2 (output_2 is better) or a number between them for a tie (1.5). {NOTHING}"
        )
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not 1 <= value <= 2:
        raise InputError(
            f"{path}, {where}: 'preference' is {value!r}; it must be a number from 1 (output_1 is better) to "
            f"2 (output_2 is better), 1.5 for a tie. {NOTHING}"
        )
    return float(value)


def parse_annotations(path: Path) -> list[Annotation]:
    """Read and check an AlpacaEval annotations file; raises InputError on the first problem."""
    text = read_text(path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}. An annotations file "
            f"is a JSON list of {{instruction, output_1, output_2, preference, …}} objects. {NOTHING}"
        ) from None
    if not isinstance(value, list):
        raise InputError(
            f"{path} holds {json_type_name(value)}, but an annotations file is a JSON list of {{instruction, output_1, "
            f"output_2, generator_1, generator_2, preference, annotator}} objects (AlpacaEval's format). {NOTHING}"
        )
    if not value:
        raise InputError(f"{path} is an empty list: there are no annotations to import. {NOTHING}")
    items = []
    for number, entry in enumerate(value, start=1):
        where = f"entry {number}"
        if not isinstance(entry, dict):
            raise InputError(
                f"{path}, {where}: expected an object {{instruction, output_1, output_2, preference, …}}, found "
                f"{json_type_name(entry)}. {NOTHING}"
            )
        items.append(
            Annotation(
                where=where,
                instruction=_text(entry, "instruction", path=path, where=where),
                output_1=_text(entry, "output_1", path=path, where=where),
                output_2=_text(entry, "output_2", path=path, where=where),
                generator_1=_text(entry, "generator_1", path=path, where=where, required=False),
                generator_2=_text(entry, "generator_2", path=path, where=where, required=False),
                preference=_preference(entry, path=path, where=where),
                annotator=_text(entry, "annotator", path=path, where=where, required=False)[:200],
            )
        )
    return items


def _excerpt(text: str, limit: int = 50) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def describe(item: Annotation) -> str:
    """How an unmatched item is named in reports: its entry number, generators and instruction."""
    generators = f" ({item.generator_1} vs {item.generator_2})" if item.generator_1 or item.generator_2 else ""
    return f"{item.where}{generators}: {_excerpt(item.instruction)}"


def match_annotations(
    items: Sequence[Annotation], *, comparisons: Sequence[ComparisonKey], path: Path
) -> JudgmentMatch:
    """Pair each item with the comparison that has its instruction and both its texts (in either order).

    An item whose two texts are the same is matched when a comparison has them, oriented as a tie would be.
    Two items for one comparison are refused (the judge gives one verdict per comparison), and so is a file
    none of whose items matches."""
    index: dict[tuple[str, str, str], tuple[int, bool]] = {}
    for c in comparisons:
        prompt = compose_instruction(c.instruction.strip(), c.input.strip()).strip()
        a, b = served_text(c.text_a), served_text(c.text_b)
        index[(prompt, a, b)] = (c.comparison_id, False)
        index.setdefault((prompt, b, a), (c.comparison_id, True))
    result = JudgmentMatch()
    first_item: dict[int, str] = {}
    for item in items:
        key = (item.instruction.strip(), served_text(item.output_1), served_text(item.output_2))
        found = index.get(key)
        if found is None:
            result.unmatched.append(item)
            continue
        comparison_id, swapped = found
        if comparison_id in first_item:
            raise InputError(
                f"{path}: {first_item[comparison_id]} and {item.where} judge the same comparison (same instruction "
                "and answers). A judge gives one verdict per comparison: import each annotator's file under its "
                f"own --judge name. {NOTHING}"
            )
        first_item[comparison_id] = item.where
        # Stored on the comparison's own orientation: 1 = its response A is better.
        preference = 3.0 - item.preference if swapped else item.preference
        result.matched[comparison_id] = (preference, item.annotator)
    if not result.matched:
        raise InputError(
            f"None of the {len(items)} annotations in {path} matches a comparison of the campaign (by instruction "
            f"and both answers), for example {listing([describe(i) for i in result.unmatched[:3]])}. Is it the "
            f"right campaign, and were these the outputs the campaign compares? {NOTHING}"
        )
    return result
