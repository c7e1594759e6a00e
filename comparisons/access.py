"""Who may do what: raters rate, analysts read results and exports, admins (staff) run the admin.

Every view checks roles through these functions so the access-control matrix
has one place to look. A rater is a user with a Rater row; an analyst is a
member of the "analyst" group (or a superuser); an admin is a staff user.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponseForbidden, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.urls import reverse

from comparisons.models import Campaign, Rater

ANALYST_GROUP = "analyst"

View = Callable[..., HttpResponseBase]


def rater_for_user(user: Any) -> Rater | None:
    """The user's Rater row, or None for anonymous users and users who are not raters."""
    if not user.is_authenticated:
        return None
    try:
        return user.rater
    except Rater.DoesNotExist:
        return None


def user_is_analyst(user: Any) -> bool:
    """Analysts read results and exports: members of the analyst group, superusers and staff."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser or user.is_staff:
        return True
    return user.groups.filter(name=ANALYST_GROUP).exists()


def user_is_admin(user: Any) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def rater_can_rate(*, rater: Rater, campaign: Campaign) -> bool:
    """Invite raters rate their own campaign only; named raters the campaigns they were given."""
    if rater.campaign_id is not None:
        return rater.campaign_id == campaign.pk
    return rater.campaigns.filter(pk=campaign.pk).exists()


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def rater_required(view: View) -> View:
    """Let raters through (with `request.rater` set); JSON 403 for the API, login redirect for pages."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        rater = rater_for_user(request.user)
        if rater is None or not request.user.is_active:
            if _wants_json(request):
                return JsonResponse({"error": "Sign in as a rater (open your invite link) first."}, status=403)
            if request.user.is_authenticated:
                return HttpResponseForbidden("This page is for raters only.")
            return redirect(f"{reverse('comparisons:login')}?next={request.path}")
        request.rater = rater  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    return wrapper


def analyst_required(view: View) -> View:
    """Let analysts, superusers and staff through; raters and other users get 403, anonymous users a login."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if user_is_analyst(request.user):
            return view(request, *args, **kwargs)
        if _wants_json(request):
            return JsonResponse({"error": "Analysts only."}, status=403 if request.user.is_authenticated else 401)
        if request.user.is_authenticated:
            return HttpResponseForbidden("Results and exports are for analysts only.")
        return redirect(f"{reverse('comparisons:login')}?next={request.path}")

    return wrapper
