"""Reading vote files and writing CSV as a stream (no Django here either).

CSV written here is meant for spreadsheets too, so text cells that a spreadsheet would run as a formula
(starting with =, +, -, @, tab or carriage return: CSV injection, OWASP) get a leading apostrophe, which
spreadsheets show as text; numbers such as -1.5 are left alone. `read_votes_csv` takes the apostrophe off
again, so every export reads back exactly as it was written.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from .table import VoteTableError

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
# A neutralized cell: apostrophes, then a formula start (a value that began with apostrophes and a formula start
# got one more apostrophe, so taking exactly one off always restores it).
_NEUTRALIZED = re.compile(r"'+[=+\-@\t\r]")


_RISKY_FIRST = frozenset("'=+-@\t\r")


def spreadsheet_safe(value: object) -> object:
    """A text cell a spreadsheet would run as a formula, with a leading apostrophe; anything else as it is."""
    if not isinstance(value, str) or not value or value[0] not in _RISKY_FIRST:
        return value  # the common case, decided by one character
    if value.lstrip("'")[:1] in FORMULA_STARTS and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def spreadsheet_unsafe(frame: pd.DataFrame) -> pd.DataFrame:
    """Undo `spreadsheet_safe` on every text cell of a frame read from CSV.

    Each distinct value of a column is looked at once (a vote file repeats its names, prompts and numbers a
    million times): matching every cell took 10 s of a million-vote `analyze`."""
    for column in frame.columns:
        values = frame[column]
        if values.dtype != object:
            continue
        codes, distinct = pd.factorize(values.to_numpy(dtype=object))
        neutralized = np.fromiter(
            (isinstance(value, str) and _NEUTRALIZED.match(value) is not None for value in distinct),
            dtype=bool,
            count=len(distinct),
        )
        if neutralized.any():
            rows = np.append(neutralized, False)[codes]  # a missing cell (code -1) is left alone
            frame.loc[rows, column] = values[rows].str[1:]
    return frame


def read_votes_csv(path: str | Path) -> pd.DataFrame:
    """Read a vote CSV as text columns; raises VoteTableError for a missing, unreadable, non-UTF-8 or broken file."""
    path = Path(path)
    if not path.exists():
        raise VoteTableError(f"The vote file {str(path)!r} does not exist.")
    if path.is_dir():
        raise VoteTableError(f"{str(path)!r} is a folder, not a vote file.")
    return _read_csv(path, label=str(path))


def read_votes_text(text: str, *, label: str) -> pd.DataFrame:
    """`read_votes_csv` on CSV text already in memory (``label`` names it in error messages)."""
    return _read_csv(io.StringIO(text), label=label)


def _read_csv(source: Path | io.StringIO, *, label: str) -> pd.DataFrame:
    path = label  # the messages below name the file by its label
    try:
        with warnings.catch_warnings():
            # A first row longer than the header makes pandas guess index columns or drop data: refuse.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                source,
                dtype=object,
                keep_default_na=False,
                index_col=False,
                encoding="utf-8",
                encoding_errors="strict",
            )
            return spreadsheet_unsafe(frame)
    except pd.errors.ParserWarning as exc:
        raise VoteTableError(
            f"The vote file {path!r} is not valid CSV: a line has more fields than the header."
        ) from exc
    except UnicodeDecodeError as exc:
        raise VoteTableError(
            f"The vote file {path!r} is not UTF-8 text (undecodable byte at position {exc.start}); "
            "save it as UTF-8 CSV."
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise VoteTableError(f"The vote file {path!r} is empty: it needs a header line and votes.") from exc
    except pd.errors.ParserError as exc:
        raise VoteTableError(f"The vote file {path!r} is not valid CSV: {exc}".rstrip(".") + ".") from exc
    except OSError as exc:
        raise VoteTableError(f"The vote file {path!r} cannot be read: {exc.strerror or exc}.") from exc


def csv_lines(header: Iterable[str], rows: Iterable[Iterable[object]], *, batch: int = 500) -> Iterator[str]:
    """CSV text in pieces of ``batch`` rows: memory stays bounded however many rows ``rows`` yields. Text cells
    that would start a spreadsheet formula are neutralized (`spreadsheet_safe`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    # Python's writer quotes a field holding the line terminator's characters only, so a carriage return inside
    # a text (an output with Windows line endings) would go out bare and split the row for every reader: rows
    # with one are written with every field quoted.
    quoting_writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def take() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate(0)
        return text

    writer.writerow(header)
    pending = 0
    for row in rows:
        safe = [spreadsheet_safe(value) for value in row]
        if any(isinstance(value, str) and "\r" in value for value in safe):
            quoting_writer.writerow(safe)
        else:
            writer.writerow(safe)
        pending += 1
        if pending >= batch:
            yield take()
            pending = 0
    yield take()
