"""Analyst pages: a campaign's results and its exports. Thin: the numbers come from comparisons.results."""

from __future__ import annotations

import json
import shlex

from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from comparisons import services
from comparisons.access import analyst_required
from comparisons.judging import content_report_rates, judge_comparison
from comparisons.models import Campaign, ResultSnapshot
from comparisons.results import (
    EXPORT_KINDS,
    campaign_analysis,
    export_stream,
    identity_leak_rates,
    identity_reports_count,
    results_figures,
)
from comparisons.selectors import campaign_vote_totals
from comparisons.stats import components_words, format_p, headline, interval_words
from comparisons.stats.snapshot import bundle_zip
from generation.errors import InputError

_CONTENT_TYPES = {
    "votes": ("text/csv; charset=utf-8", "csv"),
    "prompts": ("text/csv; charset=utf-8", "csv"),
    "summary": ("text/csv; charset=utf-8", "csv"),
    "annotations": ("application/json; charset=utf-8", "json"),
    "judges": ("text/csv; charset=utf-8", "csv"),
    "judgments": ("text/csv; charset=utf-8", "csv"),
    "content_reports": ("text/csv; charset=utf-8", "csv"),
}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _ci(low: float | None, high: float | None) -> str:
    return "–" if low is None or high is None else f"{low:.1f}–{high:.1f}"


@require_GET
@analyst_required
def results(request: HttpRequest, slug: str) -> HttpResponse:
    campaign = get_object_or_404(Campaign.objects.select_related("baseline", "eval_set"), slug=slug)
    exclude_flagged = request.GET.get("exclude_flagged") == "1"
    exclude_identity = request.GET.get("exclude_identity_reports") == "1"
    analysis = campaign_analysis(
        campaign=campaign, exclude_flagged=exclude_flagged, exclude_identity_reports=exclude_identity
    )
    context: dict = {
        "campaign": campaign,
        "progress": campaign_vote_totals(campaign=campaign),
        "analysis": analysis,
        "exclude_flagged": exclude_flagged,
        "exclude_identity": exclude_identity,
        "export_kinds": EXPORT_KINDS,
        "identity_reports": identity_reports_count(campaign=campaign),
        "identity_rates": [{**row, "percent": _pct(row["rate"])} for row in identity_leak_rates(campaign=campaign)],
        **_judges_reports_snapshots(campaign),
    }
    if analysis is not None:
        confidence = analysis["settings"]["confidence"]
        level = f"{100 * confidence:g}%"
        models = analysis["win_rate_matrix"]["models"]
        length = analysis["length_bias"]
        context.update(
            headlines=[headline(pair, confidence=confidence) for pair in analysis["pairs"]],
            pairs=[
                {**pair, "rate": _pct(pair["win_rate"]), "ci": interval_words(pair, level=level)}
                | {"no_ties": _pct(pair["win_rate_no_ties"]), "p": format_p(pair["p_value"])}
                | {"lc": _pct(pair.get("lc_win_rate")), "lc_ci": _ci(pair.get("lc_ci_low"), pair.get("lc_ci_high"))}
                | {
                    "weighted": _pct(pair.get("weighted_win_rate")),
                    "weighted_ci": _ci(pair.get("weighted_ci_low"), pair.get("weighted_ci_high")),
                }
                for pair in analysis["pairs"]
            ],
            length_controlled=any(pair.get("lc_win_rate") is not None for pair in analysis["pairs"]),
            routed="weighted_ranking" in analysis,
            components_warning=components_words(analysis["ranking_components"]),
            **results_figures(analysis),
            matrix=[
                {"model": model, "cells": [_pct(value) for value in row]}
                for model, row in zip(models, analysis["win_rate_matrix"]["values"], strict=True)
            ],
            categories=[
                {**c, "rate": _pct(c["win_rate"]), "ci": interval_words(c, level=level)} for c in analysis["categories"]
            ],
            position=analysis["position_bias"],
            position_p=format_p(analysis["position_bias"]["p_value"]),
            length=length,
            length_ci=interval_words(length, level=level, method=True) if length["available"] else "",
            length_buckets=[
                {**b, "rate": _pct(b["longer_win_rate"]), "ci": interval_words(b, level=level)}
                for b in length["buckets"]
            ],
            agreement=analysis["agreement"],
            raters_shown=_raters_shown(analysis["agreement"]["raters"]),
            level=level,
            command=_command(analysis, slug=campaign.slug),
            left_out=analysis.get("left_out"),
        )
    return render(request, "comparisons/results/page.html", context)


# A study of thousands of raters would make thousands of rows (rendering them took longer than the rest of
# the cached page): the page lists those who agree least with the others, the analysis has them all.
RATERS_SHOWN = 50


def _raters_shown(raters: list[dict]) -> dict:
    """The raters the page lists, lowest agreement first (none yet last), and how many more there are."""
    ordered = sorted(raters, key=lambda r: (r["agreement"] is None, r["agreement"] or 0.0, r["rater"]))
    return {"rows": ordered[:RATERS_SHOWN], "more": max(0, len(ordered) - RATERS_SHOWN)}


