"""A campaign's votes read with PostgreSQL's COPY: the results page's vote table and the votes export.

`comparisons.selectors.vote_rows` defines a campaign's vote rows with the ORM, and SQLite runs it. On
PostgreSQL that query, a million votes each joined to its prompt, models, rater and winner, is too slow
for a page (14 s of 16). Here the votes' fixed-width fields (ids, booleans, the choice, the seconds, the time)
come from sealed blocks of votes and a binary ``COPY (SELECT ...) TO STDOUT`` of the votes after them, straight
into numpy arrays; the few votes with a rationale from a second, small COPY. What repeats (prompt, category,
models and served lengths per comparison, names per rater and model) is read once and spread over the votes
by index, names as categories. The export writes its CSV from the same arrays, each distinct cell made once.
Every hand-written statement lives in this module, with the ORM query it stands for above it;
tests/comparisons/test_vote_copy.py checks that both ways give the same frame and the same CSV file, byte
for byte.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Sum
from django.db.models.functions import Coalesce
from psycopg import pq

from comparisons.models import Campaign, Comparison, Rater, Vote, VoteBlock
from comparisons.stats.io import spreadsheet_safe
from generation.models import ModelEntry

# Votes written to CSV at a time: the text in memory at once stays bounded by it.
CHUNK_VOTES = 50_000
# Stands in for a vote without a routing probability (none is ever 0 or below) in the binary read, which
# has no NULL.
_NO_PROBABILITY = -1.0


def _name(model: type[Any], field_name: str | None = None) -> str:
    """A table's (or, with ``field_name``, one of its columns') quoted name, read from the model's _meta."""
    meta = model._meta
    return connection.ops.quote_name(meta.db_table if field_name is None else meta.get_field(field_name).column)


def _campaign_votes() -> str:
    """FROM and WHERE of the votes on a campaign's real comparisons, as ``v`` with its comparison ``c``; the
    campaign's id is bound. Names from _meta. A vote carries what the reads need of its assignment (`Vote`),
    so the million assignments are not joined."""
    return (
        f"FROM {_name(Vote)} v "
        f"INNER JOIN {_name(Comparison)} c ON c.{_name(Comparison, 'id')} = v.{_name(Vote, 'comparison')} "
        f"WHERE c.{_name(Comparison, 'campaign')} = %s AND NOT c.{_name(Comparison, 'is_attention_check')}"
    )


def _copy_out(statement: str, params: list[Any]) -> bytearray:
    """The whole output of a ``COPY ... TO STDOUT``, read with libpq directly.

    psycopg's `Cursor.copy` hands out one row per call through its generator machinery (about 6 s of CPU
    for a million rows); this loop over ``PQgetCopyData`` takes 0.4 s. Holds the connection's lock while
    it runs, as `Cursor.copy` does."""
    connection.ensure_connection()
    conn = connection.connection
    query = psycopg.ClientCursor(conn).mogrify(statement, params).encode()
    with connection.wrap_database_errors, conn.lock:
        pgconn = conn.pgconn
        pgconn.send_query(query)
        result = pgconn.get_result()
        data = bytearray()
        if result is not None and result.status == pq.ExecStatus.COPY_OUT:
            while (piece := pgconn.get_copy_data(0))[0] >= 0:
                data += piece[1]
        failure = None if result is not None and result.status == pq.ExecStatus.COPY_OUT else result
        while (end := pgconn.get_result()) is not None:
            if end.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.COPY_OUT):
                failure = end
        if failure is not None:
            raise psycopg.errors.error_from_result(failure, encoding=conn.info.encoding)
    return data


def round3(values: np.ndarray) -> np.ndarray:
    """``round(x, 3)`` of every value, exactly as Python rounds (numpy's rounding differs near halves)."""
    scaled = values * 1000.0
    rounded = np.rint(scaled) / 1000.0
    # numpy rounds the product, Python the exact value: they can only differ when the product is about half way.
    near_half = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6
    unsure = near_half | ~np.isfinite(scaled) | (np.abs(values) >= 1e12)
    for i in np.flatnonzero(unsure):
        rounded[i] = round(float(values[i]), 3)
    return rounded


def _objects(values: Any) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array


def _has_carriage_return(values: Any) -> np.ndarray:
    return np.fromiter((isinstance(x, str) and "\r" in x for x in values), dtype=bool, count=len(values))


