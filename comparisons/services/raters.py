"""Raters: join by invite (one participant id, one rater), named raters with a login, unflagging, analysts."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from comparisons.access import ANALYST_GROUP
from comparisons.models import Campaign, Rater, new_token


@transaction.atomic
def rater_create_from_invite(*, campaign: Campaign, participant_id: str = "") -> Rater:
    """A new passwordless rater of this campaign (one per browser that opens the invite link)."""
    User = get_user_model()
    user = User.objects.create_user(username=f"rater-{new_token()[:12]}")
    user.set_unusable_password()
    user.save(update_fields=["password"])
    return Rater.objects.create(user=user, campaign=campaign, participant_id=participant_id.strip()[:200])


class JoinRefused(Exception):
    """The invite link admits nobody now; ``status`` is the HTTP status the welcome page answers with."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


def rater_join(*, campaign: Campaign, participant_id: str = "") -> tuple[Rater, bool]:
    """The rater a browser opening the invite link becomes, and whether it is new.

    Without a participant id every browser is a new rater. With one (`?participant=` / `?PROLIFIC_PID=`),
    the participant's existing rater of this campaign is resumed, from whatever browser: one participant id
    is one rater per campaign (a database constraint; two browsers joining at once end as the same rater).
    Raises JoinRefused (409) unless the campaign is open, and (403) for a participant whose rater an admin
    deactivated."""
    if campaign.status != Campaign.Status.OPEN:
        raise JoinRefused(f"Campaign {campaign.slug!r} is {campaign.status}, not accepting raters.", status=409)
    rater, created = _rater_for_participant(campaign=campaign, participant_id=participant_id)
    if not rater.user.is_active:
        raise JoinRefused("This participant's rater was deactivated.", status=403)
    return rater, created


def _rater_for_participant(*, campaign: Campaign, participant_id: str) -> tuple[Rater, bool]:
    participant_id = participant_id.strip()[:200]
    if participant_id:
        existing = Rater.objects.select_related("user").filter(campaign=campaign, participant_id=participant_id)
        rater = existing.first()
        if rater is not None:
            return rater, False
        try:
            return rater_create_from_invite(campaign=campaign, participant_id=participant_id), True
        except IntegrityError:  # the same participant joined concurrently from another browser
            return existing.get(), False
    return rater_create_from_invite(campaign=campaign), True


@transaction.atomic
def rater_create_named(*, username: str, password: str, campaigns: list[Campaign] | None = None) -> Rater:
    """A rater with a login of their own, allowed to rate the given campaigns."""
    User = get_user_model()
    if User.objects.filter(username=username).exists():
        raise ValidationError(f"A user named {username!r} already exists.")
    user = User.objects.create_user(username=username, password=password)
    rater = Rater.objects.create(user=user)
    if campaigns:
        rater.campaigns.set(campaigns)
    return rater


@transaction.atomic
def rater_update(*, rater: Rater, campaigns: Iterable[Campaign], flagged: bool, flag_reason: str = "") -> Rater:
    """An admin's change to a rater: the campaigns a named rater may rate (one taken away answers 404 at once,
    the pair held included) and the flag, with its reason (none once unflagged)."""
    rater.flagged = flagged
    rater.flag_reason = flag_reason.strip() if flagged else ""
    rater.save(update_fields=["flagged", "flag_reason"])
    rater.campaigns.set(list(campaigns))
    return rater


@transaction.atomic
def rater_unflag(*, raters: Iterable[Rater]) -> int:
    """Clear the flag (and its reason) of these raters; returns how many were flagged. Their votes keep their
    own marks: a failed attention check stays failed in the exports."""
    return Rater.objects.filter(pk__in=[rater.pk for rater in raters], flagged=True).update(
        flagged=False, flag_reason=""
    )


def analyst_group() -> Group:
    group, _ = Group.objects.get_or_create(name=ANALYST_GROUP)
    return group


@transaction.atomic
def user_make_analyst(*, user: AbstractBaseUser) -> None:
    user.groups.add(analyst_group())  # type: ignore[attr-defined]
