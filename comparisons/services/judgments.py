"""Automatic judges: import an AlpacaEval annotations file as one judge's verdicts on a campaign's comparisons.

`judgments_import` reads and checks the whole file and matches every item before writing anything, then
replaces the judge's earlier verdicts on this campaign in one transaction, so importing the same file again
changes nothing and a bad file leaves the database as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from comparisons.annotations import ComparisonKey, describe, match_annotations, parse_annotations
from comparisons.models import Campaign, Comparison, Judgment
from generation.errors import InputError
from generation.formats import listing

MAX_JUDGE_NAME = Judgment._meta.get_field("judge").max_length or 200


@dataclass
class JudgmentImport:
    """What `judgments_import` did: verdicts stored, earlier verdicts of the judge it replaced, and the file's
    items that matched no comparison (described by entry number, generators and instruction)."""

    judge: str
    items: int
    imported: int
    replaced: int
    unmatched: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"Imported {self.imported} verdicts of judge {self.judge!r} ({self.items} items in the file)."]
        if self.replaced:
            out.append(f"They replace the judge's {self.replaced} earlier verdicts on this campaign.")
        if self.unmatched:
            out.append(
                f"{len(self.unmatched)} item{'s' if len(self.unmatched) != 1 else ''} matched no comparison of the "
                f"campaign and {'were' if len(self.unmatched) != 1 else 'was'} left out: {listing(self.unmatched)}."
            )
        return out


def _judge_name(judge: str) -> str:
    name = judge.strip()
    if not name:
        raise InputError("The judge needs a name (--judge NAME), e.g. the annotator's name in AlpacaEval.")
    if len(name) > MAX_JUDGE_NAME:
        raise InputError(f"The judge's name is {len(name)} characters long; at most {MAX_JUDGE_NAME} are allowed.")
    if not name.isprintable():
        raise InputError(f"The judge's name {name!r} contains control characters; use plain text.")
    return name


def judgments_import(*, campaign: Campaign, judge: str, path: Path) -> JudgmentImport:
    """Store the judge's verdict on every comparison of ``campaign`` that an item of the file matches.

    Raises InputError, changing nothing, for an unreadable file, a file that is not AlpacaEval's annotations
    format, a preference outside 1–2, two items on one comparison, or a file none of whose items matches."""
    name = _judge_name(judge)
    items = parse_annotations(path)
    comparisons = (
        Comparison.objects.filter(campaign=campaign, is_attention_check=False)
        .order_by("pk")
        .values_list("pk", "prompt__instruction", "prompt__input", "response_a__text", "response_b__text")
    )
    keys = [ComparisonKey(pk, instruction, input_text, a, b) for pk, instruction, input_text, a, b in comparisons]
    if not keys:
        raise InputError(
            f"Campaign {campaign.slug!r} has no comparisons yet (open it first), so there is nothing to match the "
            "judge's annotations to. Nothing was imported."
        )
    match = match_annotations(items, comparisons=keys, path=path)
    now = timezone.now()
    with transaction.atomic():
        earlier = Judgment.objects.filter(judge=name, comparison__campaign=campaign)
        replaced, _ = earlier.delete()
        Judgment.objects.bulk_create(
            Judgment(comparison_id=pk, judge=name, preference=preference, annotator=annotator, imported_at=now)
            for pk, (preference, annotator) in sorted(match.matched.items())
        )
    return JudgmentImport(
        judge=name,
        items=len(items),
        imported=len(match.matched),
        replaced=replaced,
        unmatched=[describe(item) for item in match.unmatched],
    )