# Microseconds from numpy's epoch (1970-01-01) to PostgreSQL's (2000-01-01), and in a day.
_POSTGRES_EPOCH_US = 946_684_800_000_000
_DAY_US = 86_400_000_000


def iso_times(micros: np.ndarray) -> np.ndarray:
    """Times in PostgreSQL's microseconds since 2000-01-01 UTC, written as `selectors._iso` writes them (ISO
    8601, microseconds only when there are some, ``Z``), as an object array of str.

    numpy's ``datetime_as_string`` took 0.8 s for a million times: here it writes only the few distinct days,
    and each time of day is put together from its digits."""
    days, in_day = np.divmod(micros.astype(np.int64) + _POSTGRES_EPOCH_US, _DAY_US)
    day_codes, distinct_days = pd.factorize(days)
    day_text = np.datetime_as_string(distinct_days.astype("datetime64[D]"), unit="D").astype("S10")
    text = np.zeros((len(days), 27), dtype=np.uint8)  # YYYY-MM-DDTHH:MM:SS.ffffffZ
    text[:, :10] = day_text.view(np.uint8).reshape(-1, 10)[day_codes]
    seconds, micro = np.divmod(in_day, 1_000_000)
    hours, rest = np.divmod(seconds, 3600)
    minutes, secs = np.divmod(rest, 60)
    text[:, 10] = ord("T")
    text[:, [13, 16]] = ord(":")
    for end, value in ((13, hours), (16, minutes), (19, secs), (26, micro)):
        for position in range(end - 1, end - (7 if end == 26 else 3), -1):
            value, digit = np.divmod(value, 10)
            text[:, position] = ord("0") + digit
    whole = micro == 0
    text[:, 19] = np.where(whole, ord("Z"), ord("."))
    text[:, 26] = np.where(whole, 0, ord("Z"))
    text[whole, 20:26] = 0  # trailing NULs end a fixed-width string early
    return text.view("S27").ravel().astype("U27").astype(object)


@dataclass
class _Lookups:
    """What repeats across a campaign's votes: per real comparison (sorted by id) its prompt, category, models
    and served lengths; the raters who failed an attention check in the campaign."""

    campaign: Campaign
    ids: np.ndarray
    prompt_id: np.ndarray
    category: np.ndarray
    model_a: np.ndarray
    model_b: np.ndarray
    length_a: np.ndarray
    length_b: np.ndarray
    failed: set[int]

    @classmethod
    def read(cls, campaign: Campaign, *, failed: set[int], lengths: dict[int, int]) -> _Lookups:
        rows = list(
            Comparison.objects.filter(campaign=campaign, is_attention_check=False)
            .order_by("pk")
            .values_list(
                "pk",
                "prompt__external_id",
                "prompt__category",
                "response_a__model__name",
                "response_b__model__name",
                "response_a_id",
                "response_b_id",
            )
        )
        prompt_id, category, model_a, model_b = (_objects([row[i] for row in rows]) for i in (1, 2, 3, 4))
        return cls(
            campaign=campaign,
            ids=np.array([row[0] for row in rows], dtype=np.int64),
            prompt_id=prompt_id,
            category=category,
            model_a=model_a,
            model_b=model_b,
            length_a=np.array([lengths[row[5]] for row in rows], dtype=np.int64),
            length_b=np.array([lengths[row[6]] for row in rows], dtype=np.int64),
            failed=failed,
        )


# The analysis read (`_analysis_statement`) is a binary COPY whose every field has a fixed width (no NULL, no
# text), so its rows are one numpy record type: a 16-bit field count, then per field a 32-bit length and the
# value, big-endian. Times are PostgreSQL's: microseconds since 2000-01-01 UTC.
_ANALYSIS_FIELDS = [
    ("comparison_id", ">i8"),
    ("left_is_a", "?"),
    ("choice", ">i2"),
    ("winner_model_id", ">i8"),
    ("rater_id", ">i8"),
    ("seconds", ">f8"),
    ("identity_reported", "?"),
    ("routing_probability", ">f8"),
    ("submitted_at", ">i8"),
    ("vote_id", ">i8"),
]
_ANALYSIS_ROW = np.dtype(
    [("fields", ">i2")]
    + [item for i, (name, kind) in enumerate(_ANALYSIS_FIELDS) for item in ((f"size{i}", ">i4"), (name, kind))]
)
_BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
# The choices as numbers in the analysis read, in this order.
_CHOICES = [Vote.Choice.LEFT.value, Vote.Choice.RIGHT.value, Vote.Choice.TIE.value, Vote.Choice.BOTH_BAD.value]


