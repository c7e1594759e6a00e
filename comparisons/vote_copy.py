"""A campaign's votes read with PostgreSQL's COPY: the results page's vote table and the votes export.

`comparisons.selectors.vote_rows` defines a campaign's vote rows with the ORM, and SQLite runs it. On
PostgreSQL that query, a million votes each joined to its prompt, models, rater and winner, is too slow
for a page (14 s of 16): here the same rows come from one ``COPY (SELECT ...) TO STDOUT`` of the
per-vote columns (ids, booleans, winner and rater names, the time, the seconds, the rationale), which
pandas' C reader parses straight into arrays, names as categories. What repeats per comparison (prompt,
category, models, served lengths) is read once beforehand and spread over the votes by index. Every
hand-written statement lives in this module, with the ORM query it stands for above it;
tests/comparisons/test_vote_copy.py checks that both ways give the same frame and the same CSV file, byte
for byte.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from django.contrib.auth import get_user_model
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Sum
from django.db.models.functions import Coalesce
from psycopg import pq

from comparisons.models import Campaign, Comparison, Rater, Vote, VoteBlock
from comparisons.stats.io import spreadsheet_safe
from generation.models import ModelEntry

# Votes parsed and turned into columns at a time, and bytes read from the COPY at a time: the export's
# memory stays bounded by these.
CHUNK_VOTES = 50_000
COPY_BLOCK_BYTES = 1 << 20

# The columns of the COPY, in order (see `_copy_statement`), and how pandas reads them.
_COPY_DTYPES = {
    "comparison_id": "int64",
    "left_is_a": "bool",
    "winner": "category",
    "rater_id": "int64",
    "rater": "category",
    "submitted_at": "str",
    "seconds": "float64",
    "rationale": "str",
    "identity_reported": "bool",
    "routing_probability": "float64",
}
# Stands in for a vote without a routing probability (none is ever 0 or below): NULL would need pandas'
# NA detection, which every other column does without.
_NO_PROBABILITY = -1.0


def _name(model: type[Any], field_name: str | None = None) -> str:
    """A table's (or, with ``field_name``, one of its columns') quoted name, read from the model's _meta."""
    meta = model._meta
    return connection.ops.quote_name(meta.db_table if field_name is None else meta.get_field(field_name).column)


def _campaign_votes(joins: str = "") -> str:
    """FROM and WHERE of the votes on a campaign's real comparisons, as ``v`` with its comparison ``c`` (and
    ``joins``); the campaign's id is bound. Names from _meta. A vote carries what the reads need of its
    assignment (`Vote`), so the million assignments are not joined."""
    return (
        f"FROM {_name(Vote)} v "
        f"INNER JOIN {_name(Comparison)} c ON c.{_name(Comparison, 'id')} = v.{_name(Vote, 'comparison')} "
        f"{joins}"
        f"WHERE c.{_name(Comparison, 'campaign')} = %s AND NOT c.{_name(Comparison, 'is_attention_check')}"
    )


