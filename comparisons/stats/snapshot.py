"""Frozen result snapshots: the bundle's files, their hashes, and the analysis they must reproduce exactly.

Pure (no Django): the site publishes with `snapshot_analysis` and `analysis_text` on the bundle's own votes
CSV, and ``manage.py analyze --snapshot BUNDLE`` runs the same two functions on the same file, so the JSON
it prints is byte for byte the published one. A bundle is a zip (or a folder) of ``manifest.json``,
``votes.csv`` and ``analysis.json``.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from .io import read_votes_text
from .report import analyze
from .table import EXPORT_COLUMNS, VoteTableError

# The votes export's columns, then each vote's id and its choice as cast (left/right/tie/both_bad).
SNAPSHOT_COLUMNS = (*EXPORT_COLUMNS, "vote_id", "choice")
BUNDLE_FILES = ("manifest.json", "votes.csv", "analysis.json")
# The analysis options a manifest records, with the values `analyze` takes when one is absent.
ANALYSIS_OPTIONS: dict[str, Any] = {
    "baseline": None,
    "n_boot": 1000,
    "seed": 0,
    "ci": "bca",
    "confidence": 0.95,
    "both_bad": "tie",
    "exclude_flagged": False,
    "min_seconds": None,
    "exclude_identity_reports": False,
    "exclude_raters": [],
}
# Fixed timestamp of every zip entry, so the same snapshot always downloads as the same bytes.
_ZIP_TIME = (2000, 1, 1, 0, 0, 0)


class SnapshotError(ValueError):
    """A bundle that is incomplete, altered or does not reproduce; the message says which file and how."""


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def votes_digest(ids: Iterable[int | str], choices: Iterable[object]) -> str:
    """sha256 of the votes' "id,choice" lines in id order: changes when any vote is added, removed or altered."""
    pairs = sorted((int(i), str(c)) for i, c in zip(ids, choices, strict=True))
    return sha256_text("".join(f"{i},{c}\n" for i, c in pairs))


def json_text(value: Any) -> str:
    """The one JSON spelling of bundle files: sorted keys, two-space indent, UTF-8 text, a final newline."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, sort_keys=True, indent=2) + "\n"


def snapshot_analysis(frame: pd.DataFrame, options: dict[str, Any]) -> dict:
    """`analyze` of the snapshot's vote table under the manifest's options (``exclude_raters`` dropped first)."""
    options = {**ANALYSIS_OPTIONS, **options}
    unknown = sorted(set(options) - set(ANALYSIS_OPTIONS))
    if unknown:
        raise SnapshotError(f"Unknown analysis option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}.")
    if options["exclude_raters"]:
        frame = frame[~frame["rater"].astype(str).isin(options["exclude_raters"])]
    return analyze(
        frame,
        baseline=options["baseline"],
        n_boot=options["n_boot"],
        seed=options["seed"],
        ci=options["ci"],
        confidence=options["confidence"],
        both_bad=options["both_bad"],
        exclude_flagged=options["exclude_flagged"],
        min_seconds=options["min_seconds"],
        exclude_identity_reports=options["exclude_identity_reports"],
        first_line=2,
    )


def analysis_text(votes_csv: str, options: dict[str, Any]) -> str:
    """The analysis JSON of a snapshot's votes CSV text: what analysis.json holds."""
    frame = read_votes_text(votes_csv, label="votes.csv")
    return json_text(snapshot_analysis(frame, options))


def bundle_zip(files: dict[str, str], *, folder: str) -> bytes:
    """The bundle as zip bytes, every file under ``folder/``; the same files always give the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in BUNDLE_FILES:
            info = zipfile.ZipInfo(f"{folder}/{name}", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[name].encode("utf-8"))
    return buffer.getvalue()


def bundle_read(path: str | Path) -> dict[str, str]:
    """The three files of a bundle (a .zip as downloaded, or the folder it unpacks to), as text."""
    path = Path(path)
    if not path.exists():
        raise SnapshotError(f"The snapshot bundle {str(path)!r} does not exist.")
    raw: dict[str, bytes] = {}
    if path.is_dir():
        for name in BUNDLE_FILES:
            if (path / name).is_file():
                raw[name] = (path / name).read_bytes()
    else:
        try:
            with zipfile.ZipFile(path) as archive:
                for entry in archive.infolist():
                    name = entry.filename.rsplit("/", 1)[-1]
                    if name in BUNDLE_FILES and not entry.is_dir():
                        if name in raw:
                            raise SnapshotError(f"The snapshot bundle {str(path)!r} holds two files named {name}.")
                        raw[name] = archive.read(entry)
        except zipfile.BadZipFile:
            raise SnapshotError(
                f"The snapshot bundle {str(path)!r} is neither a zip file nor a folder: give the bundle as "
                "downloaded from the snapshot page (or the folder it unpacks to)."
            ) from None
    missing = [name for name in BUNDLE_FILES if name not in raw]
    if missing:
        raise SnapshotError(
            f"The snapshot bundle {str(path)!r} lacks {', '.join(missing)}; a bundle holds {', '.join(BUNDLE_FILES)}."
        )
    try:
        return {name: data.decode("utf-8") for name, data in raw.items()}
    except UnicodeDecodeError:
        raise SnapshotError(f"A file of the snapshot bundle {str(path)!r} is not UTF-8 text.") from None


def bundle_verify(files: dict[str, str]) -> dict[str, Any]:
    """Check a bundle: the files' hashes against the manifest, the votes' ids and choices against the votes hash,
    and the analysis recomputed from votes.csv against analysis.json, character for character. Returns the
    manifest; raises SnapshotError naming the first thing that differs."""
    try:
        manifest = json.loads(files["manifest.json"])
        hashes = manifest["files"]
        expected_votes, options = manifest["votes_sha256"], manifest["analysis_options"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(
            f"manifest.json is not a snapshot manifest (it needs 'files', 'votes_sha256' and 'analysis_options'): "
            f"{exc}."
        ) from None
    for name in ("votes.csv", "analysis.json"):
        actual = sha256_text(files[name])
        if actual != hashes.get(name):
            raise SnapshotError(
                f"{name} has sha256 {actual}, but the manifest records {hashes.get(name)}: the file was changed "
                "after publication."
            )
    try:
        frame = read_votes_text(files["votes.csv"], label="votes.csv")
    except VoteTableError as exc:
        raise SnapshotError(str(exc)) from None
    if not {"vote_id", "choice"} <= set(frame.columns):
        raise SnapshotError("votes.csv has no 'vote_id' and 'choice' columns, so its votes hash cannot be checked.")
    actual_votes = votes_digest(frame["vote_id"], frame["choice"])
    if actual_votes != expected_votes:
        raise SnapshotError(
            f"The votes' ids and choices hash to {actual_votes}, but the manifest records {expected_votes}."
        )
    try:
        reproduced = json_text(snapshot_analysis(frame, options))
    except VoteTableError as exc:
        raise SnapshotError(f"The analysis of votes.csv failed: {exc}") from None
    if reproduced != files["analysis.json"]:
        raise SnapshotError(
            "The analysis recomputed from votes.csv differs from analysis.json (different code or library "
            f"versions? The snapshot was published with code version {manifest.get('code_version')!r})."
        )
    return manifest