def _analysis_statement() -> str:
    """One vote per row, in PostgreSQL's binary format, for the analysis: the export's rows less the text
    PostgreSQL would have to format and sort (names, times, rationales) and the joins that fetch them.

    It stands for::

        Vote.objects.filter(comparison__campaign=campaign, comparison__is_attention_check=False).values_list(
            "comparison_id", "left_is_a", <the choice's index in _CHOICES>,
            "winner_model_id", "rater_id", "seconds", "identity_reported", "routing_probability",
            "submitted_at", "pk",
        )

    less the votes up to a given id (``.filter(pk__gt=after)``: those in the campaign's sealed blocks), with a
    missing winner (tie, both bad) and a missing probability as `_NO_WINNER` and `_NO_PROBABILITY`, in no
    particular order. Bound values (`_analysis_params`): the four choices, the two stand-ins, the campaign's
    id, then ``after``.
    """
    choice = f"v.{_name(Vote, 'choice')}"
    columns = [
        f"v.{_name(Vote, 'comparison')}::int8",
        f"v.{_name(Vote, 'left_is_a')}",
        f"(CASE {choice} WHEN %s THEN 0 WHEN %s THEN 1 WHEN %s THEN 2 WHEN %s THEN 3 END)::int2",
        f"COALESCE(v.{_name(Vote, 'winner_model')}, %s)::int8",
        f"v.{_name(Vote, 'rater')}::int8",
        f"v.{_name(Vote, 'seconds')}::float8",
        f"v.{_name(Vote, 'identity_reported')}",
        f"COALESCE(v.{_name(Vote, 'routing_probability')}, %s)::float8",
        f"v.{_name(Vote, 'submitted_at')}",
        f"v.{_name(Vote, 'id')}::int8",
    ]
    after = f" AND v.{_name(Vote, 'id')} > %s"
    return f"COPY (SELECT {', '.join(columns)} {_campaign_votes()}{after}) TO STDOUT (FORMAT binary)"  # noqa: S608 - see there


_NO_WINNER = -1


def _analysis_params(campaign: Campaign, after: int = 0) -> list[Any]:
    return [*_CHOICES, _NO_WINNER, _NO_PROBABILITY, campaign.pk, after]


def _binary_rows(data: bytearray) -> np.ndarray:
    """The rows of a binary COPY of `_analysis_statement` as records of `_ANALYSIS_ROW`."""
    if not data:
        return np.zeros(0, dtype=_ANALYSIS_ROW)
    signature = len(_BINARY_SIGNATURE)
    if data[:signature] != _BINARY_SIGNATURE:
        raise RuntimeError("The analysis read did not return PostgreSQL's binary COPY format.")
    start = signature + 8 + int.from_bytes(data[signature + 4 : signature + 8], "big")  # flags, extension
    body = memoryview(data)[start:-2]  # the trailer is a field count of -1
    if len(body) % _ANALYSIS_ROW.itemsize:
        raise RuntimeError("The analysis read returned a row of another shape (a NULL or a wider value).")
    rows = np.frombuffer(body, dtype=_ANALYSIS_ROW)
    sizes = [np.dtype(kind).itemsize for _, kind in _ANALYSIS_FIELDS]
    if (rows["fields"] != len(sizes)).any() or any((rows[f"size{i}"] != n).any() for i, n in enumerate(sizes)):
        raise RuntimeError("The analysis read returned a row of another shape (a NULL or a wider value).")
    return rows


def analysis_columns(*, campaign: Campaign, failed: set[int], lengths: dict[int, int]) -> dict[str, Any] | None:
    """The columns of the campaign's vote table that `stats.analyze` reads (`selectors.ANALYSIS_COLUMNS`), each
    value as in `vote_columns` and the votes in the same order; None without votes.

    ``failed``: the raters who failed an attention check in the campaign; ``lengths``: served lengths by
    response id (`selectors.attention_failed_raters`, `selectors.served_lengths`)."""
    table = _vote_table(campaign=campaign, failed=failed, lengths=lengths)
    return None if table is None else table[0]


