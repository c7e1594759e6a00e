"""Builders for rating tests: an eval set with responses from distinctively named models, a campaign, raters."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connections

from comparisons import services
from comparisons.models import Campaign, Rater
from generation.models import EvalSet, ModelEntry, Prompt, Response
from tests.factories import EvalSetFactory, ModelEntryFactory, PromptFactory, ResponseFactory

# Names that cannot occur by accident in a page, so a blinding check can really fail.
MODEL_NAMES = ["zebra-model-7", "quokka-llm-13b"]


def build_eval_set(
    *, n_prompts: int = 6, model_names: list[str] | None = None, missing: set[tuple[int, str]] | None = None
) -> tuple[EvalSet, list[ModelEntry], list[Prompt]]:
    """An eval set with n prompts and one response per (prompt, model), except the (position, name) in `missing`."""
    eval_set = EvalSetFactory()
    names = model_names or MODEL_NAMES
    models = [ModelEntry.objects.filter(name=name).first() or ModelEntryFactory(name=name) for name in names]
    prompts = [
        PromptFactory(
            eval_set=eval_set,
            position=i,
            external_id=f"user_oriented_task_{i}",
            instruction=f"Instruction number {i}: explain topic {i}.",
            input=f"Some input for task {i}." if i % 2 else "",
            category="Grammarly" if i % 3 else "Gmail",
        )
        for i in range(n_prompts)
    ]
    for i, prompt in enumerate(prompts):
        for j, model in enumerate(models):
            if missing and (i, model.name) in missing:
                continue
            voice = "ABCDEFGH"[j]
            ResponseFactory(prompt=prompt, model=model, text=f"Answer in voice {voice} to prompt {i}: *some* text.")
    return eval_set, models, prompts


def build_campaign(
    *,
    slug: str = "study-one",
    n_prompts: int = 6,
    model_names: list[str] | None = None,
    k: int = 3,
    open_it: bool = True,
    **options,
) -> Campaign:
    eval_set, models, _ = build_eval_set(n_prompts=n_prompts, model_names=model_names)
    campaign = services.campaign_create(
        slug=slug, title=f"Title of {slug}", eval_set=eval_set, models=models, votes_per_comparison=k, **options
    )
    if open_it:
        services.campaign_open(campaign=campaign)
        campaign.refresh_from_db()
    return campaign


def invite_rater(campaign: Campaign, participant_id: str = "") -> Rater:
    return services.rater_create_from_invite(campaign=campaign, participant_id=participant_id)


def responses_of(campaign: Campaign) -> list[Response]:
    return list(Response.objects.filter(model__campaigns=campaign))


def make_user(username: str, **extra):
    return get_user_model().objects.create_user(username=username, password="pw-123456789", **extra)


@contextlib.contextmanager
def rows_locked_elsewhere(sql: str, params: Sequence[Any] = ()) -> Iterator[threading.Event]:
    """The rows `sql` (a SELECT … FOR UPDATE) locks, held by another connection (a thread's) until the block ends
    or the event it yields is set."""
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with connections["default"].cursor() as other:
                other.execute("BEGIN")
                other.execute(sql, params)
                locked.set()
                release.wait(30)
                other.execute("COMMIT")
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(30), "the other connection could not lock the rows"
        yield release
    finally:
        release.set()
        holder.join(30)
