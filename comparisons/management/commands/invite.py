"""python manage.py invite SLUG [--rotate]: print the campaign's invite link (the last line of output)."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from comparisons import services
from comparisons.models import Campaign


def invite_url(campaign: Campaign, base_url: str = "") -> str:
    """Absolute invite link: --base-url, else the SITE_URL setting/environment, else http://127.0.0.1:8000."""
    base = base_url or getattr(settings, "SITE_URL", "") or os.environ.get("SITE_URL") or "http://127.0.0.1:8000"
    base = base.rstrip("/")
    return base + reverse("comparisons:join", kwargs={"token": campaign.invite_token})


class Command(BaseCommand):
    help = "Print the invite link of a campaign: each new browser that opens it becomes a rater."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--base-url", default="", help="Site address for the link (default: SITE_URL).")
        parser.add_argument("--rotate", action="store_true", help="Issue a new link; the old one stops working.")

    def handle(self, *args: Any, **opts: Any) -> None:
        campaign = Campaign.objects.filter(slug=opts["slug"]).first()
        if campaign is None:
            raise CommandError(f"No campaign with slug {opts['slug']!r}.")
        if opts["rotate"]:
            campaign = services.campaign_rotate_invite(campaign=campaign)
        if campaign.status != Campaign.Status.OPEN:
            self.stdout.write(
                f"Note: campaign {campaign.slug!r} is {campaign.status}; the link admits raters once open."
            )
        self.stdout.write(
            "Crowd platforms: append ?PROLIFIC_PID=<id> (or ?participant=<id>) to store each rater's external id."
        )
        self.stdout.write(invite_url(campaign, opts["base_url"]))