def vote_columns(*, campaign: Campaign, failed: set[int], lengths: dict[int, int]) -> dict[str, Any] | None:
    """The campaign's vote table (the rows of the votes export) as one array per VOTE_COLUMNS entry, names as
    categoricals; None without votes. ``failed`` and ``lengths`` as for `analysis_columns`."""
    table = _vote_table(campaign=campaign, failed=failed, lengths=lengths)
    if table is None:
        return None
    columns, vote_ids, times = table
    return _with_export_columns(campaign, columns, vote_ids) | {"submitted_at": iso_times(times)}


def _with_export_columns(campaign: Campaign, columns: dict[str, Any], vote_ids: np.ndarray) -> dict[str, Any]:
    """The analysis' columns with the export's campaign and rationale."""
    return columns | {
        "campaign": pd.Categorical.from_codes(np.zeros(len(vote_ids), dtype=np.int8), [campaign.slug]),
        "rationale": _rationales(campaign, vote_ids),
    }


def _vote_table(
    *, campaign: Campaign, failed: set[int], lengths: dict[int, int]
) -> tuple[dict[str, Any], np.ndarray, np.ndarray] | None:
    """The analysis' columns of the campaign's votes in the export's order (time, then id), with the votes' ids
    and times in that order; None without votes.

    Names are looked up here (the models and prompts per comparison, the raters by id): PostgreSQL hands over
    the sealed blocks and scans the votes after them alone."""
    lookups = _Lookups.read(campaign, failed=failed, lengths=lengths)
    votes, from_blocks = _analysis_votes(campaign)
    if not len(votes["vote_id"]):
        return None
    order = _by_time_then_id(votes["submitted_at"])

    def field(name: str, kind: Any) -> np.ndarray:
        return votes[name].astype(kind, copy=False)[order]

    at = _comparison_rows(field("comparison_id", np.int64), lookups)
    # Names as categories: each distinct name is made once, each vote holds a code.
    models, model_codes = _vocabulary(np.concatenate([lookups.model_a, lookups.model_b]))
    code_a, code_b = np.split(model_codes, 2)
    left_is_a = field("left_is_a", bool)
    a_at, b_at = code_a[at], code_b[at]
    winner_id = field("winner_model_id", np.int64)
    decisive = winner_id != _NO_WINNER
    model_of = dict(ModelEntry.objects.filter(name__in=list(models)).values_list("pk", "name"))
    position = {name: i for i, name in enumerate(models)}
    ids = np.unique(winner_id[decisive])
    by_id = np.array([position[model_of[int(pk)]] for pk in ids], dtype=np.int64)
    # A tie or both bad is its choice (the decisive choices, left and right, are never the winner's name).
    verdicts = [choice for choice in _CHOICES if choice not in position]
    verdict_code = np.array([position[c] if c in position else len(models) + verdicts.index(c) for c in _CHOICES])
    winner_names = np.concatenate([models, _objects(verdicts)])
    picked = by_id[np.searchsorted(ids, winner_id)] if len(ids) else 0
    winner_code = np.where(decisive, picked, verdict_code[field("choice", np.int64)])
    rater_codes, rater_ids = pd.factorize(field("rater_id", np.int64))
    usernames = dict(Rater.objects.filter(pk__in=[int(pk) for pk in rater_ids]).values_list("pk", "user__username"))
    if len(usernames) < len(rater_ids):
        if not from_blocks:
            raise RuntimeError(f"Votes of campaign {campaign.slug!r} by raters who do not exist.")
        # A rater was deleted, and their votes with them, after a block holding some was sealed.
        discard_vote_blocks(campaign=campaign)
        return _vote_table(campaign=campaign, failed=failed, lengths=lengths)
    probability = field("routing_probability", float)
    columns = {
        "prompt_id": _categorical(lookups.prompt_id, at),
        "category": _categorical(lookups.category, at),
        "model_a": pd.Categorical.from_codes(a_at, models),
        "model_b": pd.Categorical.from_codes(b_at, models),
        "left_model": pd.Categorical.from_codes(np.where(left_is_a, a_at, b_at), models),
        "winner": pd.Categorical.from_codes(winner_code, winner_names),
        "rater": pd.Categorical.from_codes(rater_codes, _objects([usernames[int(pk)] for pk in rater_ids])),
        "attention_failed": np.array([int(pk) in lookups.failed for pk in rater_ids], dtype=bool)[rater_codes],
        "seconds": round3(field("seconds", float)),
        "length_a": lookups.length_a[at],
        "length_b": lookups.length_b[at],
        "identity_reported": field("identity_reported", bool),
        "routing_probability": np.where(probability == _NO_PROBABILITY, np.nan, probability),
    }
    return columns, field("vote_id", np.int64), field("submitted_at", np.int64)


