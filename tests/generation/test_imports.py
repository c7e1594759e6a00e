"""The data commands on the real fixture files: import_evalset, import_outputs, export_outputs.

Every bad input must fail with a one-paragraph CommandError (non-zero exit and
no traceback from the command line) and leave the database as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from generation.models import EvalSet, ModelEntry, Prompt, Response
from tests.factories import ModelEntryFactory, PromptFactory, ResponseFactory
from tests.worker import database_url_for_tests

FIXTURES = Path(settings.BASE_DIR) / "fixtures"
EVAL_SET_FILE = FIXTURES / "self_instruct" / "user_oriented_instructions.jsonl"
ALPACA_7B_FILE = FIXTURES / "alpaca_eval" / "alpaca-7b.json"
DAVINCI_ALPACA_EVAL_FILE = FIXTURES / "alpaca_eval" / "text_davinci_003.json"
DAVINCI_PREDICTIONS_FILE = FIXTURES / "self_instruct" / "predictions" / "text-davinci-003.jsonl"
EVAL_SET = "self-instruct"

pytestmark = pytest.mark.django_db


def run(*args: object, **options: object) -> str:
    out = StringIO()
    call_command(*[str(a) for a in args], stdout=out, **options)
    return out.getvalue()


def row_counts() -> dict[str, int]:
    return {
        "eval sets": EvalSet.objects.count(),
        "prompts": Prompt.objects.count(),
        "models": ModelEntry.objects.count(),
        "responses": Response.objects.count(),
    }


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def alpaca_entries(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def texts_of(model_name: str) -> list[str]:
    return list(
        Response.objects.filter(model__name=model_name, prompt__eval_set__name=EVAL_SET)
        .order_by("prompt__position")
        .values_list("text", flat=True)
    )


@pytest.fixture
def eval_set() -> EvalSet:
    run("import_evalset", EVAL_SET_FILE, name=EVAL_SET)
    return EvalSet.objects.get(name=EVAL_SET)


# --- import_evalset on the real file -------------------------------------------------------------


def test_import_evalset_keeps_all_252_tasks_in_order_with_categories():
    message = run("import_evalset", EVAL_SET_FILE, name=EVAL_SET)

    assert "Imported 252 prompts into eval set 'self-instruct' (71 categories)" in message
    tasks = read_jsonl(EVAL_SET_FILE)
    prompts = list(Prompt.objects.filter(eval_set__name=EVAL_SET).order_by("position"))
    assert len(prompts) == 252
    assert [p.external_id for p in prompts] == [f"user_oriented_task_{i}" for i in range(252)]
    assert prompts[0].category == "Grammarly"
    for prompt, task in zip(prompts, tasks, strict=True):
        assert prompt.instruction == task["instruction"]
        assert prompt.input == task["instances"][0]["input"]
        assert prompt.reference_output == task["instances"][0]["output"]
        assert prompt.category == task["motivation_app"]
    assert sum(1 for p in prompts if not p.input) == 44


def test_import_evalset_twice_changes_nothing(eval_set):
    before = list(Prompt.objects.order_by("position").values_list("pk", "external_id", "instruction"))

    message = run("import_evalset", EVAL_SET_FILE, name=EVAL_SET)

    assert message.strip() == "Eval set 'self-instruct' already has these 252 prompts, nothing changed."
    assert list(Prompt.objects.order_by("position").values_list("pk", "external_id", "instruction")) == before


def test_import_evalset_refuses_a_different_file_under_an_existing_name(eval_set, tmp_path):
    rows = read_jsonl(EVAL_SET_FILE)
    rows[3]["instruction"] += " Be brief."
    counts = row_counts()

    with pytest.raises(
        CommandError, match=r"already exists with 252 prompts.*first difference: prompt user_oriented_task_3"
    ):
        run("import_evalset", write_jsonl(tmp_path / "changed.jsonl", rows), name=EVAL_SET)

    assert row_counts() == counts


# --- import_outputs on the real files ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "model"),
    [(ALPACA_7B_FILE, "alpaca-7b"), (DAVINCI_ALPACA_EVAL_FILE, "text_davinci_003")],
)
def test_import_alpaca_eval_outputs_takes_the_252_selfinstruct_entries_and_ignores_553(eval_set, path, model):
    message = run("import_outputs", path, model=model, evalset=EVAL_SET)

    assert f"Imported 252 outputs (AlpacaEval model outputs) for model '{model}'" in message
    assert "ignored 553 entries of other data sets (helpful_base 129, koala 156, oasst 188, vicuna 80)" in message
    source = [e["output"] for e in alpaca_entries(path) if e["dataset"] == "selfinstruct"]
    assert texts_of(model) == source
    entry = ModelEntry.objects.get(name=model)
    assert (entry.kind, entry.status) == (ModelEntry.Kind.IMPORTED, ModelEntry.Status.READY)
    assert set(Response.objects.filter(model=entry).values_list("finish_reason", flat=True)) == {"imported"}


def test_import_self_instruct_predictions_matches_by_instruction_and_input(eval_set):
    message = run("import_outputs", DAVINCI_PREDICTIONS_FILE, model="text-davinci-003", evalset=EVAL_SET)

    assert "Imported 252 outputs (Self-Instruct predictions) for model 'text-davinci-003'" in message
    # Stored exactly as written (each response starts with a space), although 18
    # lines carry extra whitespace around their instruction or input.
    assert texts_of("text-davinci-003") == [row["response"] for row in read_jsonl(DAVINCI_PREDICTIONS_FILE)]


def test_reimporting_the_same_outputs_is_a_no_op(eval_set):
    run("import_outputs", ALPACA_7B_FILE, model="alpaca-7b", evalset=EVAL_SET)
    before = list(Response.objects.order_by("pk").values_list("pk", "prompt_id", "text", "created_at"))

    message = run("import_outputs", ALPACA_7B_FILE, model="alpaca-7b", evalset=EVAL_SET)

    assert message.startswith("252 outputs already present, nothing changed")
    assert list(Response.objects.order_by("pk").values_list("pk", "prompt_id", "text", "created_at")) == before


def test_import_adds_only_what_is_missing(eval_set, tmp_path):
    rows = read_jsonl(DAVINCI_PREDICTIONS_FILE)
    run("import_outputs", write_jsonl(tmp_path / "first.jsonl", rows[:100]), model="davinci", evalset=EVAL_SET)

    message = run("import_outputs", DAVINCI_PREDICTIONS_FILE, model="davinci", evalset=EVAL_SET)

    assert "Imported 152 outputs" in message
    assert "100 outputs already present" in message
    assert texts_of("davinci") == [row["response"] for row in rows]


def test_import_reports_prompts_left_without_output(eval_set, tmp_path):
    rows = read_jsonl(DAVINCI_PREDICTIONS_FILE)[:10]

    message = run("import_outputs", write_jsonl(tmp_path / "ten.jsonl", rows), model="davinci", evalset=EVAL_SET)

    assert "Imported 10 outputs" in message
    assert "242 prompts of the eval set have no output from this model" in message


def test_import_refuses_to_overwrite_different_texts(eval_set):
    run("import_outputs", DAVINCI_PREDICTIONS_FILE, model="text-davinci-003", evalset=EVAL_SET)
    before = list(Response.objects.order_by("pk").values_list("pk", "text"))
    counts = row_counts()

    with pytest.raises(CommandError) as caught:
        run("import_outputs", DAVINCI_ALPACA_EVAL_FILE, model="text-davinci-003", evalset=EVAL_SET)

    message = str(caught.value)
    assert "already has different responses on eval set 'self-instruct' for 252 of these prompts" in message
    assert "user_oriented_task_0; user_oriented_task_1" in message
    assert "and 247 more" in message
    assert row_counts() == counts
    assert list(Response.objects.order_by("pk").values_list("pk", "text")) == before


def test_import_refuses_a_checkpoint_model(eval_set):
    ModelEntryFactory(name="my-checkpoint", kind=ModelEntry.Kind.CHECKPOINT)
    counts = row_counts()

    with pytest.raises(CommandError, match="Model 'my-checkpoint' is a checkpoint"):
        run("import_outputs", ALPACA_7B_FILE, model="my-checkpoint", evalset=EVAL_SET)

    assert row_counts() == counts


def test_import_alpaca_eval_without_dataset_fields_in_any_order(eval_set, tmp_path):
    # A hand-made model_outputs.json: only instruction and output, shuffled, with a byte-order mark.
    entries = [{"instruction": e["instruction"], "output": e["output"]} for e in _selfinstruct_entries()]
    path = tmp_path / "model_outputs.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(entries[::-1], ensure_ascii=False).encode("utf-8"))

    message = run("import_outputs", path, model="alpaca-7b", evalset=EVAL_SET)

    assert "Imported 252 outputs" in message
    assert "ignored" not in message
    assert texts_of("alpaca-7b") == [e["output"] for e in entries]


def test_import_alpaca_eval_without_dataset_fields_requires_every_entry_to_match(eval_set, tmp_path):
    entries = [{"instruction": e["instruction"], "output": e["output"]} for e in _selfinstruct_entries()]
    entries.insert(7, {"instruction": "Tell me a joke.", "output": "No."})

    with pytest.raises(CommandError, match=r"1 output in .* matches no prompt of eval set 'self-instruct': entry 8: "):
        run("import_outputs", write_json(tmp_path / "o.json", entries), model="alpaca-7b", evalset=EVAL_SET)

    assert Response.objects.count() == 0


def test_json_lines_predictions_saved_with_a_json_name_are_recognised(eval_set, tmp_path):
    path = tmp_path / "predictions.json"
    path.write_bytes(DAVINCI_PREDICTIONS_FILE.read_bytes())

    message = run("import_outputs", path, model="text-davinci-003", evalset=EVAL_SET)

    assert "Imported 252 outputs (Self-Instruct predictions)" in message


# --- export_outputs and round trips --------------------------------------------------------------


def test_export_reproduces_the_alpaca_eval_selfinstruct_entries_exactly(eval_set, tmp_path):
    run("import_outputs", ALPACA_7B_FILE, model="alpaca-7b", evalset=EVAL_SET)
    out = tmp_path / "model_outputs.json"

    message = run("export_outputs", "alpaca-7b", out, evalset=EVAL_SET)

    assert f"Wrote 252 outputs of model 'alpaca-7b' on eval set 'self-instruct' (dataset 'selfinstruct') to {out}" in (
        message
    )
    exported = json.loads(out.read_text(encoding="utf-8"))
    source = [e for e in alpaca_entries(ALPACA_7B_FILE) if e["dataset"] == "selfinstruct"]
    assert len(exported) == len(source) == 252
    provenance = {
        "source": "imported",
        "outputs_file": ALPACA_7B_FILE.name,
        "outputs_sha256": hashlib.sha256(ALPACA_7B_FILE.read_bytes()).hexdigest(),
        "format": "alpaca_eval",
    }
    for mine, theirs in zip(exported, source, strict=True):
        assert set(mine) == {"instruction", "output", "generator", "dataset", "generator_config"}
        for key in ("instruction", "output", "generator", "dataset"):
            assert mine[key].encode("utf-8") == theirs[key].encode("utf-8")
        assert mine["generator_config"] == provenance
    # Non-ASCII text is written as itself, not as \u escapes.
    raw = out.read_text(encoding="utf-8")
    non_ascii = next(ch for e in source for ch in e["output"] if ord(ch) > 127)
    assert non_ascii in raw
    assert raw.startswith("[\n  {\n")


def test_round_trip_predictions_export_then_import_gives_identical_texts(eval_set, tmp_path):
    run("import_outputs", DAVINCI_PREDICTIONS_FILE, model="text-davinci-003", evalset=EVAL_SET)
    out = tmp_path / "davinci.json"
    run("export_outputs", "text-davinci-003", out, evalset=EVAL_SET)

    message = run("import_outputs", out, model="davinci-copy", evalset=EVAL_SET)
    again = run("import_outputs", out, model="text-davinci-003", evalset=EVAL_SET)

    assert "Imported 252 outputs (AlpacaEval model outputs) for model 'davinci-copy'" in message
    assert texts_of("davinci-copy") == texts_of("text-davinci-003")
    assert texts_of("davinci-copy") == [row["response"] for row in read_jsonl(DAVINCI_PREDICTIONS_FILE)]
    assert again.startswith("252 outputs already present, nothing changed")


def test_export_of_generated_responses_in_prompt_order(tmp_path):
    model = ModelEntryFactory(name="tiny-llama", kind=ModelEntry.Kind.CHECKPOINT)
    first = PromptFactory(external_id="b", position=0, instruction="Add the numbers.", input="2 and 3")
    second = PromptFactory(eval_set=first.eval_set, external_id="a", position=1, instruction="Say hi.")
    PromptFactory(eval_set=first.eval_set, external_id="c", position=2, instruction="Not generated yet.")
    made_with = {"source": "generated", "checkpoint_sha256": "ab" * 32, "template": "chat", "temperature": 0.7}
    ResponseFactory(prompt=second, model=model, text="Hi! ✓", generator_config=made_with)
    ResponseFactory(prompt=first, model=model, text="5", generator_config=made_with)
    out = tmp_path / "out.json"

    message = run("export_outputs", "tiny-llama", out, evalset=first.eval_set.name)

    assert "Wrote 2 outputs" in message
    assert "1 prompts have no response yet and are not in the file" in message
    assert json.loads(out.read_text(encoding="utf-8")) == [
        {
            "instruction": "Add the numbers.\n\n2 and 3",
            "output": "5",
            "generator": "tiny-llama",
            "dataset": first.eval_set.name,
            "generator_config": made_with,
        },
        {
            "instruction": "Say hi.",
            "output": "Hi! ✓",
            "generator": "tiny-llama",
            "dataset": first.eval_set.name,
            "generator_config": made_with,
        },
    ]

    run("export_outputs", "tiny-llama", out, evalset=first.eval_set.name, dataset="my_set")

    assert {e["dataset"] for e in json.loads(out.read_text(encoding="utf-8"))} == {"my_set"}


def test_export_replaces_the_file_atomically_and_leaves_it_alone_on_error(eval_set, tmp_path):
    run("import_outputs", ALPACA_7B_FILE, model="alpaca-7b", evalset=EVAL_SET)
    out = tmp_path / "out.json"
    out.write_text("old contents", encoding="utf-8")

    run("export_outputs", "alpaca-7b", out, evalset=EVAL_SET)

    assert len(json.loads(out.read_text(encoding="utf-8"))) == 252
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]

    written = out.read_bytes()
    with pytest.raises(CommandError, match="There is no model named 'nobody'"):
        run("export_outputs", "nobody", out, evalset=EVAL_SET)
    assert out.read_bytes() == written


@pytest.mark.parametrize(
    ("model", "evalset", "out", "expected"),
    [
        (
            "alpaca-7b",
            "missing-set",
            "out.json",
            "There is no eval set named 'missing-set'. Known eval sets: 'self-instruct'",
        ),
        ("nobody", EVAL_SET, "out.json", "There is no model named 'nobody'"),
        ("empty-model", EVAL_SET, "out.json", "Model 'empty-model' has no responses on eval set 'self-instruct'"),
        ("alpaca-7b", EVAL_SET, "no/such/folder/out.json", "folder"),
        ("alpaca-7b", EVAL_SET, ".", "is a directory"),
    ],
)
def test_export_bad_input(eval_set, tmp_path, model, evalset, out, expected):
    run("import_outputs", ALPACA_7B_FILE, model="alpaca-7b", evalset=EVAL_SET)
    ModelEntryFactory(name="empty-model", kind=ModelEntry.Kind.IMPORTED)

    with pytest.raises(CommandError, match=expected):
        run("export_outputs", model, tmp_path / out, evalset=evalset)

    assert sorted(p.name for p in tmp_path.iterdir()) == []


# --- import_outputs: bad input -------------------------------------------------------------------


def _selfinstruct_entries() -> list[dict]:
    return [e for e in alpaca_entries(ALPACA_7B_FILE) if e["dataset"] == "selfinstruct"]


def _bad_outputs(kind: str, tmp_path: Path) -> tuple[Path, list[str]]:
    """A bad outputs file of the given kind, and fragments its error message must contain."""
    entries = alpaca_entries(ALPACA_7B_FILE)
    rows = read_jsonl(DAVINCI_PREDICTIONS_FILE)
    if kind == "missing file":
        return tmp_path / "nothere.json", ["nothere.json does not exist"]
    if kind == "directory":
        return tmp_path, ["is a directory, not a file"]
    if kind == "not utf-8":
        path = tmp_path / "latin1.json"
        path.write_bytes('[{"instruction": "Café", "output": "x"}]'.encode("latin-1"))
        return path, ["is not UTF-8 text", "0xe9 at position 21"]
    if kind == "invalid json":
        path = tmp_path / "broken.json"
        path.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c" "output": "d"}\n]\n')
        return path, ["is not valid JSON", "Expecting ',' delimiter at line 3, column 23"]
    if kind == "invalid jsonl":
        path = tmp_path / "broken.jsonl"
        text = DAVINCI_PREDICTIONS_FILE.read_text(encoding="utf-8").splitlines()
        text[6] = text[6][:-1]  # drop the closing brace of line 7
        path.write_text("\n".join(text) + "\n", encoding="utf-8")
        return path, ["broken.jsonl, line 7: not valid JSON", "at column"]
    if kind == "missing output field":
        del entries[1]["output"]
        return write_json(tmp_path / "o.json", entries), ["entry 2: the field 'output' is missing"]
    if kind == "missing instruction field":
        del entries[500]["instruction"]
        return write_json(tmp_path / "o.json", entries), ["entry 501: the field 'instruction' is missing"]
    if kind == "missing response field":
        del rows[4]["response"]
        return write_jsonl(tmp_path / "p.jsonl", rows), ["p.jsonl, line 5: the field 'response' is missing"]
    if kind == "output not a string":
        entries[3]["output"] = 42
        return write_json(tmp_path / "o.json", entries), ["entry 4: the field 'output' is a number, expected a string"]
    if kind == "entry not an object":
        entries[2] = "just text"
        return write_json(tmp_path / "o.json", entries), ["entry 3: expected an object", "found a string"]
    if kind == "empty file":
        path = tmp_path / "empty.json"
        path.write_text("  \n")
        return path, ["empty.json is empty"]
    if kind == "empty list":
        return write_json(tmp_path / "o.json", []), ["is an empty JSON list"]
    if kind == "top-level object":
        return write_json(tmp_path / "o.json", {"outputs": entries}), ["contains an object at the top level"]
    if kind == "top-level number":
        return write_json(tmp_path / "o.json", 42), ["contains a number at the top level"]
    if kind == "unknown eval set":
        return ALPACA_7B_FILE, ["There is no eval set named 'other-set'", "Known eval sets: 'self-instruct'"]
    if kind == "outputs matching no prompt":
        selfinstruct = [n for n, e in enumerate(entries) if e["dataset"] == "selfinstruct"]
        other = next(n for n, e in enumerate(entries) if e["dataset"] == "oasst")
        for number in (selfinstruct[2], selfinstruct[100], selfinstruct[200], other):
            entries[number]["instruction"] += " (edited)"
        # The edited oasst entry belongs to another data set: ignored, not reported.
        return write_json(tmp_path / "o.json", entries), [
            "3 outputs of data set 'selfinstruct' in",
            "match no prompt of eval set 'self-instruct': ",
            *(f"entry {n + 1}: " for n in (selfinstruct[2], selfinstruct[100], selfinstruct[200])),
        ]
    if kind == "many outputs matching no prompt":
        for row in rows[:8]:
            row["instruction"] = "Something else entirely. " + row["instruction"]
        return write_jsonl(tmp_path / "p.jsonl", rows), [
            "8 outputs in",
            "line 1: 'Something else entirely.",
            "line 5:",
            "and 3 more",
        ]
    if kind == "no output matches":
        others = [e for e in entries if e["dataset"] != "selfinstruct"]
        return write_json(tmp_path / "o.json", others), ["None of the 553 outputs", "Is it the right eval set?"]
    if kind == "two outputs for one prompt":
        first = _selfinstruct_entries()[0]
        entries.append(dict(first, output="A second answer."))
        return write_json(tmp_path / "o.json", entries), [
            "two outputs for the same prompt: user_oriented_task_0 (entry",
            "and entry 806)",
        ]
    if kind == "two prediction lines for one prompt":
        rows.append(dict(rows[5], response=" Another answer."))
        return write_jsonl(tmp_path / "p.jsonl", rows), [
            "two outputs for the same prompt: user_oriented_task_5 (line 6 and line 253)"
        ]
    raise AssertionError(kind)


BAD_OUTPUTS = [
    "missing file",
    "directory",
    "not utf-8",
    "invalid json",
    "invalid jsonl",
    "missing output field",
    "missing instruction field",
    "missing response field",
    "output not a string",
    "entry not an object",
    "empty file",
    "empty list",
    "top-level object",
    "top-level number",
    "unknown eval set",
    "outputs matching no prompt",
    "many outputs matching no prompt",
    "no output matches",
    "two outputs for one prompt",
    "two prediction lines for one prompt",
]


@pytest.mark.parametrize("kind", BAD_OUTPUTS)
def test_import_outputs_bad_input_changes_nothing(eval_set, tmp_path, kind):
    # An earlier import of another model must survive untouched, and the new model must not appear.
    run("import_outputs", DAVINCI_PREDICTIONS_FILE, model="text-davinci-003", evalset=EVAL_SET)
    path, fragments = _bad_outputs(kind, tmp_path)
    evalset = "other-set" if kind == "unknown eval set" else EVAL_SET
    counts = row_counts()

    with pytest.raises(CommandError) as caught:
        run("import_outputs", path, model="alpaca-7b", evalset=evalset)

    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message
    assert "\n" not in message  # one paragraph
    assert row_counts() == counts
    assert not ModelEntry.objects.filter(name="alpaca-7b").exists()


# --- import_evalset: bad input -------------------------------------------------------------------


def _bad_evalset(kind: str, tmp_path: Path) -> tuple[Path, list[str]]:
    rows = read_jsonl(EVAL_SET_FILE)
    path = tmp_path / "tasks.jsonl"
    if kind == "missing file":
        return tmp_path / "nothere.jsonl", ["nothere.jsonl does not exist"]
    if kind == "not utf-8":
        path.write_bytes(b'{"id": "x", "instruction": "\xff"}\n')
        return path, ["is not UTF-8 text", "0xff"]
    if kind == "invalid json":
        text = EVAL_SET_FILE.read_text(encoding="utf-8").splitlines()
        text[41] = text[41].replace('"instruction":', '"instruction"', 1)
        path.write_text("\n".join(text) + "\n", encoding="utf-8")
        return path, ["tasks.jsonl, line 42: not valid JSON (Expecting ':' delimiter at column"]
    if kind == "missing instruction":
        del rows[9]["instruction"]
        return write_jsonl(path, rows), ["line 10 (id user_oriented_task_9): the field 'instruction' is missing"]
    if kind == "missing id":
        del rows[0]["id"]
        return write_jsonl(path, rows), ["line 1: the field 'id' is missing"]
    if kind == "missing instances":
        del rows[2]["instances"]
        return write_jsonl(path, rows), ["line 3 (id user_oriented_task_2): the field 'instances' is missing"]
    if kind == "empty instances":
        rows[2]["instances"] = []
        return write_jsonl(path, rows), ["'instances' must be a non-empty list", "(empty)"]
    if kind == "missing input":
        del rows[7]["instances"][0]["input"]
        return write_jsonl(path, rows), ["line 8 (id user_oriented_task_7), instances[0]: the field 'input' is missing"]
    if kind == "category not a string":
        rows[7]["motivation_app"] = ["Gmail"]
        return write_jsonl(path, rows), [
            "line 8 (id user_oriented_task_7): the field 'motivation_app' is a list, expected a string"
        ]
    if kind == "line not an object":
        rows[1] = ["not", "an", "object"]  # type: ignore[call-overload]
        return write_jsonl(path, rows), ["line 2: expected a JSON object, found a list"]
    if kind == "duplicate id":
        rows[20]["id"] = rows[3]["id"]
        return write_jsonl(path, rows), ["the id 'user_oriented_task_3' appears on line 4 and again on line 21"]
    if kind == "duplicate text":
        rows.append(dict(rows[0], id="copy_of_task_0"))
        return write_jsonl(path, rows), ["lines 1 and 253 have the same instruction and input"]
    if kind == "empty file":
        path.write_text("")
        return path, ["tasks.jsonl is empty"]
    if kind == "json list":
        return write_json(tmp_path / "tasks.json", rows), ["starts with a JSON list", "JSON Lines"]
    raise AssertionError(kind)


BAD_EVALSETS = [
    "missing file",
    "not utf-8",
    "invalid json",
    "missing instruction",
    "missing id",
    "missing instances",
    "empty instances",
    "missing input",
    "category not a string",
    "line not an object",
    "duplicate id",
    "duplicate text",
    "empty file",
    "json list",
]


@pytest.mark.parametrize("kind", BAD_EVALSETS)
def test_import_evalset_bad_input_changes_nothing(tmp_path, kind):
    path, fragments = _bad_evalset(kind, tmp_path)

    with pytest.raises(CommandError) as caught:
        run("import_evalset", path, name="new-set")

    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message
    assert "\n" not in message
    assert row_counts() == {"eval sets": 0, "prompts": 0, "models": 0, "responses": 0}


# --- the real command line -----------------------------------------------------------------------


def manage(*args: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url_for_tests()}
    return subprocess.run(  # noqa: S603 - fixed arguments
        [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), *[str(a) for a in args]],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.mark.django_db(transaction=True)
def test_command_line_exits_non_zero_without_traceback_and_changes_nothing(tmp_path):
    ok = manage("import_evalset", EVAL_SET_FILE, "--name", EVAL_SET)
    assert ok.returncode == 0, ok.stderr
    assert "Imported 252 prompts" in ok.stdout
    entries = alpaca_entries(ALPACA_7B_FILE)
    entries.append(dict(_selfinstruct_entries()[0], output="A second answer."))
    bad = write_json(tmp_path / "twice.json", entries)

    failed = manage("import_outputs", bad, "--model", "alpaca-7b", "--evalset", EVAL_SET)

    assert failed.returncode != 0
    assert "Traceback" not in failed.stderr
    assert "two outputs for the same prompt: user_oriented_task_0" in failed.stderr
    assert row_counts() == {"eval sets": 1, "prompts": 252, "models": 0, "responses": 0}

    imported = manage("import_outputs", ALPACA_7B_FILE, "--model", "alpaca-7b", "--evalset", EVAL_SET)
    assert imported.returncode == 0, imported.stderr
    assert "Imported 252 outputs" in imported.stdout
    out = tmp_path / "out.json"
    exported = manage("export_outputs", "alpaca-7b", "--evalset", EVAL_SET, out)
    assert exported.returncode == 0, exported.stderr
    assert len(json.loads(out.read_text(encoding="utf-8"))) == 252

    missing = manage("export_outputs", "alpaca-7b", "--evalset", "nope", tmp_path / "x.json")
    assert missing.returncode != 0
    assert "Traceback" not in missing.stderr
    assert "There is no eval set named 'nope'" in missing.stderr


def test_import_outputs_with_a_lone_surrogate_names_the_entry_and_imports_nothing(eval_set, tmp_path):
    entries = [{"instruction": e["instruction"], "output": e["output"]} for e in _selfinstruct_entries()]
    path = tmp_path / "model_outputs.json"
    entries[3]["output"] = "half a pair: \ud800"
    path.write_text(json.dumps(entries), encoding="utf-8")  # ASCII JSON: the surrogate is written as \ud800
    before = row_counts()
    with pytest.raises(CommandError, match=r"entry 4: the field 'output' contains a lone surrogate \(\\ud800\)"):
        run("import_outputs", path, model="alpaca-7b", evalset=EVAL_SET)
    assert row_counts() == before
