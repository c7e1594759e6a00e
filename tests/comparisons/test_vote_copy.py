"""The vote table and the votes export read with PostgreSQL's COPY are the ORM's, value for value and byte for byte.

The results page and the votes export read a campaign's votes with COPY on PostgreSQL (`comparisons.vote_copy`)
and through the ORM elsewhere (`selectors.vote_rows`). One campaign with everything the page treats apart
(attention checks, a rater who failed one, a rater flagged by hand, votes faster than MIN_SECONDS_PER_VOTE,
identity reports) and hostile texts (formula starts, quotes, commas, line breaks, carriage returns) is read
both ways. The tests that compare the two ways need PostgreSQL; the others run on SQLite too.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from comparisons import results, services, vote_copy
from comparisons.models import Assignment, Comparison, Rater, Vote
from comparisons.results import VotesCsv, campaign_analysis
from comparisons.selectors import ANALYSIS_COLUMNS, VOTE_COLUMNS, _iso, analysis_table, vote_table
from comparisons.stats import read_votes_csv
from tests.comparisons.factories import build_campaign

pytestmark = pytest.mark.django_db
needs_postgres = pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's")

RATIONALES = [
    "",
    "=1+1",
    "line one\nline two",
    "carriage\r\nreturn",
    'a "quoted", comma',
    "  spaces  ",
    "ünïcode ✓ 漢字",
    "-1.5",
    "\ttab first",
    "'=already quoted",
    "\\N",
    "NULL",
]
USERNAMES = ["-mallory", "+bob", "@eve", "=carol", "dave", "erin"]
# Stored seconds whose rounding to 3 places is delicate (ties, float representation), and the ISO time
# without microseconds.
SECONDS = [2.9995, 3.0, 0.0005, 12.3456, 1e-7, 59.9999, 2.675, 1.0005]
WHOLE_SECOND = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
# Routing probabilities whose text form is delicate (repeating binary fractions, the last digit, tiny), and
# none (a vote served without adaptive routing).
PROBABILITIES = [None, 1 / 3, 0.1, 1.0, 0.7000000000000001, 1e-5, None, 2 / 7]


def _voted(rater: Rater, comparison: Comparison, choice: str, draw: random.Random, index: int) -> Vote:
    """A voted assignment and its vote, written directly (as benchmarks/million_votes.sql does) so the study
    is quick to build and its times and seconds are chosen: some without microseconds, some near a
    rounding tie, some faster than MIN_SECONDS_PER_VOTE."""
    at = WHOLE_SECOND if index % 5 == 0 else datetime(2026, 3, 1, 12, 0, 0, 1 + index * 7919 % 999_999, tzinfo=UTC)
    left_is_a = draw.random() < 0.5
    assignment = Assignment.objects.create(
        comparison=comparison,
        rater=rater,
        left_is_a=left_is_a,
        status=Assignment.Status.VOTED,
        leased_until=at,
        closed_at=at,
        routing_probability=PROBABILITIES[index % len(PROBABILITIES)],
    )
    left, right = (comparison.response_a, comparison.response_b)[:: 1 if left_is_a else -1]
    winner = {"left": left, "right": right}.get(choice)
    return Vote(
        assignment=assignment,
        comparison=comparison,
        rater=rater,
        campaign_id=comparison.campaign_id,
        left_is_a=left_is_a,
        routing_probability=assignment.routing_probability,
        choice=choice,
        winner_response=winner,
        winner_model_id=winner.model_id if winner else None,
        rationale=RATIONALES[(index + draw.randrange(100)) % len(RATIONALES)],
        seconds=SECONDS[index % len(SECONDS)] if index % 3 else 4.0 + index / 7,
        submitted_at=at,
        identity_reported=draw.random() < 0.05,
    )


@pytest.fixture
def study():
    """Six raters on 9 pairs (3 models) and the attention checks: about 60 votes, with every case the page
    treats apart and hostile names and texts."""
    campaign = build_campaign(
        slug="copy-study",
        n_prompts=3,
        model_names=["zebra-model-7", "quokka-llm-13b", "=hostile-model"],
        k=20,
        attention_check_rate=1.0,
    )
    first = Comparison.objects.filter(campaign=campaign).order_by("pk").first()
    first.prompt.external_id = "@prompt"
    first.prompt.category = '=cat,"x"\r'
    first.prompt.save()
    raters = [Rater.objects.create(user=get_user_model().objects.create(username=name)) for name in USERNAMES]
    for rater in raters:
        rater.campaigns.add(campaign)
    # "-mallory" first gets an attention check (rate 1.0) and answers it wrongly: the service flags her.
    gold = services.assignment_next(rater=raters[0], campaign=campaign)
    assert gold is not None and gold.comparison.is_attention_check
    services.vote_cast(rater=raters[0], token=gold.token, choice="B" if gold.left_is_a else "A")
    draw = random.Random(7)
    votes = []
    comparisons = list(Comparison.objects.filter(campaign=campaign).select_related("response_a", "response_b"))
    for rater in raters:
        for comparison in comparisons:
            if comparison.pk == gold.comparison_id and rater == raters[0]:
                continue
            if comparison.is_attention_check:
                choice = "left" if draw.random() < 0.5 else "right"
            else:
                choice = draw.choice(["left", "right", "tie", "both_bad"])
            votes.append(_voted(rater, comparison, choice, draw, len(votes)))
    Vote.objects.bulk_create(votes)
    Rater.objects.filter(user__username="erin").update(flagged=True, flag_reason="by hand")
    return campaign


def test_the_vote_table_holds_every_real_vote_as_cast(study):
    """Either way (COPY on PostgreSQL): attention checks left out, the failed rater marked, times and
    seconds as the export writes them, hostile texts intact."""
    table = vote_table(campaign=study)
    real = Vote.objects.filter(assignment__comparison__campaign=study, assignment__comparison__is_attention_check=False)
    assert list(table.columns) == VOTE_COLUMNS
    assert len(table) == real.count() >= 50
    assert set(table.loc[table["attention_failed"], "rater"]) == {"-mallory"}
    assert set(table["rater"]) == set(USERNAMES)
    assert set(table["rationale"]) == set(RATIONALES)  # whitespace, quotes and line breaks kept
    assert "=hostile-model" in set(table["winner"]) and {"tie", "both_bad"} <= set(table["winner"])
    assert (table["submitted_at"] == "2026-03-01T12:00:00Z").sum() == real.filter(submitted_at=WHOLE_SECOND).count()
    assert table["submitted_at"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z").all()
    assert set(table["seconds"]) <= {round(s, 3) for s in SECONDS} | {round(4.0 + i / 7, 3) for i in range(300)}
    assert table["identity_reported"].any()
    stored = dict(real.values_list("pk", "assignment__routing_probability"))
    assert table["routing_probability"].isna().sum() == sum(p is None for p in stored.values())
    assert set(table["routing_probability"].dropna()) == {p for p in PROBABILITIES if p is not None}


@needs_postgres
def test_copy_and_orm_give_the_same_vote_table(study):
    by_copy = vote_table(campaign=study, use_copy=True)
    by_orm = vote_table(campaign=study, use_copy=False)
    pd.testing.assert_frame_equal(by_copy, by_orm)
    assert by_copy["seconds"].tolist() == [round(s, 3) for s in Vote.objects.filter(
        assignment__comparison__campaign=study, assignment__comparison__is_attention_check=False
    ).order_by("submitted_at", "pk").values_list("seconds", flat=True)]  # fmt: skip


@needs_postgres
def test_the_analysis_reads_the_vote_tables_columns_in_its_order_either_way(study):
    full = vote_table(campaign=study, use_copy=False)[ANALYSIS_COLUMNS]
    by_copy, by_orm = analysis_table(campaign=study, use_copy=True), analysis_table(campaign=study, use_copy=False)
    pd.testing.assert_frame_equal(by_copy, by_orm)
    names = [column for column in ANALYSIS_COLUMNS if isinstance(by_copy[column].dtype, pd.CategoricalDtype)]
    assert names == ["prompt_id", "category", "model_a", "model_b", "left_model", "winner", "rater"]
    pd.testing.assert_frame_equal(by_copy.astype(dict.fromkeys(names, "str")), full)


@needs_postgres
def test_copy_and_orm_write_the_same_votes_export(study, monkeypatch):
    """Byte for byte, in several pieces, with the rows counted; and the file reads back as the vote table."""
    monkeypatch.setattr(vote_copy, "CHUNK_VOTES", 16)
    by_copy, by_orm = VotesCsv(campaign=study, use_copy=True), VotesCsv(campaign=study, use_copy=False)
    pieces = list(by_copy)
    text = "".join(pieces)
    assert text == "".join(by_orm)
    assert by_copy.rows == by_orm.rows == len(vote_table(campaign=study))
    assert len(pieces) == 1 + -(-by_copy.rows // 16)  # the header, then one piece per 16 votes
    assert "'=1+1" in text and "'-mallory" in text and "'=hostile-model" in text


def test_the_export_reads_back_as_the_vote_table(study, tmp_path):
    path = tmp_path / "votes.csv"
    path.write_text("".join(results.export_stream(campaign=study, kind="votes")))
    back = read_votes_csv(path)
    table = vote_table(campaign=study)
    for column in ("prompt_id", "category", "winner", "rater", "rationale", "submitted_at"):
        assert back[column].tolist() == table[column].tolist(), column
    assert back["seconds"].astype(float).tolist() == table["seconds"].tolist()
    probability = pd.to_numeric(back["routing_probability"].replace("", None)).to_numpy(dtype=float)
    np.testing.assert_array_equal(probability, table["routing_probability"].to_numpy())  # NaN where none


@needs_postgres
@pytest.mark.parametrize("options", [{}, {"exclude_flagged": True}, {"exclude_identity_reports": True}])
def test_the_results_page_analysis_is_the_same_both_ways(study, monkeypatch, options):
    """What the page leaves out (raters who failed a check or are flagged, too-fast votes, reported pairs)
    is decided on the same table, so the figures and the "left out" counts agree."""
    by_copy = campaign_analysis(campaign=study, n_boot=50, use_cache=False, **options)
    monkeypatch.setattr(results, "analysis_table", lambda campaign: analysis_table(campaign=campaign, use_copy=False))
    by_orm = campaign_analysis(campaign=study, n_boot=50, use_cache=False, **options)
    assert by_copy == by_orm
    if options.get("exclude_flagged"):
        left_out = by_copy["left_out"]
        assert left_out["raters"] == 2 and left_out["flagged_only"] == ["erin"]
        assert left_out["fast_votes"] > 0


@needs_postgres
def test_an_export_stopped_early_leaves_the_connection_usable(study, monkeypatch):
    """A client that goes away mid-download closes the stream; the COPY is read to its end and the next
    query on the connection works."""
    monkeypatch.setattr(vote_copy, "CHUNK_VOTES", 8)
    stream = iter(VotesCsv(campaign=study, use_copy=True))
    assert next(stream).startswith("campaign,prompt_id")
    next(stream)
    stream.close()  # type: ignore[attr-defined]
    assert Assignment.objects.filter(comparison__campaign=study).count() > 0


@needs_postgres
def test_an_empty_campaign_gives_an_empty_table_and_a_header(monkeypatch):
    campaign = build_campaign(slug="no-votes", n_prompts=2)
    by_copy = vote_table(campaign=campaign, use_copy=True)
    pd.testing.assert_frame_equal(by_copy, vote_table(campaign=campaign, use_copy=False))
    assert by_copy.empty and list(by_copy.columns) == VOTE_COLUMNS
    assert "".join(VotesCsv(campaign=campaign, use_copy=True)) == ",".join(VOTE_COLUMNS) + "\n"
    lean = analysis_table(campaign=campaign, use_copy=True)
    assert lean.empty and list(lean.columns) == ANALYSIS_COLUMNS


def test_round3_rounds_as_python_does():
    draw = np.random.default_rng(3)
    values = np.concatenate(
        [
            draw.random(20000) * 100,
            np.round(draw.random(20000) * 100, 4),  # many exact and near halves at the fourth place
            np.array([2.675, 1.0005, 2.9995, 0.0005, 1e-7, 0.0, 5e-324, 1e15 + 0.5, 123456789.0125]),
        ]
    )
    assert vote_copy.round3(values).tolist() == [round(v, 3) for v in values.tolist()]


@pytest.mark.parametrize("spread", [10**12, 10**5, 7])  # no tie, a hundred or so, nearly all tied
def test_votes_are_put_in_order_of_time_then_id_whatever_their_ties(spread):
    """The analysis read sorts the votes (given in id order) by time and puts the few sharing a time back in id
    order; its order is that of a sort on both keys."""
    times = np.random.default_rng(spread).integers(0, spread, 5000)
    expected = np.lexsort((np.arange(len(times)), times))
    np.testing.assert_array_equal(vote_copy._by_time_then_id(times), expected)


def test_times_are_written_as_the_orm_export_writes_them():
    """The export writes each vote's time from PostgreSQL's microseconds; the text is `selectors._iso`'s
    (microseconds only when there are some), across days, years, midnight and times before 1970."""
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    draw = np.random.default_rng(11)
    micros = np.concatenate(
        [
            draw.integers(-3_000_000_000_000_000, 3_000_000_000_000_000, 20000),  # 1905 to 2095
            draw.integers(0, 10**9, 2000) * 1_000_000,  # whole seconds
            np.array([0, -1, 1, 86_400_000_000 - 1, 86_400_000_000, 999_999, 1_000_000, -86_400_000_000]),
        ]
    )
    expected = [_iso(epoch + timedelta(microseconds=int(value))) for value in micros]
    assert vote_copy.iso_times(micros).tolist() == expected
