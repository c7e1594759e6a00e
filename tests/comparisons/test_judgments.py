"""An automatic judge beside the raters: `import_judgments` reads AlpacaEval annotations, matches them to the
campaign's comparisons by instruction and texts, reports what matched nothing and refuses bad files whole; the
results page and the exports then show the judge's win rates, agreement and kappa, and the worst disagreements."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from comparisons import services
from comparisons.models import Campaign, Judgment
from comparisons.results import export_stream
from generation.models import Prompt, Response
from tests.comparisons.factories import MODEL_NAMES, build_campaign, invite_rater, make_user

pytestmark = pytest.mark.django_db
ZEBRA, QUOKKA = MODEL_NAMES
# The raters' verdict per prompt position (k = 1) and the judge's: they differ on prompt 4 only.
RATERS = {0: ZEBRA, 1: ZEBRA, 2: "tie", 3: ZEBRA, 4: QUOKKA, 5: ZEBRA}
JUDGE = {0: ZEBRA, 1: ZEBRA, 2: "tie", 3: ZEBRA, 4: ZEBRA, 5: ZEBRA}


def annotations(campaign: Campaign, verdicts: dict[int, str], *, swap: set[int] = frozenset()) -> list[dict]:
    """AlpacaEval annotations of the campaign's pairs: zebra as output_1, except on the prompts in ``swap``."""
    items = []
    for prompt in Prompt.objects.filter(eval_set=campaign.eval_set).order_by("position"):
        texts = {r.model.name: r.text for r in Response.objects.filter(prompt=prompt).select_related("model")}
        first, second = (QUOKKA, ZEBRA) if prompt.position in swap else (ZEBRA, QUOKKA)
        verdict = verdicts[prompt.position]
        items.append(
            {
                "instruction": prompt.composed_instruction,
                # Stray whitespace and CRLF line endings do not stop a match (texts compare as served).
                "output_1": "  " + texts[first].replace("\n", "\r\n"),
                "output_2": texts[second] + "\n",
                "generator_1": first,
                "generator_2": second,
                "preference": 1.5 if verdict == "tie" else (1 if verdict == first else 2),
                "annotator": "alpaca_eval_gpt4",
            }
        )
    return items


def write(tmp_path: Path, value, name: str = "annotations.json") -> Path:
    path = tmp_path / name
    path.write_text(value if isinstance(value, str) else json.dumps(value), encoding="utf-8")
    return path


def run_import(path: Path, *, campaign: str = "judged", judge: str = "gpt4") -> str:
    out = io.StringIO()
    call_command("import_judgments", str(path), "--campaign", campaign, "--judge", judge, stdout=out)
    return out.getvalue()


@pytest.fixture
def campaign() -> Campaign:
    campaign = build_campaign(slug="judged", n_prompts=6, k=1)
    rater = invite_rater(campaign)
    while (assignment := services.assignment_next(rater=rater, campaign=campaign)) is not None:
        comparison = assignment.comparison
        verdict = RATERS[comparison.prompt.position]
        left = comparison.response_a if assignment.left_is_a else comparison.response_b
        choice = verdict if verdict == "tie" else ("A" if left.model.name == verdict else "B")
        services.vote_cast(rater=rater, token=assignment.token, choice=choice)
    return campaign


def test_import_matches_by_instruction_and_texts_in_either_order_and_reports_the_unmatched(campaign, tmp_path):
    items = annotations(campaign, JUDGE, swap={1, 4})
    items.append({**items[0], "instruction": "A task this campaign never had", "generator_1": "gpt4"})
    output = run_import(write(tmp_path, items))
    assert "Imported 6 verdicts of judge 'gpt4' (7 items in the file)." in output
    assert "1 item matched no comparison of the campaign and was left out: entry 7 (gpt4 vs quokka-llm-13b): " in output
    assert "'A task this campaign never had'" in output
    for judgment in Judgment.objects.select_related("comparison__response_a__model", "comparison__prompt"):
        # Stored on the comparison's own orientation: 1 = its response A is better.
        winner = JUDGE[judgment.comparison.prompt.position]
        expected = 1.5 if winner == "tie" else (1.0 if judgment.comparison.response_a.model.name == winner else 2.0)
        assert judgment.preference == expected, judgment.comparison.prompt.position
        assert judgment.annotator == "alpaca_eval_gpt4"

    again = run_import(write(tmp_path, items))
    assert "They replace the judge's 6 earlier verdicts on this campaign." in again
    assert Judgment.objects.count() == 6