def _copy_statement() -> str:
    """One vote per line, as CSV, in the export's order.

    It stands for `selectors.vote_rows`' query, less what `_Lookups` reads per comparison::

        Vote.objects.filter(
            comparison__campaign=campaign, comparison__is_attention_check=False
        ).order_by("submitted_at", "pk").values_list(
            "comparison_id", "left_is_a", "winner_model__name" (or "choice"), "rater_id", "rater__user__username",
            "submitted_at", "seconds", "rationale", "identity_reported", "routing_probability",
        )

    with the winner the picked model's name for ``left``/``right`` and the choice otherwise, and
    ``submitted_at`` written as `selectors._iso` writes it (ISO 8601 in UTC, microseconds only when there
    are some, ``Z``) and a missing routing probability as `_NO_PROBABILITY`. Bound values (`_copy_params`): the
    two decisive choices, the stand-in probability, then the campaign's id.
    """
    at = f"v.{_name(Vote, 'submitted_at')} AT TIME ZONE 'UTC'"
    iso = (
        f"to_char({at}, 'YYYY-MM-DD\"T\"HH24:MI:SS') "
        f"|| CASE WHEN date_trunc('second', {at}) = {at} THEN '' ELSE to_char({at}, '.US') END || 'Z'"
    )
    choice = f"v.{_name(Vote, 'choice')}"
    user_model = get_user_model()
    columns = [
        f"v.{_name(Vote, 'comparison')}",
        f"v.{_name(Vote, 'left_is_a')}",
        f"CASE WHEN {choice} IN (%s, %s) THEN m.{_name(ModelEntry, 'name')} ELSE {choice} END",
        f"v.{_name(Vote, 'rater')}",
        f"u.{_name(user_model, 'username')}",
        iso,
        f"v.{_name(Vote, 'seconds')}",
        f"v.{_name(Vote, 'rationale')}",
        f"v.{_name(Vote, 'identity_reported')}",
        f"COALESCE(v.{_name(Vote, 'routing_probability')}, %s)",
    ]
    return (
        f"COPY (SELECT {', '.join(columns)} "  # noqa: S608 - names from _meta, values bound
        + _campaign_votes(
            f"INNER JOIN {_name(Rater)} r ON r.{_name(Rater, 'id')} = v.{_name(Vote, 'rater')} "
            f"INNER JOIN {_name(user_model)} u ON u.{_name(user_model, 'id')} = r.{_name(Rater, 'user')} "
            f"LEFT OUTER JOIN {_name(ModelEntry)} m ON m.{_name(ModelEntry, 'id')} = v.{_name(Vote, 'winner_model')} "
        )
        + f" ORDER BY v.{_name(Vote, 'submitted_at')}, v.{_name(Vote, 'id')}"
        ") TO STDOUT (FORMAT csv)"
    )


def _copy_params(campaign: Campaign) -> list[Any]:
    return [Vote.Choice.LEFT.value, Vote.Choice.RIGHT.value, _NO_PROBABILITY, campaign.pk]


def _copy_out(statement: str, params: list[Any]) -> Generator[bytearray, None, None]:
    """The output of a ``COPY ... TO STDOUT`` in blocks of about COPY_BLOCK_BYTES, read with libpq directly.

    psycopg's `Cursor.copy` hands out one row per call through its generator machinery (about 6 s of CPU
    for a million rows); this loop over ``PQgetCopyData`` takes 0.4 s. Holds the connection's lock while
    it runs, as `Cursor.copy` does: nothing else may use the connection until the blocks are all read."""
    connection.ensure_connection()
    conn = connection.connection
    query = psycopg.ClientCursor(conn).mogrify(statement, params).encode()
    with connection.wrap_database_errors, conn.lock:
        pgconn = conn.pgconn
        pgconn.send_query(query)
        result = pgconn.get_result()
        finished = result is None or result.status != pq.ExecStatus.COPY_OUT
        try:
            block = bytearray()
            while not finished:
                size, data = pgconn.get_copy_data(0)
                if size < 0:
                    finished = True
                    break
                block += data
                if len(block) >= COPY_BLOCK_BYTES:
                    yield block
                    block = bytearray()
            if block:
                yield block
        finally:
            while not finished:  # the reader stopped early: the rest must be read before the result
                finished = pgconn.get_copy_data(0)[0] < 0
            failure = None
            while (end := pgconn.get_result()) is not None:
                if end.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.COPY_OUT):
                    failure = end
            if result is not None and result.status != pq.ExecStatus.COPY_OUT:
                failure = result
        if failure is not None:
            raise psycopg.errors.error_from_result(failure, encoding=conn.info.encoding)