def _judges_reports_snapshots(campaign: Campaign) -> dict:
    """The results page's judge, content report and snapshot sections (comparisons/judging.py, the snapshots)."""
    judges = judge_comparison(campaign=campaign)
    for judge in judges:
        for pair in judge["pairs"]:
            pair["judge_rate"], pair["raters_rate"] = _pct(pair["judge_win_rate"]), _pct(pair["raters_win_rate"])
            pair["judge_ci"] = _ci(pair["judge_ci_low"], pair["judge_ci_high"])
            pair["agree"] = _pct(pair["agreement"])
            pair["agree_ci"] = _ci(pair["agreement_ci_low"], pair["agreement_ci_high"])
            pair["kappa_words"] = "–" if pair["kappa"] is None else f"{pair['kappa']:.2f}"
            low, high = pair["kappa_ci_low"], pair["kappa_ci_high"]
            pair["kappa_ci"] = "–" if low is None or high is None else f"{low:.2f}–{high:.2f}"
    reports = content_report_rates(campaign=campaign)
    for row in reports:
        row["percent"], row["ci"] = _pct(row["rate"]), _ci(row["ci_low"], row["ci_high"])
    return {
        "judges": judges,
        "content_reports": reports,
        "content_reports_any": any(row["flagged"] for row in reports),
        "snapshots": list(
            ResultSnapshot.objects.filter(campaign=campaign).only("number", "published_at", "votes_count", "campaign")
        ),
    }


def _command(analysis: dict, *, slug: str) -> str:
    """The `analyze` command that gives this page's figures from the votes export (as downloaded)."""
    settings = analysis["settings"]
    parts = [f"python manage.py analyze {shlex.quote(f'{slug}-votes.csv')}"]
    if settings["baseline"]:
        parts.append(f"--baseline={shlex.quote(settings['baseline'])}")
    parts.append(f"--bootstrap {settings['bootstrap']} --seed {settings['seed']} --ci {settings['ci']}")
    left_out = analysis.get("left_out")
    if left_out is not None:
        parts.append(f"--exclude-flagged --min-seconds {left_out['min_seconds']:g}")
        parts += [f"--exclude-rater={shlex.quote(name)}" for name in left_out["flagged_only"]]
    if settings.get("exclude_identity_reports"):
        parts.append("--exclude-identity-reports")
    return " ".join(parts)


@require_GET
@analyst_required
def export(request: HttpRequest, slug: str, kind: str) -> StreamingHttpResponse:
    if kind not in EXPORT_KINDS:
        raise Http404(f"No export {kind!r}; choose one of {', '.join(EXPORT_KINDS)}.")
    campaign = get_object_or_404(Campaign, slug=slug)
    content_type, extension = _CONTENT_TYPES[kind]
    response = StreamingHttpResponse(export_stream(campaign=campaign, kind=kind), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{campaign.slug}-{kind}.{extension}"'
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@analyst_required
def snapshot_publish(request: HttpRequest, slug: str) -> HttpResponse:
    """Publish the campaign's results as they are now (with the results page's filters) and show the snapshot."""
    campaign = get_object_or_404(Campaign, slug=slug)
    try:
        snapshot = services.snapshot_publish(
            campaign=campaign,
            published_by=request.user.get_username(),
            exclude_flagged=request.POST.get("exclude_flagged") == "1",
            exclude_identity_reports=request.POST.get("exclude_identity_reports") == "1",
        )
    except InputError as exc:
        return HttpResponse(str(exc), status=409, content_type="text/plain; charset=utf-8")
    return redirect("comparisons:snapshot", slug=campaign.slug, number=snapshot.number)


def _snapshot(slug: str, number: int) -> ResultSnapshot:
    return get_object_or_404(ResultSnapshot.objects.select_related("campaign"), campaign__slug=slug, number=number)


@require_GET
@analyst_required
def snapshot(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """A published snapshot's stable page: its headline numbers, manifest and bundle, never recomputed."""
    frozen = _snapshot(slug, number)
    analysis, manifest = json.loads(frozen.analysis_json), json.loads(frozen.manifest)
    confidence = analysis["settings"]["confidence"]
    context = {
        "snapshot": frozen,
        "campaign": frozen.campaign,
        "manifest": manifest,
        "analysis": analysis,
        "headlines": [headline(pair, confidence=confidence) for pair in analysis["pairs"]],
        "options": json.dumps(manifest["analysis_options"], sort_keys=True),
        "votes_csv_sha256": manifest["files"]["votes.csv"],
        "later": ResultSnapshot.objects.filter(campaign=frozen.campaign, number__gt=number).count(),
    }
    return render(request, "comparisons/results/snapshot.html", context)


@require_GET
@analyst_required
def snapshot_bundle(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """The snapshot as a zip of manifest.json, votes.csv and analysis.json (the same bytes every time)."""
    frozen = _snapshot(slug, number)
    folder = f"{frozen.campaign.slug}-snapshot-{frozen.number}"
    files = {"manifest.json": frozen.manifest, "votes.csv": frozen.votes_csv, "analysis.json": frozen.analysis_json}
    response = HttpResponse(bundle_zip(files, folder=folder), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{folder}.zip"'
    return response