def _rationale_statement() -> str:
    """The campaign's votes that have a rationale, as CSV. It stands for::

        Vote.objects.filter(campaign=campaign).exclude(rationale="").values_list("pk", "rationale")

    Most votes have none: the partial index ``vote_with_rationale`` holds only the others, so this reads
    them without scanning the vote table. Bound values: the campaign's id, the empty rationale."""
    rationale = f"v.{_name(Vote, 'rationale')}"
    return (
        f"COPY (SELECT v.{_name(Vote, 'id')}, {rationale} FROM {_name(Vote)} v "  # noqa: S608 - names from _meta
        f"WHERE v.{_name(Vote, 'campaign')} = %s AND NOT ({rationale} = %s)) TO STDOUT (FORMAT csv)"
    )


def _rationales(campaign: Campaign, vote_ids: np.ndarray) -> np.ndarray:
    """The rationale of each vote given by id ('' for none)."""
    rationales = np.full(len(vote_ids), "", dtype=object)
    data = _copy_out(_rationale_statement(), [campaign.pk, ""])
    if not data:
        return rationales
    rows = pd.read_csv(
        io.BytesIO(data),
        header=None,
        names=["id", "rationale"],
        dtype={"id": "int64", "rationale": "str"},
        na_filter=False,
        encoding="utf-8",
    )
    order = np.argsort(vote_ids, kind="stable")
    written = rows["rationale"].to_numpy(dtype=object)
    # Votes on attention checks, or cast after the table's votes were read, are not in it.
    at, found = _positions(vote_ids[order], rows["id"].to_numpy())
    rationales[order[at[found]]] = written[found]
    return rationales


# ---------------------------------------------------------------- sealed blocks of votes

# Votes are only ever added (and deleted with their rater): the analysis read keeps the votes it reads as sealed
# blocks (`VoteBlock`) of BLOCK_VOTES consecutive votes, and reads by COPY only the votes after the last block.
# A block is one value that PostgreSQL hands over as it is stored, where the COPY has it write every field of
# every row (a million votes: about a second of its time; their blocks, a tenth). A block holds each field's
# values one after the other in native byte order, field after field, in the order of `_ANALYSIS_FIELDS`: each
# field then comes out as one contiguous array.
BLOCK_VOTES = 100_000
_BLOCK_FIELDS = [(name, np.dtype(kind).newbyteorder("=")) for name, kind in _ANALYSIS_FIELDS]
_BLOCK_VOTE_BYTES = sum(kind.itemsize for _, kind in _BLOCK_FIELDS)
BLOCK_LAYOUT = hashlib.sha256(repr(["by field", *[(n, k.str) for n, k in _BLOCK_FIELDS]]).encode()).hexdigest()[:32]

# The analysis' votes: one array per field of `_ANALYSIS_FIELDS`, all of one length.
VoteArrays = dict[str, np.ndarray]


def _votes_after(campaign: Campaign, after: int) -> VoteArrays:
    """The campaign's votes with an id above ``after``, read by COPY, in id order."""
    rows = _binary_rows(_copy_out(_analysis_statement(), _analysis_params(campaign, after)))
    order = np.argsort(rows["vote_id"], kind="stable")
    return {name: rows[name].astype(kind)[order] for name, kind in _BLOCK_FIELDS}


def _block_data(votes: VoteArrays) -> bytes:
    return b"".join(np.ascontiguousarray(votes[name], dtype=kind).tobytes() for name, kind in _BLOCK_FIELDS)


def _block_votes(data: bytes, count: int) -> VoteArrays:
    votes, offset = {}, 0
    for name, kind in _BLOCK_FIELDS:
        votes[name] = np.frombuffer(data, dtype=kind, count=count, offset=offset)
        offset += count * kind.itemsize
    return votes


