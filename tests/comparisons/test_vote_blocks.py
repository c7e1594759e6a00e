"""Sealed blocks of votes: the results page's analysis reads a campaign's older votes from `VoteBlock` and only the
newer ones by COPY, and gets the same table as the ORM whatever happened since the blocks were sealed.

Blocks are sealed only outside a transaction (the lock they take would last as long as it), so these tests run
without the test's wrapping transaction, on PostgreSQL (COPY is PostgreSQL's).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest
from django.db import connection, connections, transaction

from comparisons import services, vote_copy
from comparisons.models import Rater, Vote, VoteBlock
from comparisons.results import VotesCsv
from comparisons.selectors import analysis_table
from tests.comparisons.factories import build_campaign, invite_rater

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's"),
]

BLOCK = 8


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(vote_copy, "BLOCK_VOTES", BLOCK)


def _vote_all(campaign, rater: Rater, limit: int | None = None) -> int:
    """The rater votes on every pair left to them (at most ``limit``), cycling through the four choices."""
    cast = 0
    while limit is None or cast < limit:
        assignment = services.assignment_next(rater=rater, campaign=campaign)
        if assignment is None:
            break
        services.vote_cast(rater=rater, token=assignment.token, choice=("A", "B", "tie", "both_bad")[cast % 4])
        cast += 1
    return cast


@pytest.fixture
def campaign():
    """Four raters on 15 pairs (5 prompts, 3 models): 60 votes, 7 blocks of 8 and 4 votes after them."""
    campaign = build_campaign(slug="blocks", n_prompts=5, model_names=["m-one", "m-two", "m-three"], k=10)
    for index in range(4):
        assert _vote_all(campaign, invite_rater(campaign, f"p{index}")) == 15
    return campaign


def _assert_same_as_orm(campaign) -> pd.DataFrame:
    by_copy = analysis_table(campaign=campaign, use_copy=True)
    pd.testing.assert_frame_equal(by_copy, analysis_table(campaign=campaign, use_copy=False))
    return by_copy


def _blocks(campaign) -> list[tuple[int, int, int]]:
    return list(
        VoteBlock.objects.filter(campaign=campaign)
        .order_by("first_vote_id")
        .values_list("first_vote_id", "last_vote_id", "votes")
    )


def test_the_first_read_seals_whole_blocks_of_the_lowest_ids_and_later_reads_use_them(campaign, monkeypatch):
    assert _blocks(campaign) == []
    assert len(_assert_same_as_orm(campaign)) == 60
    ids = list(Vote.objects.filter(comparison__campaign=campaign).order_by("pk").values_list("pk", flat=True))
    assert _blocks(campaign) == [(ids[i], ids[i + BLOCK - 1], BLOCK) for i in range(0, 56, BLOCK)]
    # The next read takes the 56 sealed votes from the blocks: the COPY is asked only for the votes after them.
    asked: list[int] = []
    votes_after = vote_copy._votes_after
    monkeypatch.setattr(
        vote_copy, "_votes_after", lambda campaign, after: asked.append(after) or votes_after(campaign, after)
    )
    table = _assert_same_as_orm(campaign)
    assert asked == [ids[55]] and len(table) == 60


def test_votes_cast_after_sealing_are_read_and_sealed_in_turn(campaign):
    _assert_same_as_orm(campaign)
    late = invite_rater(campaign, "late")
    assert _vote_all(campaign, late) == 15
    assert len(_assert_same_as_orm(campaign)) == 75
    assert len(_blocks(campaign)) == 75 // BLOCK
    assert Vote.objects.filter(rater=late).count() == 15


def test_a_rater_deleted_after_sealing_takes_their_votes_out_of_the_analysis(campaign):
    _assert_same_as_orm(campaign)
    gone = Rater.objects.filter(participant_id="p1").get()
    gone.user.delete()  # the rater and their 15 votes go with the user
    table = _assert_same_as_orm(campaign)
    assert len(table) == 45 and "p1" not in set(table["rater"].astype(str))
    assert sum(votes for *_, votes in _blocks(campaign)) == 40  # sealed anew from the 45 votes left


def test_the_export_from_sealed_blocks_is_the_orms_byte_for_byte(campaign):
    """The export writes the sealed votes and those after them, with the rationales of the few votes that have
    one (read apart), as the ORM writes them."""
    _assert_same_as_orm(campaign)
    assert len(_blocks(campaign)) == 60 // BLOCK
    late = invite_rater(campaign, "=late")
    for index, rationale in enumerate(["=1+1", "line\r\nbreak", "", 'a "quote", comma', "plain"]):
        assignment = services.assignment_next(rater=late, campaign=campaign)
        services.vote_cast(rater=late, token=assignment.token, choice="AB"[index % 2], rationale=rationale)
    by_copy, by_orm = VotesCsv(campaign=campaign, use_copy=True), VotesCsv(campaign=campaign, use_copy=False)
    text = "".join(by_copy)
    assert text == "".join(by_orm)
    assert by_copy.rows == 65 and "'=1+1" in text and '"line\r\nbreak"' in text


@pytest.mark.parametrize(
    "damage",
    [
        {"layout": "written-by-older-code"},
        {"votes": BLOCK - 1},  # says it holds fewer votes than its data does
        {"last_vote_id": 10**12},  # overlaps the block after it
    ],
)
def test_a_block_that_does_not_hold_what_it_says_is_sealed_anew(campaign, damage):
    _assert_same_as_orm(campaign)
    first = VoteBlock.objects.filter(campaign=campaign).order_by("first_vote_id").first()
    VoteBlock.objects.filter(pk=first.pk).update(**damage)
    assert len(_assert_same_as_orm(campaign)) == 60
    assert len(_blocks(campaign)) == 60 // BLOCK
    assert set(VoteBlock.objects.filter(campaign=campaign).values_list("layout", flat=True)) == {vote_copy.BLOCK_LAYOUT}


def test_nothing_is_sealed_inside_a_transaction(campaign):
    with transaction.atomic():
        assert len(_assert_same_as_orm(campaign)) == 60
    assert _blocks(campaign) == []


def _race(campaign_slug: str):
    """A campaign with 19 votes and a rater about to cast the 20th."""
    campaign = build_campaign(slug=campaign_slug, n_prompts=4, model_names=["m-one", "m-two", "m-three"], k=10)
    raters = [invite_rater(campaign, f"p{index}") for index in range(3)]
    _vote_all(campaign, raters[0])
    _vote_all(campaign, raters[1], limit=7)  # 12 + 7 votes: two blocks' worth once the next vote is in
    return campaign, raters[2], services.assignment_next(rater=raters[2], campaign=campaign)


def _vote_slowly(rater, token: str, written: threading.Event, seconds: float) -> threading.Thread:
    """Cast a vote in a transaction that stays open ``seconds`` after the vote has its id."""

    def vote() -> None:
        try:
            with transaction.atomic():
                services.vote_cast(rater=rater, token=token, choice="A")
                written.set()
                time.sleep(seconds)
        finally:
            connections.close_all()

    thread = threading.Thread(target=vote)
    thread.start()
    return thread


def test_a_vote_being_written_while_blocks_are_sealed_is_neither_lost_nor_doubled(monkeypatch):
    """A vote's id is drawn before its transaction commits: sealing waits for such a transaction, so a vote
    with a lower id than the sealed ones can never commit after them and be missed by every later read."""
    monkeypatch.setattr(vote_copy, "SEAL_LOCK_TIMEOUT_MS", 10_000)
    campaign, rater, pending = _race("blocks-race")
    written = threading.Event()
    writer = _vote_slowly(rater, pending.token, written, 1.0)
    assert written.wait(10)
    table = analysis_table(campaign=campaign, use_copy=True)  # waits for the vote's transaction to end
    writer.join()
    assert len(table) == 20
    pd.testing.assert_frame_equal(table, analysis_table(campaign=campaign, use_copy=False))
    blocks = _blocks(campaign)
    assert [votes for *_, votes in blocks] == [BLOCK, BLOCK]
    stored = VoteBlock.objects.filter(campaign=campaign).order_by("first_vote_id").values_list("data", flat=True)
    sealed_ids = np.concatenate([vote_copy._block_votes(bytes(data), BLOCK)["vote_id"] for data in stored])
    lowest = sorted(Vote.objects.filter(comparison__campaign=campaign).values_list("pk", flat=True))[: 2 * BLOCK]
    assert sealed_ids.tolist() == lowest


def test_a_long_transaction_writing_votes_makes_the_read_skip_sealing_not_wait(monkeypatch):
    """New votes queue behind the sealing lock while it waits: past SEAL_LOCK_TIMEOUT_MS the read goes on
    without sealing, and a later read seals what is committed by then."""
    monkeypatch.setattr(vote_copy, "SEAL_LOCK_TIMEOUT_MS", 100)
    campaign, rater, pending = _race("blocks-long-transaction")
    written = threading.Event()
    writer = _vote_slowly(rater, pending.token, written, 3.0)
    assert written.wait(10)
    started = time.monotonic()
    table = analysis_table(campaign=campaign, use_copy=True)
    assert time.monotonic() - started < 2.0
    assert len(table) == 19 and _blocks(campaign) == []  # the vote in flight is not committed yet
    writer.join()
    assert len(_assert_same_as_orm(campaign)) == 20
    assert [votes for *_, votes in _blocks(campaign)] == [BLOCK, BLOCK]
