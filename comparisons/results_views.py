"""Analyst pages: a campaign's results and its exports. Thin: the numbers come from comparisons.results."""

from __future__ import annotations

import shlex

from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from comparisons.access import analyst_required
from comparisons.models import Campaign
from comparisons.plots import forest_plot_svg, ranking_plot_svg
from comparisons.results import (
    EXPORT_KINDS,
    campaign_analysis,
    export_stream,
    identity_leak_rates,
    identity_reports_count,
)
from comparisons.selectors import campaign_vote_totals
from comparisons.stats import components_words, format_p, headline, interval_words

_CONTENT_TYPES = {
    "votes": ("text/csv; charset=utf-8", "csv"),
    "prompts": ("text/csv; charset=utf-8", "csv"),
    "summary": ("text/csv; charset=utf-8", "csv"),
    "annotations": ("application/json; charset=utf-8", "json"),
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
                for pair in analysis["pairs"]
            ],
            length_controlled=any(pair.get("lc_win_rate") is not None for pair in analysis["pairs"]),
            components_warning=components_words(analysis["ranking_components"]),
            forest_svg=forest_plot_svg(analysis["pairs"], confidence=confidence),
            ranking_svg=ranking_plot_svg(analysis["ranking"], confidence=confidence),
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
            level=level,
            command=_command(analysis, slug=campaign.slug),
            left_out=analysis.get("left_out"),
        )
    return render(request, "comparisons/results/page.html", context)


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