def _blocks_statement() -> str:
    """The campaign's sealed blocks in order. It stands for::

        VoteBlock.objects.filter(campaign=campaign).order_by("first_vote_id").values_list(
            "first_vote_id", "last_vote_id", "votes", "layout", "data"
        )

    read with binary results: as text, PostgreSQL would write every byte of the data as two hex digits for
    psycopg to decode (0.35 s for a million votes' blocks instead of a few hundredths)."""
    fields = ", ".join(_name(VoteBlock, f) for f in ("first_vote_id", "last_vote_id", "votes", "layout", "data"))
    return (
        f"SELECT {fields} FROM {_name(VoteBlock)} "  # noqa: S608 - names from _meta, the campaign bound
        f"WHERE {_name(VoteBlock, 'campaign')} = %s ORDER BY {_name(VoteBlock, 'first_vote_id')}"
    )


def _sealed_blocks(campaign: Campaign) -> list[VoteArrays]:
    """The campaign's sealed blocks in order of their votes' ids; none (and the blocks discarded) when one is of
    another layout, does not hold as many votes as it says, or does not start after the one before it ends."""
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor, connection.wrap_database_errors:
        rows = cursor.execute(_blocks_statement(), [campaign.pk], binary=True).fetchall()
    blocks: list[VoteArrays] = []
    last = 0
    for first, last_id, count, layout, data in rows:
        whole = layout == BLOCK_LAYOUT and len(data) == count * _BLOCK_VOTE_BYTES and first > last
        block = _block_votes(data, count) if whole else None
        if block is None or block["vote_id"][0] != first or block["vote_id"][-1] != last_id:
            discard_vote_blocks(campaign=campaign)
            return []
        blocks.append(block)
        last = last_id
    return blocks


def discard_vote_blocks(*, campaign: Campaign) -> None:
    """Forget the campaign's sealed blocks; the next analysis read seals them anew from the votes."""
    VoteBlock.objects.filter(campaign=campaign).delete()


# How long sealing waits for the transactions writing votes (each a few milliseconds): while it waits, new votes
# queue behind it, so a long one (an import, a migration) makes this view read without sealing instead.
SEAL_LOCK_TIMEOUT_MS = 200


def _settled_vote_id() -> int | None:
    """An id at or below which every vote ever to exist is already committed; None when the transactions
    writing votes did not all end within SEAL_LOCK_TIMEOUT_MS.

    A vote's id is drawn when the statement writing it runs, and its transaction commits a moment later, so
    the highest id read at any moment may have lower ids still uncommitted beside it. A SHARE lock on the vote
    table waits for every transaction writing votes to end and lets none start until this one ends, which it
    does at once. It stands for::

        with transaction.atomic():
            <SET LOCAL lock_timeout; LOCK TABLE vote IN SHARE MODE>
            Vote.objects.aggregate(m=Coalesce(Max("pk"), 0))["m"]
    """
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{SEAL_LOCK_TIMEOUT_MS}ms"])
            cursor.execute(f"LOCK TABLE {_name(Vote)} IN SHARE MODE")
            cursor.execute(f"SELECT COALESCE(MAX({_name(Vote, 'id')}), 0) FROM {_name(Vote)}")  # noqa: S608 - _meta
            return int(cursor.fetchone()[0])
    except OperationalError as error:
        if not isinstance(error.__cause__, psycopg.errors.LockNotAvailable):
            raise
        return None


def _seal(campaign: Campaign, votes: VoteArrays, settled: int) -> None:
    """Seal the first whole blocks of ``votes`` (all the campaign's votes after its last block, in id order,
    read after ``settled`` was taken) among those at or below ``settled``.

    A block is the BLOCK_VOTES lowest ids after the block before it, so two views sealing at once write the
    same blocks: the second is refused by the unique start and changes nothing."""
    ready = int(np.searchsorted(votes["vote_id"], settled, side="right"))
    blocks = [
        VoteBlock(
            campaign=campaign,
            first_vote_id=int(votes["vote_id"][start]),
            last_vote_id=int(votes["vote_id"][start + BLOCK_VOTES - 1]),
            votes=BLOCK_VOTES,
            layout=BLOCK_LAYOUT,
            data=_block_data({name: values[start : start + BLOCK_VOTES] for name, values in votes.items()}),
        )
        for start in range(0, ready - BLOCK_VOTES + 1, BLOCK_VOTES)
    ]
    if not blocks:
        return
    try:
        with transaction.atomic():
            VoteBlock.objects.bulk_create(blocks)
    except IntegrityError:
        pass  # another view sealed the same votes first