BAD_FILES = [
    ("{not json", "is not valid JSON: Expecting property name enclosed in double quotes at line 1, column 2"),
    ({"instruction": "x"}, "holds an object, but an annotations file is a JSON list"),
    ([], "is an empty list"),
    (["text"], "entry 1: expected an object"),
    ([{"instruction": "x", "output_1": "a", "preference": 1}], "entry 1: the field 'output_2' is missing"),
    ([{"instruction": "x", "output_1": "a", "output_2": "b", "preference": 3}], "'preference' is 3; it must be"),
    ([{"instruction": "x", "output_1": "a", "output_2": "b", "preference": None}], "'preference' is missing or null"),
    ([{"instruction": "x", "output_1": "a", "output_2": "b", "preference": True}], "'preference' is True"),
    ([{"instruction": "x", "output_1": 5, "output_2": "b", "preference": 1}], "'output_1' is a number"),
    ('[{"instruction": "x", "output_1": "\\ud800", "output_2": "b", "preference": 1}]', "lone surrogate (\\ud800)"),
    ([{"instruction": "x", "output_1": "a", "output_2": "b", "preference": 1, "annotator": "a\x00"}], "NUL"),
    ([{"instruction": "x", "output_1": "a", "output_2": "b", "preference": 1}], "None of the 1 annotations"),
]


@pytest.mark.parametrize(("content", "message"), BAD_FILES)
def test_a_bad_file_gets_one_clear_paragraph_and_changes_nothing(campaign, tmp_path, content, message):
    run_import(write(tmp_path, annotations(campaign, JUDGE), "good.json"))
    before = sorted(Judgment.objects.values_list("pk", "preference"))
    with pytest.raises(CommandError) as error:
        run_import(write(tmp_path, content))
    text = str(error.value)
    assert message in text and "Nothing was imported." in text and "\n" not in text
    assert sorted(Judgment.objects.values_list("pk", "preference")) == before


def test_two_items_on_one_comparison_an_unknown_campaign_and_a_blank_judge_are_refused(campaign, tmp_path):
    items = annotations(campaign, JUDGE)
    with pytest.raises(CommandError, match="entry 1 and entry 7 judge the same comparison"):
        run_import(write(tmp_path, [*items, items[0]]))
    with pytest.raises(CommandError, match="No campaign with slug 'nope'; nothing was imported."):
        run_import(write(tmp_path, items), campaign="nope")
    with pytest.raises(CommandError, match="The judge needs a name"):
        run_import(write(tmp_path, items), judge="  ")
    with pytest.raises(CommandError, match="does not exist"):
        run_import(tmp_path / "missing.json")
    assert Judgment.objects.count() == 0


def test_results_page_and_exports_set_the_judge_beside_the_raters(campaign, tmp_path, client):
    run_import(write(tmp_path, annotations(campaign, JUDGE)))
    analyst = make_user("ana")
    services.user_make_analyst(user=analyst)
    client.force_login(analyst)
    page = client.get(reverse("comparisons:results", args=[campaign.slug])).content.decode()
    section = page.split('id="judges"')[1].split("</section>")[0]
    # quokka (alphabetically first) against zebra: raters 25.0% (1 win, 1 tie of 6), the judge 8.3% (the tie only);
    # they agree on 5 of 6 comparisons, kappa (5/6 - 21/36) / (1 - 21/36) = 0.60.
    row = section.split("<tbody>")[1].split("</tr>")[0]
    cells = [cell.split("</td>")[0] for cell in row.split('">')[1:]]
    assert row.strip().startswith(f"<tr><td>{QUOKKA}</td><td>{ZEBRA}</td>")
    assert cells[0:3] == ["6", "25.0", "8.3"]
    assert cells[4:6] == ["6", "83.3"] and cells[7] == "0.60"
    # Agreements are not listed: only prompt 4, where the rater picked quokka and the judge zebra.
    worst = section.split("Where the judge and the raters disagree most")[1].split("<tbody>")[1].split("</tbody>")[0]
    assert worst.count("<tr>") == 1
    assert "user_oriented_task_4" in worst and f'<td>{ZEBRA}</td><td class="num">1.00</td>' in worst

    judges = list(csv.DictReader(io.StringIO("".join(export_stream(campaign=campaign, kind="judges")))))
    assert len(judges) == 1
    assert judges[0]["judge"] == "gpt4" and judges[0]["model"] == QUOKKA
    assert float(judges[0]["agreement"]) == pytest.approx(500 / 6)
    assert float(judges[0]["kappa"]) == pytest.approx(0.6)
    assert float(judges[0]["agreement_ci_low"]) <= 500 / 6 <= float(judges[0]["agreement_ci_high"])
    rows = list(csv.DictReader(io.StringIO("".join(export_stream(campaign=campaign, kind="judgments")))))
    assert len(rows) == 6
    gaps = {row["prompt_id"]: float(row["disagreement"]) for row in rows}
    assert gaps.pop("user_oriented_task_4") == 1.0 and set(gaps.values()) == {0.0}
    for kind in ("judges", "judgments"):
        response = client.get(reverse("comparisons:results_export", args=[campaign.slug, kind]))
        assert response.status_code == 200 and response["Content-Disposition"].endswith(f'judged-{kind}.csv"')
