"""Celery tasks of the comparisons app: thin callers of comparisons.services, taking ids, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from comparisons import services


@shared_task(name="comparisons.campaign_stop_check", acks_late=True, time_limit=300, soft_time_limit=280)
def campaign_stop_check(campaign_id: int) -> None:
    """Close the campaign if its budget is spent or its stopping rule is met (nothing when it is gone)."""
    services.campaign_close_if_done(campaign_id=campaign_id)
