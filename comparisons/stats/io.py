"""Reading vote files and writing CSV as a stream (no Django here either)."""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd

from .table import VoteTableError


def read_votes_csv(path: str | Path) -> pd.DataFrame:
    """Read a vote CSV as text columns; raises VoteTableError for a missing, unreadable, non-UTF-8 or broken file."""
    path = Path(path)
    if not path.exists():
        raise VoteTableError(f"The vote file {str(path)!r} does not exist.")
    if path.is_dir():
        raise VoteTableError(f"{str(path)!r} is a folder, not a vote file.")
    try:
        with warnings.catch_warnings():
            # A first row longer than the header makes pandas guess index columns or drop data: refuse.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(
                path,
                dtype=object,
                keep_default_na=False,
                index_col=False,
                encoding="utf-8",
                encoding_errors="strict",
            )
    except pd.errors.ParserWarning as exc:
        raise VoteTableError(
            f"The vote file {str(path)!r} is not valid CSV: a line has more fields than the header."
        ) from exc
    except UnicodeDecodeError as exc:
        raise VoteTableError(
            f"The vote file {str(path)!r} is not UTF-8 text (undecodable byte at position {exc.start}); "
            "save it as UTF-8 CSV."
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise VoteTableError(f"The vote file {str(path)!r} is empty: it needs a header line and votes.") from exc
    except pd.errors.ParserError as exc:
        raise VoteTableError(f"The vote file {str(path)!r} is not valid CSV: {exc}".rstrip(".") + ".") from exc
    except OSError as exc:
        raise VoteTableError(f"The vote file {str(path)!r} cannot be read: {exc.strerror or exc}.") from exc


def csv_lines(header: Iterable[str], rows: Iterable[Iterable[object]], *, batch: int = 500) -> Iterator[str]:
    """CSV text in pieces of ``batch`` rows: memory stays bounded however many rows ``rows`` yields."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def take() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate(0)
        return text

    writer.writerow(header)
    pending = 0
    for row in rows:
        writer.writerow(row)
        pending += 1
        if pending >= batch:
            yield take()
            pending = 0
    yield take()