def _analysis_votes(campaign: Campaign) -> tuple[VoteArrays, bool]:
    """Every vote of the campaign on its real comparisons, in id order, and whether some came from sealed blocks.

    The sealed blocks are read whole, the votes after them by COPY. When those are at least a block's worth by
    the comparisons' vote counts, the settled id is taken before the COPY, so that every vote up to it is in
    what the COPY reads, and the whole blocks among them are sealed. Inside a transaction nothing is sealed
    (the lock would last as long as the transaction), nor when the lock is not had within SEAL_LOCK_TIMEOUT_MS."""
    blocks = _sealed_blocks(campaign)
    after = int(blocks[-1]["vote_id"][-1]) if blocks else 0
    unsealed = real_votes_count(campaign) - sum(len(block["vote_id"]) for block in blocks)
    settled = _settled_vote_id() if unsealed >= BLOCK_VOTES and not connection.in_atomic_block else None
    tail = _votes_after(campaign, after)
    if settled is not None:
        _seal(campaign, tail, settled)
    if not blocks:
        return tail, False
    return {name: np.concatenate([block[name] for block in (*blocks, tail)]) for name, _ in _BLOCK_FIELDS}, True


def real_votes_count(campaign: Campaign) -> int:
    """The campaign's votes on real comparisons by the comparisons' counts (each vote adds one as it is written):
    a small aggregate over the comparisons, where counting the votes would read a million rows."""
    return Comparison.objects.filter(campaign=campaign, is_attention_check=False).aggregate(
        n=Coalesce(Sum("votes_count"), 0)
    )["n"]


def _by_time_then_id(times: np.ndarray) -> np.ndarray:
    """The order of votes given in id order by time, then id (the export's order). Votes rarely share a time to
    the microsecond: a plain sort, then each run of equal times put back in id order, is about three times
    faster than a sort on both keys."""
    order = np.argsort(times)
    ordered = times[order]
    tied = np.flatnonzero(ordered[1:] == ordered[:-1])
    if len(tied) > 1000:
        return np.lexsort((np.arange(len(times)), times))
    run_start = 0
    for position in tied.tolist():
        run_start = run_start if position and ordered[position] == ordered[position - 1] else position
        order[run_start : position + 2].sort()
    return order


