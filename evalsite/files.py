"""Output files that readers never see half-written: written beside the target, then renamed over it."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO


@contextmanager
def atomic_text_file(path: Path) -> Iterator[TextIO]:
    """Yield a text handle on a temporary file beside ``path``; it replaces ``path`` only if the block succeeds."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class OutputFolderMissing(ValueError):
    """The folder an output file should go into does not exist."""


@contextmanager
def text_output(out: str) -> Iterator[TextIO]:
    """``-`` is standard output; any other value is a path written atomically (its folder must exist)."""
    if out == "-":
        yield sys.stdout
        return
    path = Path(out)
    if not path.parent.is_dir():
        raise OutputFolderMissing(
            f"The folder {str(path.parent)!r} does not exist; create it first. Nothing was written."
        )
    with atomic_text_file(path) as handle:
        yield handle
