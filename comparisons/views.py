"""Rater-facing pages and the rating JSON API: thin callers of services and the blinded selector.

Nothing here reads model rows: every pair a rater sees comes from
`selectors.rater_view_for_assignment`. Campaigns a rater may not rate answer
404, exactly like campaigns that do not exist.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.views import LoginView
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from comparisons import services
from comparisons.access import rater_can_rate, rater_for_user, rater_required, user_is_admin, user_is_analyst
from comparisons.markdown import render_markdown
from comparisons.models import Assignment, Campaign, Rater
from comparisons.selectors import (
    campaign_by_slug,
    rater_progress,
    rater_view_for_assignment,
    rater_work_done,
    vote_public,
)
from comparisons.sessions import reads_vote_target

PARTICIPANT_PARAMS = ("participant", "PROLIFIC_PID")


def _campaign_for_rater(rater: Rater, slug: str) -> Campaign:
    campaign = campaign_by_slug(slug)
    if campaign is None or not rater_can_rate(rater=rater, campaign=campaign):
        raise Http404("No such campaign for this rater.")
    return campaign


def _json_error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


# ---------------------------------------------------------------- home, login


@never_cache
def home(request: HttpRequest) -> HttpResponse:
    """Send each role where it works: raters to their pairs, admins to the admin, others to log in."""
    rater = rater_for_user(request.user)
    if rater is not None:
        if rater.campaign_id is not None:
            return redirect("comparisons:rate", slug=rater.campaign.slug)  # type: ignore[union-attr]
        campaigns = rater.campaigns.filter(status=Campaign.Status.OPEN).only("slug")
        return render(request, "comparisons/home.html", {"campaigns": campaigns})
    if user_is_admin(request.user):
        return redirect("admin:index")
    if user_is_analyst(request.user):
        campaigns = Campaign.objects.exclude(status=Campaign.Status.DRAFT).only("slug", "title", "status")
        return render(request, "comparisons/home.html", {"analyst": True, "campaigns": campaigns})
    return redirect("comparisons:login")


class RaterLoginView(LoginView):
    """Login for named raters and analysts (the admin's own login admits staff only)."""

    template_name = "comparisons/login.html"
    redirect_authenticated_user = True


# ---------------------------------------------------------------- invites


@never_cache
@require_http_methods(["GET", "POST"])
def join(request: HttpRequest, token: str) -> HttpResponse:
    """Invite link: GET shows the welcome page, POST makes this browser a rater (once) and starts rating; with a
    participant id, the participant's rater of this campaign is resumed from any browser."""
    campaign = get_object_or_404(Campaign, invite_token=token)
    rater = rater_for_user(request.user)
    returning = rater is not None and rater.campaign_id == campaign.pk
    participant = ""
    for param in PARTICIPANT_PARAMS:
        participant = participant or (request.POST.get(param) or request.GET.get(param) or "").strip()
    if request.method == "POST":
        if returning:
            return redirect("comparisons:rate", slug=campaign.slug)
        try:
            rater, _ = services.rater_join(campaign=campaign, participant_id=participant)
        except services.JoinRefused as refused:
            return render(
                request, "comparisons/join.html", {"campaign": campaign, "closed": True}, status=refused.status
            )
        login(request, rater.user, backend="comparisons.backends.RaterModelBackend")
        return redirect("comparisons:rate", slug=campaign.slug)
    return render(
        request,
        "comparisons/join.html",
        {
            "campaign": campaign,
            "returning": returning,
            "participant": participant,
            "closed": campaign.status != Campaign.Status.OPEN and not returning,
        },
    )


# ---------------------------------------------------------------- the rater page


@never_cache
@require_GET
@rater_required
def rate(request: HttpRequest, slug: str) -> HttpResponse:
    """The rating page with the rater's current pair rendered server-side (JS then loads the next ones)."""
    rater: Rater = request.rater  # type: ignore[attr-defined]
    campaign = _campaign_for_rater(rater, slug)
    assignment = services.assignment_next(rater=rater, campaign=campaign)
    if assignment is None:
        return redirect("comparisons:done", slug=campaign.slug)
    view = rater_view_for_assignment(assignment=assignment, include_html=True)
    context: dict[str, Any] = {
        "campaign_slug": campaign.slug,
        "guidance_html": render_markdown(campaign.instructions) if campaign.instructions else "",
        "pair": view,
        "next_url": f"{reverse('comparisons:api_next')}?campaign={campaign.slug}&html=1",
        "done_url": reverse("comparisons:done", kwargs={"slug": campaign.slug}),
    }
    return render(request, "comparisons/rate.html", context)


@never_cache
@require_GET
@rater_required
def done(request: HttpRequest, slug: str) -> HttpResponse:
    """The end page: shown once nothing is left for this rater, with the completion code if they voted."""
    rater: Rater = request.rater  # type: ignore[attr-defined]
    campaign = _campaign_for_rater(rater, slug)
    if services.assignment_next(rater=rater, campaign=campaign) is not None:
        return redirect("comparisons:rate", slug=campaign.slug)
    progress = rater_progress(rater=rater, campaign=campaign)
    finished = rater_work_done(rater=rater, campaign=campaign)
    return render(
        request,
        "comparisons/done.html",
        {
            "progress": progress,
            "finished": finished,
            "completion_code": rater.completion_code if finished else "",
            "status": campaign.status,
        },
    )


@require_POST
@rater_required
def rate_vote_form(request: HttpRequest, slug: str) -> HttpResponse:
    """No-JavaScript fallback of the vote buttons: same service, then back to the page."""
    rater: Rater = request.rater  # type: ignore[attr-defined]
    campaign = _campaign_for_rater(rater, slug)
    token = request.POST.get("assignment", "")
    try:
        if "skip" in request.POST:
            services.assignment_skip(rater=rater, token=token)
        else:
            services.vote_cast(
                rater=rater,
                token=token,
                choice=request.POST.get("choice", ""),
                rationale=request.POST.get("rationale", ""),
                reveals_identity=request.POST.get("reveals_identity") in {"1", "on", "true"},
                content_reports=[  # checkboxes valued "A:harmful" etc.
                    dict(zip(("side", "kind"), value.split(":", 1), strict=False))
                    for value in request.POST.getlist("content_report")
                ],
            )
    except services.RatingError as exc:
        messages.error(request, str(exc))
    return redirect("comparisons:rate", slug=campaign.slug)


# ---------------------------------------------------------------- JSON API


@never_cache
@require_GET
@rater_required
def api_next(request: HttpRequest) -> HttpResponse:
    """GET /api/rate/next?campaign=SLUG → 200 with the pair, 204 when nothing is left for this rater."""
    rater: Rater = request.rater  # type: ignore[attr-defined]
    slug = request.GET.get("campaign", "").strip()
    if not slug:
        return _json_error("Query parameter 'campaign' (the campaign's slug) is required.", 400)
    campaign = campaign_by_slug(slug)
    if campaign is None or not rater_can_rate(rater=rater, campaign=campaign):
        return _json_error("No such campaign for this rater.", 404)
    pair = _next_pair(request, rater, campaign)
    if pair is None:
        return HttpResponse(status=204)
    return JsonResponse(pair)


def _next_pair(request: HttpRequest, rater: Rater, campaign: Campaign) -> dict[str, Any] | None:
    """The rater's next pair as the API shows it (with HTML when the query asks `html=1`), or None."""
    return _pair_shown(request, services.assignment_next(rater=rater, campaign=campaign))


def _pair_shown(request: HttpRequest, assignment: Assignment | None) -> dict[str, Any] | None:
    if assignment is None:
        return None
    include_html = request.GET.get("html") in {"1", "true"}
    return rater_view_for_assignment(assignment=assignment, include_html=include_html)


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: "[[[[…" nested too deep
        raise services.InvalidChoice(
            'The request body must be JSON like {"choice": "A", "rationale": "optional text"}.'
        ) from exc
    if not isinstance(body, dict):
        raise services.InvalidChoice('The request body must be a JSON object like {"choice": "A"}.')
    return body


@reads_vote_target("token")
@never_cache
@require_POST
@rater_required
def api_vote(request: HttpRequest, token: str) -> HttpResponse:
    """POST /api/rate/<token>/vote → 201 new, 200 same again, 409 different, 404 not yours, 410 gone, 400 bad.

    201 and 200 carry the rater's next pair as "next" (what GET /api/rate/next answers, null when nothing is
    left), so a rater's browser makes one request per vote."""
    rater: Rater = request.rater  # type: ignore[attr-defined]
    try:
        body = _json_body(request)
        if "choice" not in body:
            raise services.InvalidChoice("Field 'choice' is required: one of A, B, tie, both_bad.")
        choice = body["choice"]
        if not isinstance(choice, str):
            raise services.InvalidChoice("Field 'choice' must be one of the strings A, B, tie, both_bad.")
        rationale = body.get("rationale") or ""
        reveals_identity = body.get("reveals_identity", False)
        result = services.vote_cast(
            rater=rater, token=token, choice=choice, rationale=rationale, reveals_identity=reveals_identity,
            content_reports=body.get("content_reports"), then_next=True,
        )  # fmt: skip
    except services.RatingError as exc:
        return _json_error(str(exc), exc.status)
    payload = vote_public(result.vote)
    payload["next"] = _pair_shown(request, result.next)
    return JsonResponse(payload, status=201 if result.created else 200)


@never_cache
@require_POST
@rater_required
def api_skip(request: HttpRequest, token: str) -> HttpResponse:
    """POST /api/rate/<token>/skip → 200 and the pair goes back to the pool; 404 not yours; 409 already voted."""
    rater: Rater = request.rater  # type: ignore[attr-defined]
    try:
        assignment = services.assignment_skip(rater=rater, token=token)
    except services.RatingError as exc:
        return _json_error(str(exc), exc.status)
    return JsonResponse({"assignment": assignment.token, "skipped": True})
