"""Frozen result snapshots: `snapshot_publish` writes a campaign's votes, analysis and manifest once, for good.

The votes are read in one consistent view of the database (REPEATABLE READ on PostgreSQL; SQLite's writers
are serialized), the analysis is computed from the very CSV text the bundle holds (`stats.snapshot`), and the
row is never updated afterwards: the model, its queryset and a database trigger all refuse. Later votes go
into a later snapshot, published beside the earlier ones.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Q
from django.urls import reverse
from django.utils import timezone

from comparisons import vote_copy
from comparisons.models import Campaign, Comparison, Rater, ResultSnapshot, Vote
from comparisons.stats import csv_lines
from comparisons.stats.snapshot import (
    ANALYSIS_OPTIONS,
    SNAPSHOT_COLUMNS,
    analysis_text,
    json_text,
    sha256_text,
    votes_digest,
)
from comparisons.stats.table import VoteTableError
from generation.errors import InputError
from generation.models import ModelEntry, Response

MANIFEST_VERSION = 1


def code_version() -> str:
    """`git describe --always --dirty --tags` of the running code, else the installed package's version."""
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        if described:
            return f"git {described}"
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return f"blindeval {importlib.metadata.version('blindeval')}"
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _models_manifest(campaign: Campaign) -> list[dict[str, Any]]:
    """Per model: the weights' or the outputs file's hashes and the decoding settings behind the compared answers."""
    compared = Comparison.objects.filter(campaign=campaign).order_by()
    in_pairs = Q(pk__in=compared.values("response_a_id")) | Q(pk__in=compared.values("response_b_id"))
    provenance: dict[str, set[str]] = {}
    for name, config in Response.objects.filter(in_pairs).order_by().values_list("model__name", "generator_config"):
        provenance.setdefault(name, set()).add(json.dumps(config or {}, sort_keys=True))
    out = []
    for model in ModelEntry.objects.filter(campaigns=campaign).order_by("name"):
        configs = [json.loads(text) for text in sorted(provenance.get(model.name, ()))]
        checkpoint = model.kind == ModelEntry.Kind.CHECKPOINT
        out.append(
            {
                "name": model.name,
                "kind": model.kind,
                "checkpoint_sha256": model.weights_sha256 or None,
                "source_sha256": model.source_sha256 or None,
                "chat_template_sha256": model.chat_template_sha256 or None,
                "outputs_sha256": sorted({c["outputs_sha256"] for c in configs if c.get("outputs_sha256")}),
                "decoding": {
                    "template": model.template,
                    "max_new_tokens": model.max_new_tokens,
                    "temperature": model.temperature,
                    "top_p": model.top_p,
                    "seed": model.seed,
                    "dtype": model.dtype,
                }
                if checkpoint
                else None,
                "responses_provenance": configs,
            }
        )
    return out


def _options(campaign: Campaign, *, exclude_flagged: bool, exclude_identity_reports: bool, **chosen: Any) -> dict:
    """The analysis options, as the results page would use them: the baseline when it has votes, and with
    ``exclude_flagged`` the raters failed or flagged now, plus votes under MIN_SECONDS_PER_VOTE."""
    options = {**ANALYSIS_OPTIONS, **chosen, "exclude_identity_reports": exclude_identity_reports}
    if (
        campaign.baseline is not None
        and Vote.objects.filter(
            Q(comparison__response_a__model=campaign.baseline) | Q(comparison__response_b__model=campaign.baseline),
            comparison__campaign=campaign,
            comparison__is_attention_check=False,
        ).exists()
    ):
        options["baseline"] = campaign.baseline.name
    if exclude_flagged:
        options["exclude_flagged"] = True
        options["min_seconds"] = float(settings.MIN_SECONDS_PER_VOTE)
        flagged = Rater.objects.filter(flagged=True, assignments__comparison__campaign=campaign)
        options["exclude_raters"] = sorted(set(flagged.values_list("user__username", flat=True)))
    return options


def _rows_with_ids(campaign: Campaign) -> tuple[list[list[Any]], list[int], list[str]]:
    # The two queries walk the same votes in the same order (submitted_at, pk) within one consistent read.
    from comparisons.results import vote_csv_rows  # results imports services: import it when called

    rows = list(vote_csv_rows(campaign))
    ids_choices = list(
        Vote.objects.filter(comparison__campaign=campaign, comparison__is_attention_check=False)
        .order_by("submitted_at", "pk")
        .values_list("pk", "choice")
    )
    ids, choices = [i for i, _ in ids_choices], [c for _, c in ids_choices]
    return [[*row, i, c] for row, i, c in zip(rows, ids, choices, strict=True)], ids, choices


def snapshot_publish(
    *,
    campaign: Campaign,
    published_by: str = "",
    exclude_flagged: bool = False,
    exclude_identity_reports: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    ci: str = "bca",
) -> ResultSnapshot:
    """Freeze the campaign's results now as snapshot number N+1 and return it.

    Raises InputError, writing nothing, when the campaign has no vote or the options leave none to analyse."""
    fresh = not connection.in_atomic_block
    with transaction.atomic():
        if fresh:
            vote_copy.read_one_snapshot()
        # Serialize publications of one campaign so their numbers never collide.
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        rows, ids, choices = _rows_with_ids(locked)
        if not rows:
            raise InputError(f"Campaign {locked.slug!r} has no votes yet: there is nothing to publish.")
        options = _options(
            locked,
            exclude_flagged=exclude_flagged,
            exclude_identity_reports=exclude_identity_reports,
            n_boot=n_boot,
            seed=seed,
            ci=ci,
        )
        votes_csv = "".join(csv_lines(SNAPSHOT_COLUMNS, rows))
        try:
            analysis = analysis_text(votes_csv, options)
        except VoteTableError as exc:
            raise InputError(f"The results of campaign {locked.slug!r} cannot be published: {exc}") from None
        number = (ResultSnapshot.objects.filter(campaign=locked).aggregate(n=Max("number"))["n"] or 0) + 1
        now = timezone.now()
        votes_sha256 = votes_digest(ids, choices)
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "campaign": {
                "slug": locked.slug,
                "title": locked.title,
                "eval_set": locked.eval_set.name,
                "votes_per_comparison": locked.votes_per_comparison,
            },
            "snapshot": number,
            "url": reverse("comparisons:snapshot", kwargs={"slug": locked.slug, "number": number}),
            "published_at": now.isoformat().replace("+00:00", "Z"),
            "published_by": published_by,
            "votes": len(rows),
            "votes_sha256": votes_sha256,
            "models": _models_manifest(locked),
            "analysis_options": options,
            "code_version": code_version(),
            "files": {"votes.csv": sha256_text(votes_csv), "analysis.json": sha256_text(analysis)},
            "reproduce": f"python manage.py analyze --snapshot {locked.slug}-snapshot-{number}.zip",
        }
        return ResultSnapshot.objects.create(
            campaign=locked,
            number=number,
            published_at=now,
            published_by=published_by,
            votes_count=len(rows),
            votes_sha256=votes_sha256,
            manifest=json_text(manifest),
            votes_csv=votes_csv,
            analysis_json=analysis,
        )