def _vocabulary(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of a (short, per comparison) array and each value's code among them."""
    codes, distinct = pd.factorize(values)
    return _objects(distinct), codes


def _categorical(per_comparison: np.ndarray, at: np.ndarray) -> pd.Categorical:
    """Per vote, the value of its comparison (row ``at``) as a categorical."""
    distinct, codes = _vocabulary(per_comparison)
    return pd.Categorical.from_codes(codes[at], distinct)


def _positions(sorted_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of ``ids`` stands in ``sorted_ids`` (sorted, distinct), and whether it is there at all."""
    if not len(sorted_ids):
        return np.zeros(len(ids), dtype=np.intp), np.zeros(len(ids), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return at, sorted_ids[at] == ids


def _comparison_rows(comparison: np.ndarray, lookups: _Lookups) -> np.ndarray:
    """The row of `lookups` of each vote's comparison."""
    at, found = _positions(lookups.ids, comparison)
    if not found.all():
        # Comparisons are created when the campaign opens, before any vote: this is a broken database.
        raise RuntimeError(f"Votes of campaign {lookups.campaign.slug!r} on comparisons it does not have.")
    return at


class VoteCsv:
    """The votes export as CSV text in pieces (header first); ``rows`` counts the votes written.

    Each piece holds up to CHUNK_VOTES votes. The cells are those `csv_lines` writes for `vote_rows`
    (`spreadsheet_safe`), and a row holding a carriage return is written with every field quoted as there, so
    the text is the same, byte for byte."""

    def __init__(self, campaign: Campaign, *, header: list[str], failed: set[int], lengths: dict[int, int]) -> None:
        self.campaign = campaign
        self.header = header
        self.failed = failed
        self.lengths = lengths
        self.rows = 0

    def __iter__(self) -> Iterator[str]:
        yield ",".join(self.header) + "\n"  # plain names: nothing to quote or neutralize
        table = _vote_table(campaign=self.campaign, failed=self.failed, lengths=self.lengths)
        if table is None:
            return
        columns, vote_ids, times = table
        # The times are written a piece at a time: a million of them as text would hold about 75 MiB at once.
        columns = _with_export_columns(self.campaign, columns, vote_ids) | {"submitted_at": times}
        fields = [_CsvField.of(name, columns[name]) for name in self.header]
        carriage = np.zeros(len(columns["rater"]), dtype=bool)
        for field in fields:
            carriage |= field.carriage
        for start in range(0, len(carriage), CHUNK_VOTES):
            rows = slice(start, start + CHUNK_VOTES)
            self.rows = min(start + CHUNK_VOTES, len(carriage))
            yield _csv_text(fields, rows, carriage[rows])


@dataclass
class _CsvField:
    """One column of the export: its distinct ``cells`` (text made spreadsheet safe, numbers), each as
    `csv.writer` writes it in a row (``written``), and per vote the index of its cell (``codes``). The times are
    the exception (``codes`` None): one per vote, in PostgreSQL's microseconds, written as `iso_times` writes
    them when asked for. ``carriage``: which votes' cell holds a carriage return."""

    cells: np.ndarray
    written: np.ndarray
    codes: np.ndarray | None
    carriage: np.ndarray

    @classmethod
    def of(cls, name: str, values: Any) -> _CsvField:
        """The field of a `vote_columns` column (the times in microseconds); each distinct value is made safe
        and written once."""
        if name == "submitted_at":  # ISO times: nothing to quote or neutralize, never a carriage return
            return cls(values, values, None, np.zeros(len(values), dtype=bool))
        if isinstance(values, pd.Categorical):
            codes, cells = values.codes, _objects([spreadsheet_safe(value) for value in values.categories])
        elif values.dtype == bool:
            codes, cells = values.astype(np.int8), _objects(["false", "true"])
        elif values.dtype == object:  # rationales: most votes have none, only the others are looked at
            written = np.flatnonzero(values != "")
            codes = np.zeros(len(values), dtype=np.int64)
            codes[written] = np.arange(1, len(written) + 1)
            cells = _objects(["", *[spreadsheet_safe(text) for text in values[written]]])
        else:  # numbers (seconds, lengths, routing probabilities) as Python writes them; NaN: none, an empty cell
            codes, distinct = pd.factorize(values)
            cells = _objects([*distinct.tolist(), ""])  # NaN's code is -1: the last cell
        return cls(cells, _written(cells.tolist()), codes, _has_carriage_return(cells)[codes])

    def at(self, rows: slice) -> list[Any]:
        """The written cells of the votes at ``rows``."""
        if self.codes is None:
            return iso_times(self.cells[rows]).tolist()
        return self.written[self.codes[rows]].tolist()

    def cell(self, row: int) -> Any:
        """The cell of the vote at ``row``, as `csv.writer` is given it."""
        if self.codes is None:
            return iso_times(self.cells[row : row + 1])[0]
        return self.cells[self.codes[row]]


def _csv_text(fields: list[_CsvField], rows: slice, carriage: np.ndarray) -> str:
    """The votes at ``rows`` as `csv.writer` writes them, a row with ``carriage`` set with every field quoted.

    A million rows through `csv.writer.writerows` took 3.8 s, most of it deciding over and over how to write
    the same few values: here each distinct value of a column is written once, and the rows are joined from
    those pieces."""
    lines = list(map(",".join, zip(*(field.at(rows) for field in fields), strict=True)))
    quoted = np.flatnonzero(carriage)
    if quoted.size:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
        for row in quoted.tolist():
            buffer.seek(0)
            buffer.truncate(0)
            writer.writerow([field.cell(rows.start + row) for field in fields])
            lines[row] = buffer.getvalue()[:-1]
    lines.append("")
    return "\n".join(lines)


# What makes `csv.writer` quote a field (the delimiter, the quote, a line break); the writer itself writes those.
_QUOTED = re.compile(r'[,"\r\n]')


def _written(values: list[Any]) -> np.ndarray:
    """Each value as `csv.writer` writes it in a row of several fields: numbers as `str` gives them, text as it
    is unless it holds a character that needs quoting."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        if not isinstance(value, str):
            out[i] = str(value)
        elif not _QUOTED.search(value):
            out[i] = value
        else:
            buffer.seek(0)
            buffer.truncate(0)
            writer.writerow([value, ""])
            out[i] = buffer.getvalue()[:-2]  # less the empty second field's separator and the line's end
    return out


def read_one_snapshot() -> None:
    """PostgreSQL: make every read of the current transaction see the same votes, however many arrive
    meanwhile (REPEATABLE READ); call it before the transaction's first query. Other databases already
    serialize their transactions."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