class _BlockReader(io.RawIOBase):
    """A binary file over an iterator of byte blocks, for pandas' reader."""

    def __init__(self, blocks: Generator[bytearray, None, None]) -> None:
        self._blocks = blocks
        self._block = memoryview(b"")

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        # Stopping early reads the rest of the COPY (`_copy_out`'s cleanup): the connection is free again.
        self._blocks.close()
        super().close()

    def readinto(self, buffer: Any) -> int:
        while not self._block:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._block = memoryview(block)
        size = min(len(buffer), len(self._block))
        buffer[:size] = self._block[:size]
        self._block = self._block[size:]
        return size


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


@dataclass
class _Lookups:
    """What repeats across a campaign's votes, read before the COPY (the connection serves nothing else
    during it): per real comparison (sorted by id) its prompt, category, models and served lengths; the
    raters who failed an attention check in the campaign.

    ``for_csv``: every string is already as the CSV writes it (`spreadsheet_safe`), each distinct one
    made safe once, and ``carriage`` says which comparisons hold a carriage return in one of their texts."""

    campaign: Campaign
    for_csv: bool
    ids: np.ndarray
    prompt_id: np.ndarray
    category: np.ndarray
    model_a: np.ndarray
    model_b: np.ndarray
    length_a: np.ndarray
    length_b: np.ndarray
    carriage: np.ndarray
    failed: set[int]

    @classmethod
    def read(cls, campaign: Campaign, *, failed: set[int], lengths: dict[int, int], for_csv: bool) -> _Lookups:
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
        text = spreadsheet_safe if for_csv else (lambda value: value)
        texts = [_objects([text(row[i]) for row in rows]) for i in (1, 2, 3, 4)]
        carriage = np.zeros(len(rows), dtype=bool)
        for values in texts:
            carriage |= _has_carriage_return(values)
        prompt_id, category, model_a, model_b = texts
        return cls(
            campaign=campaign,
            for_csv=for_csv,
            ids=np.array([row[0] for row in rows], dtype=np.int64),
            prompt_id=prompt_id,
            category=category,
            model_a=model_a,
            model_b=model_b,
            length_a=np.array([lengths[row[5]] for row in rows], dtype=np.int64),
            length_b=np.array([lengths[row[6]] for row in rows], dtype=np.int64),
            carriage=carriage,
            failed=failed,
        )

    def pair_columns(self, at: np.ndarray, left_is_a: np.ndarray) -> dict[str, np.ndarray]:
        """``prompt_id``, ``category``, ``model_a``, ``model_b`` and ``left_model`` of votes on the comparisons
        at rows ``at``, shown with A on the left where ``left_is_a``."""
        model_a, model_b = self.model_a[at], self.model_b[at]
        return {
            "prompt_id": self.prompt_id[at],
            "category": self.category[at],
            "model_a": model_a,
            "model_b": model_b,
            "left_model": np.where(left_is_a, model_a, model_b),
        }

    def text(self, value: Any) -> Any:
        return spreadsheet_safe(value) if self.for_csv else value

    def texts(self, values: pd.Categorical) -> tuple[np.ndarray, np.ndarray]:
        """A categorical column as an object array (made safe for CSV when ``for_csv``), and which of its
        values hold a carriage return; each distinct value is looked at once."""
        names = _objects([self.text(name) for name in values.categories])
        return names[values.codes], _has_carriage_return(names)[values.codes]


