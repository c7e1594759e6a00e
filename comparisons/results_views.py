"""Analyst pages: a campaign's results and its exports. Thin: the numbers come from comparisons.results."""

from __future__ import annotations

import shlex

from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from comparisons.access import analyst_required
from comparisons.models import Campaign
from comparisons.plots import forest_plot_svg, ranking_plot_svg
from comparisons.results import EXPORT_KINDS, campaign_analysis, export_stream, votes_missing
from comparisons.stats import format_p, headline

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
    analysis = campaign_analysis(campaign=campaign, exclude_flagged=exclude_flagged)
    context: dict = {
        "campaign": campaign,
        "progress": votes_missing(campaign=campaign),
        "analysis": analysis,
        "exclude_flagged": exclude_flagged,
        "export_kinds": EXPORT_KINDS,
    }
    if analysis is not None:
        confidence = analysis["settings"]["confidence"]
        models = analysis["win_rate_matrix"]["models"]
        context.update(
            headlines=[headline(pair, confidence=confidence) for pair in analysis["pairs"]],
            pairs=[
                {**pair, "rate": _pct(pair["win_rate"]), "ci": _ci(pair["ci_low"], pair["ci_high"])}
                | {"no_ties": _pct(pair["win_rate_no_ties"]), "p": format_p(pair["p_value"])}
                for pair in analysis["pairs"]
            ],
            forest_svg=forest_plot_svg(analysis["pairs"], confidence=confidence),
            ranking_svg=ranking_plot_svg(analysis["ranking"], confidence=confidence),
            matrix=[
                {"model": model, "cells": [_pct(value) for value in row]}
                for model, row in zip(models, analysis["win_rate_matrix"]["values"], strict=True)
            ],
            categories=[
                {**c, "rate": _pct(c["win_rate"]), "ci": _ci(c["ci_low"], c["ci_high"])} for c in analysis["categories"]
            ],
            position=analysis["position_bias"],
            position_p=format_p(analysis["position_bias"]["p_value"]),
            length=analysis["length_bias"],
            agreement=analysis["agreement"],
            level=f"{100 * confidence:g}%",
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
