"""Content reports: a rater's flag, sent with their vote, that an answer of the pair is harmful, false or offensive.

The rater names the answer by its side on their screen ("A" = left); `content_reports_store` maps the side to the
response through the assignment's left/right order, inside the vote's transaction. Nothing here tells the rater
which model wrote what.
"""

from __future__ import annotations

from typing import Any

from comparisons.models import ContentReport

REPORT_KINDS = tuple(ContentReport.Kind.values)
REPORT_SIDES = ("A", "B")
_EXAMPLE = '[{"side": "A", "kind": "harmful"}]'


class ContentReportInvalid(ValueError):
    """The vote's ``content_reports`` field is malformed; the message says how (the API answers 400)."""


def content_reports_parse(raw: Any) -> list[tuple[str, str]]:
    """The (side, kind) pairs of a vote's ``content_reports`` field (None or missing = none), duplicates dropped.

    Raises ContentReportInvalid unless it is a list of objects with ``side`` "A" or "B" and ``kind`` one of
    harmful, false, offensive (and no other keys)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ContentReportInvalid(f"'content_reports' must be a list like {_EXAMPLE}.")
    if len(raw) > len(REPORT_SIDES) * len(REPORT_KINDS):
        raise ContentReportInvalid(
            f"'content_reports' has {len(raw)} items; there are only {len(REPORT_SIDES) * len(REPORT_KINDS)} "
            "possible reports (each side, each kind)."
        )
    found: list[tuple[str, str]] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) != {"side", "kind"}:
            raise ContentReportInvalid(
                f"'content_reports' item {index} must be an object with exactly 'side' and 'kind', like {_EXAMPLE}."
            )
        side, kind = item["side"], item["kind"]
        if side not in REPORT_SIDES:
            raise ContentReportInvalid(f"'content_reports' item {index}: 'side' must be \"A\" or \"B\", not {side!r}.")
        if kind not in REPORT_KINDS:
            raise ContentReportInvalid(
                f"'content_reports' item {index}: 'kind' must be one of {', '.join(REPORT_KINDS)}, not {kind!r}."
            )
        if (side, kind) not in found:
            found.append((side, kind))
    return found


def content_reports_store(
    *, vote_id: int, left_response_id: int, right_response_id: int, reports: list[tuple[str, str]]
) -> None:
    """Write a new vote's reports (call it inside the vote's transaction): side A is the left response."""
    if reports:
        side = {"A": left_response_id, "B": right_response_id}
        ContentReport.objects.bulk_create(
            ContentReport(vote_id=vote_id, response_id=side[s], kind=kind) for s, kind in reports
        )