def _columns(chunk: pd.DataFrame, lookups: _Lookups) -> tuple[dict[str, Any], np.ndarray | None]:
    """VOTE_COLUMNS for a chunk of COPY rows as `selectors.vote_rows` gives them, in arrays; with
    ``lookups.for_csv`` as CSV cells instead (text safe for spreadsheets, booleans as true/false) and which
    rows hold a carriage return (None otherwise)."""
    n = len(chunk)
    at = _comparison_rows(chunk["comparison_id"].to_numpy(), lookups)
    left_is_a = chunk["left_is_a"].to_numpy(dtype=bool)
    winner, winner_carriage = lookups.texts(chunk["winner"].array)
    rater, rater_carriage = lookups.texts(chunk["rater"].array)
    rater_codes, rater_ids = pd.factorize(chunk["rater_id"].to_numpy())
    failed = np.array([int(i) in lookups.failed for i in rater_ids], dtype=bool)[rater_codes]
    rationale = chunk["rationale"].to_numpy(dtype=object)
    reported = chunk["identity_reported"].to_numpy(dtype=bool)
    seconds = round3(chunk["seconds"].to_numpy(dtype=float))
    probability = chunk["routing_probability"].to_numpy(dtype=float)
    unrouted = probability == _NO_PROBABILITY
    columns: dict[str, Any] = {
        "campaign": np.full(n, lookups.text(lookups.campaign.slug), dtype=object),
        **lookups.pair_columns(at, left_is_a),
        "winner": winner,
        "rater": rater,
        "attention_failed": failed,
        "submitted_at": chunk["submitted_at"].to_numpy(dtype=object),
        "seconds": seconds,
        "length_a": lookups.length_a[at],
        "length_b": lookups.length_b[at],
        "rationale": rationale,
        "identity_reported": reported,
        "routing_probability": np.where(unrouted, np.nan, probability),
    }
    if not lookups.for_csv:
        return columns, None
    words = np.array(["false", "true"], dtype=object)
    # Most votes have no rationale: only the others are looked at, one by one.
    written = np.flatnonzero(rationale != "")
    rationale = rationale.copy()
    rationale[written] = [spreadsheet_safe(text) for text in rationale[written]]
    carriage = lookups.carriage[at] | winner_carriage | rater_carriage
    carriage[written] |= _has_carriage_return(rationale[written])
    columns |= {
        "attention_failed": words[failed.astype(np.int8)],
        "identity_reported": words[reported.astype(np.int8)],
        "seconds": seconds.tolist(),
        "length_a": columns["length_a"].tolist(),
        "length_b": columns["length_b"].tolist(),
        "rationale": rationale,
        # Python floats (written as `vote_rows`' are), an empty cell for none.
        "routing_probability": np.where(unrouted, "", probability.astype(object)),
    }
    return columns, carriage


def _chunks(
    campaign: Campaign, lookups: _Lookups, *, chunk_votes: int | None
) -> Iterator[tuple[dict[str, Any], np.ndarray | None]]:
    """`_columns` of the campaign's votes, ``chunk_votes`` at a time (all at once with None)."""
    source = io.BufferedReader(_BlockReader(_copy_out(_copy_statement(), _copy_params(campaign))), COPY_BLOCK_BYTES)
    options: dict[str, Any] = {
        "header": None,
        "names": list(_COPY_DTYPES),
        "dtype": _COPY_DTYPES,
        "true_values": ["t"],
        "false_values": ["f"],
        "na_filter": False,
        "encoding": "utf-8",
    }
    try:
        if chunk_votes is None:
            chunk = pd.read_csv(source, **options)
            if len(chunk):
                yield _columns(chunk, lookups)
            return
        with pd.read_csv(source, chunksize=chunk_votes, **options) as parts:
            for chunk in parts:
                yield _columns(chunk, lookups)
    except pd.errors.EmptyDataError:
        return  # no vote: the COPY wrote nothing at all
    finally:
        source.close()


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


def _binary_rows(data: bytes) -> np.ndarray:
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

    Names are looked up here (the models and prompts per comparison, the raters by id): PostgreSQL scans the
    vote table alone, a million votes in about a second of its time."""
    lookups = _Lookups.read(campaign, failed=failed, lengths=lengths, for_csv=False)
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
        return analysis_columns(campaign=campaign, failed=failed, lengths=lengths)
    probability = field("routing_probability", float)
    return {
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
    rows = _binary_rows(b"".join(_copy_out(_analysis_statement(), _analysis_params(campaign, after))))
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
    unsealed = _real_votes(campaign) - sum(len(block["vote_id"]) for block in blocks)
    settled = _settled_vote_id() if unsealed >= BLOCK_VOTES and not connection.in_atomic_block else None
    tail = _votes_after(campaign, after)
    if settled is not None:
        _seal(campaign, tail, settled)
    if not blocks:
        return tail, False
    return {name: np.concatenate([block[name] for block in (*blocks, tail)]) for name, _ in _BLOCK_FIELDS}, True


def _real_votes(campaign: Campaign) -> int:
    """The campaign's votes on real comparisons by the comparisons' counts (each vote adds one as it is written)."""
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


def _comparison_rows(comparison: np.ndarray, lookups: _Lookups) -> np.ndarray:
    """The row of `lookups` of each vote's comparison."""
    at = np.minimum(np.searchsorted(lookups.ids, comparison), max(len(lookups.ids) - 1, 0))
    if not len(lookups.ids) or (lookups.ids[at] != comparison).any():
        # Comparisons are created when the campaign opens, before any vote: this is a broken database.
        raise RuntimeError(f"Votes of campaign {lookups.campaign.slug!r} on comparisons it does not have.")
    return at


def vote_columns(*, campaign: Campaign, failed: set[int], lengths: dict[int, int]) -> dict[str, Any] | None:
    """The campaign's vote table as one array per VOTE_COLUMNS entry (None without votes), read by COPY.

    ``failed``: the raters who failed an attention check in the campaign; ``lengths``: served lengths by
    response id (`selectors.attention_failed_raters`, `selectors.served_lengths`)."""
    lookups = _Lookups.read(campaign, failed=failed, lengths=lengths, for_csv=False)
    for columns, _ in _chunks(campaign, lookups, chunk_votes=None):
        return columns
    return None


class VoteCsv:
    """The votes export as CSV text in pieces (header first), read by COPY; ``rows`` counts the votes written.

    Each piece holds up to CHUNK_VOTES votes. The cells are those `csv_lines` writes for `vote_rows`
    (`spreadsheet_safe`, each repeated string made safe once), and a row holding a carriage return is
    written with every field quoted as there, so the text is the same, byte for byte."""

    def __init__(self, campaign: Campaign, *, header: list[str], failed: set[int], lengths: dict[int, int]) -> None:
        self.campaign = campaign
        self.header = header
        self.failed = failed
        self.lengths = lengths
        self.rows = 0

    def __iter__(self) -> Iterator[str]:
        yield ",".join(self.header) + "\n"  # plain names: nothing to quote or neutralize
        lookups = _Lookups.read(self.campaign, failed=self.failed, lengths=self.lengths, for_csv=True)
        for columns, carriage in _chunks(self.campaign, lookups, chunk_votes=CHUNK_VOTES):
            assert carriage is not None
            self.rows += len(carriage)
            yield _csv_text(columns, carriage)


def _csv_text(columns: dict[str, Any], carriage: np.ndarray) -> str:
    """The rows of ``columns`` (CSV cells, one array or list per column) as `csv.writer` writes them, a row with
    ``carriage`` set with every field quoted.

    A million rows through `csv.writer.writerows` took 3.8 s, most of it deciding over and over how to write
    the same few values: here each distinct value of a column is written once, and the rows are joined from
    those pieces. The times (ISO 8601, one per vote) never hold a character a CSV field must quote."""
    fields = []
    for name, values in columns.items():
        if name == "submitted_at":
            fields.append(values)
            continue
        # Lists hold numbers (seconds, lengths), factorized as such; arrays hold text cells.
        codes, distinct = pd.factorize(np.asarray(values))
        fields.append(_written(distinct.tolist())[codes])
    lines = list(map(",".join, zip(*fields, strict=True)))
    quoted = np.flatnonzero(carriage)
    if quoted.size:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
        for row in quoted:
            buffer.seek(0)
            buffer.truncate(0)
            writer.writerow([values[row] for values in columns.values()])
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
