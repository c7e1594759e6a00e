"""Campaigns: create and update with settings checked by one set of rules (`campaign_settings_check`), build the
comparisons and gold pairs, open, pause, close."""

from __future__ import annotations

import itertools
import logging
import math
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, TypedDict, Unpack, cast

import numpy as np
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from comparisons.blinding import lookalike_space
from comparisons.models import Campaign, Comparison, new_token
from comparisons.served_text import served_text
from comparisons.tracker import campaign_precision
from generation.identity import describe
from generation.models import EvalSet, ModelEntry, Prompt, Response
from generation.services import responses_scan_identity

logger = logging.getLogger(__name__)


@dataclass
class OpenReport:
    """What `campaign_open` did: comparisons created, prompts left out (with the models lacking a response),
    and the (prompt, pair) comparisons where an answer self-identifies (left out unless the campaign keeps them)."""

    created: int = 0
    attention_checks: int = 0
    skipped: list[tuple[str, list[str]]] = field(default_factory=list)
    identity_leaks: list[dict[str, Any]] = field(default_factory=list)
    identity_leaks_kept: bool = False

    @property
    def identity_left_out(self) -> int:
        return 0 if self.identity_leaks_kept else len(self.identity_leaks)


def identity_leak_lines(leaks: list[dict[str, Any]]) -> list[str]:
    """One line per self-identifying comparison: the prompt, the pair, and each answer's phrases."""
    return [
        f"{leak['prompt_id']} ({' vs '.join(leak['models'])}): "
        + "; ".join(f"{item['model']} {describe(item['matches'])}" for item in leak["leaks"])
        for leak in leaks
    ]


class CampaignSettings(TypedDict, total=False):
    """A campaign's settings as `campaign_create` takes them and `campaign_update` changes them."""

    slug: str
    title: str
    eval_set: EvalSet
    models: list[ModelEntry]
    baseline: ModelEntry | None
    votes_per_comparison: int
    prompt_limit: int | None
    prompts: list[Prompt]
    instructions: str
    attention_check_rate: float
    lease_seconds: int
    comparisons_per_rater: int | None
    render_mode: str
    keep_identity_leaks: bool
    target_half_width: float | None
    vote_budget: int | None
    stopping_rule: str
    routing: str


# The comparisons are built from these when the campaign first opens: they cannot change afterwards.
COMPARED_SETTINGS = ("eval_set", "models", "baseline", "prompt_limit", "prompts", "keep_identity_leaks")
_MANY = ("models", "prompts")


def _stored_settings(campaign: Campaign) -> dict[str, Any]:
    """A campaign's settings as stored (a new, unsaved Campaign: the model's defaults, no models or prompts)."""
    stored: dict[str, Any] = {
        name: getattr(campaign, name) for name in CampaignSettings.__annotations__ if name not in (*_MANY, "eval_set")
    }
    stored["eval_set"] = campaign.eval_set if campaign.eval_set_id is not None else None
    saved = campaign.pk is not None
    stored["models"] = list(campaign.models.all()) if saved else []
    stored["prompts"] = list(campaign.prompts.all()) if saved else []
    return stored


def _same(name: str, old: Any, new: Any) -> bool:
    if name in _MANY:
        return {item.pk for item in old} == {item.pk for item in new}
    return old == new


def campaign_settings_check(*, campaign: Campaign | None = None, changes: CampaignSettings) -> CampaignSettings:
    """The complete settings a campaign would have with ``changes``, checked: the rules `campaign_create` and
    `campaign_update` share, for forms that show the messages before saving.

    ``campaign`` is the stored campaign being changed, or None for a new one. Raises ValidationError with
    each message under the setting it is about. The models returned include the baseline, once each."""
    current = _stored_settings(campaign if campaign is not None else Campaign())
    merged: dict[str, Any] = {**current, **changes}
    errors: dict[str, list[str]] = defaultdict(list)
    if campaign is not None and campaign.comparisons.exists():
        for name in COMPARED_SETTINGS:
            if name in changes and not _same(name, current[name], merged[name]):
                errors[name].append(
                    "The comparisons were built from this setting when the campaign first opened; it cannot "
                    "change now. Create another campaign to compare something else."
                )
    slug = merged["slug"]
    others = Campaign.objects.exclude(pk=campaign.pk) if campaign is not None else Campaign.objects.all()
    if slug and others.filter(slug=slug).exists():
        errors["slug"].append(f"A campaign with slug {slug!r} already exists; choose another slug.")
    models = list(dict.fromkeys(merged["models"]))
    baseline = merged["baseline"]
    if baseline is not None and baseline not in models:
        models.append(baseline)
    if len(models) < 2:
        errors["models"].append("A campaign compares at least two different models (a baseline counts as one).")
    if merged["votes_per_comparison"] < 1:
        errors["votes_per_comparison"].append("Votes per comparison must be at least 1.")
    if merged["prompt_limit"] is not None and merged["prompt_limit"] < 1:
        errors["prompt_limit"].append("The prompt limit must be at least 1 (or empty: every prompt).")
    if not 0 <= merged["attention_check_rate"] <= 1:
        errors["attention_check_rate"].append("The attention-check rate is a share between 0 and 1.")
    if merged["lease_seconds"] < 1:
        errors["lease_seconds"].append("A served pair must be held for at least 1 second.")
    if merged["comparisons_per_rater"] is not None and merged["comparisons_per_rater"] < 1:
        errors["comparisons_per_rater"].append("Pairs per rater must be at least 1 (or empty: no limit).")
    eval_set = merged["eval_set"]
    if eval_set is None:
        errors["eval_set"].append("Choose the eval set whose prompts the campaign compares on.")
    elif any(p.eval_set_id != eval_set.pk for p in merged["prompts"]):
        errors["prompts"].append("Every prompt of the subset must belong to the campaign's eval set.")
    if merged["render_mode"] not in Campaign.Rendering.values:
        errors["render_mode"].append(
            f"Rendering must be one of {', '.join(Campaign.Rendering.values)}, not {merged['render_mode']!r}."
        )
    try:
        campaign_stopping_check(
            target_half_width=merged["target_half_width"],
            vote_budget=merged["vote_budget"],
            stopping_rule=merged["stopping_rule"],
            routing=merged["routing"],
            n_models=len(models),
        )
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            errors[name].extend(messages)
    if errors:
        raise ValidationError(dict(errors))
    merged["models"] = models
    merged["title"] = merged["title"] or slug
    return cast(CampaignSettings, merged)


def _scalar_settings(settings: CampaignSettings) -> dict[str, Any]:
    return {name: value for name, value in settings.items() if name not in _MANY}


@transaction.atomic
def campaign_create(
    *,
    slug: str,
    title: str,
    eval_set: EvalSet,
    models: list[ModelEntry],
    baseline: ModelEntry | None = None,
    votes_per_comparison: int = 3,
    prompt_limit: int | None = None,
    prompts: list[Prompt] | None = None,
    instructions: str = "",
    attention_check_rate: float = 0.0,
    lease_seconds: int = 600,
    comparisons_per_rater: int | None = None,
    render_mode: str = Campaign.Rendering.MARKDOWN,
    keep_identity_leaks: bool = False,
    target_half_width: float | None = None,
    vote_budget: int | None = None,
    stopping_rule: str = Campaign.Stopping.NONE,
    routing: str = Campaign.Routing.UNIFORM,
) -> Campaign:
    """Create a draft campaign after checking its settings (`campaign_settings_check`); raises ValidationError
    with each message under its setting.

    ``keep_identity_leaks`` keeps comparisons where an answer names its model, its maker or itself as an
    AI; by default `campaign_open` leaves them out. ``target_half_width`` (points), ``vote_budget``,
    ``stopping_rule`` and ``routing`` are checked together by `campaign_stopping_check`."""
    settings = campaign_settings_check(
        changes=CampaignSettings(
            slug=slug,
            title=title,
            eval_set=eval_set,
            models=models,
            baseline=baseline,
            votes_per_comparison=votes_per_comparison,
            prompt_limit=prompt_limit,
            prompts=prompts or [],
            instructions=instructions,
            attention_check_rate=attention_check_rate,
            lease_seconds=lease_seconds,
            comparisons_per_rater=comparisons_per_rater,
            render_mode=render_mode,
            keep_identity_leaks=keep_identity_leaks,
            target_half_width=target_half_width,
            vote_budget=vote_budget,
            stopping_rule=stopping_rule,
            routing=routing,
        )
    )
    campaign = Campaign(**_scalar_settings(settings))
    campaign.full_clean()
    campaign.save()
    campaign.models.set(settings["models"])
    if settings["prompts"]:
        campaign.prompts.set(settings["prompts"])
    return campaign


def _invalid(setting: str, message: str) -> ValidationError:
    return ValidationError({setting: [message]})


def campaign_stopping_check(
    *,
    target_half_width: float | None,
    vote_budget: int | None,
    stopping_rule: str,
    routing: str,
    n_models: int,
) -> None:
    """Check a campaign's precision, stopping and routing settings together; the ValidationError names the
    setting it is about."""
    if target_half_width is not None:
        if isinstance(target_half_width, bool) or not isinstance(target_half_width, int | float):
            raise _invalid(
                "target_half_width", f"The target half-width is a number of points, not {target_half_width!r}."
            )
        if not (0 < target_half_width <= 50) or math.isnan(target_half_width):
            raise _invalid(
                "target_half_width",
                f"The target half-width is in points of win rate, above 0 and at most 50 (e.g. 5 for ±5); "
                f"got {target_half_width}.",
            )
    whole = isinstance(vote_budget, int) and not isinstance(vote_budget, bool)
    if vote_budget is not None and (not whole or vote_budget < 1):
        raise _invalid("vote_budget", f"The vote budget is a whole number of votes, at least 1; got {vote_budget!r}.")
    if stopping_rule not in Campaign.Stopping.values:
        raise _invalid(
            "stopping_rule",
            f"The stopping rule must be one of {', '.join(Campaign.Stopping.values)}, not {stopping_rule!r}.",
        )
    if stopping_rule == Campaign.Stopping.PRECISION and target_half_width is None:
        raise _invalid(
            "target_half_width",
            "The 'precision' stopping rule closes the campaign when every pair reached the target half-width: "
            "set a target half-width (e.g. 5 points).",
        )
    if routing not in Campaign.Routing.values:
        raise _invalid("routing", f"Routing must be one of {', '.join(Campaign.Routing.values)}, not {routing!r}.")
    if routing == Campaign.Routing.ADAPTIVE and n_models < 3:
        raise _invalid(
            "routing",
            f"Adaptive routing chooses among pairs of models to settle a ranking: it needs three or more models, "
            f"and this campaign has {n_models}. Use uniform routing.",
        )


@transaction.atomic
def campaign_update(*, campaign: Campaign, **changes: Unpack[CampaignSettings]) -> Campaign:
    """Change settings of an existing campaign, checked by the same rules as `campaign_create`; raises
    ValidationError (each message under its setting) and changes nothing then. What the comparisons are built
    from (eval set, models, baseline, prompts, prompt limit, identity leaks) is fixed once they exist."""
    locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
    settings = campaign_settings_check(campaign=locked, changes=changes)
    for name, value in _scalar_settings(settings).items():
        setattr(locked, name, value)
    locked.full_clean()
    if changed := [name for name in changes if name not in _MANY]:
        locked.save(update_fields=changed)
    if "models" in changes or "baseline" in changes:
        locked.models.set(settings["models"])
    if "prompts" in changes:
        locked.prompts.set(settings["prompts"])
    return locked


def _model_pairs(campaign: Campaign) -> list[tuple[ModelEntry, ModelEntry]]:
    """(model_a, model_b) pairs: every other model against the baseline (baseline as B), else all pairs by name."""
    models = sorted(campaign.models.all(), key=lambda m: m.name)
    if campaign.baseline_id is not None:
        return [(m, campaign.baseline) for m in models if m.pk != campaign.baseline_id]  # type: ignore[misc]
    return list(itertools.combinations(models, 2))


def campaign_prompts(*, campaign: Campaign) -> list[Prompt]:
    """The prompts a campaign compares on: its subset, else its eval set's, cut to its prompt limit, in order."""
    subset = campaign.prompts.all()
    prompts = subset if subset.exists() else Prompt.objects.filter(eval_set=campaign.eval_set)
    prompts = prompts.order_by("position")
    if campaign.prompt_limit:
        prompts = prompts[: campaign.prompt_limit]
    return list(prompts)


def _build_comparisons(campaign: Campaign) -> OpenReport:
    report = OpenReport()
    pairs = _model_pairs(campaign)
    if not pairs:
        raise ValidationError("The campaign needs at least two models (besides the baseline, at least one other).")
    prompts = campaign_prompts(campaign=campaign)
    if not prompts:
        raise ValidationError(f"Eval set {campaign.eval_set.name!r} has no prompts to compare on.")
    model_ids = {m.pk for pair in pairs for m in pair}
    candidates = Response.objects.filter(prompt__in=prompts, model_id__in=model_ids)
    # Model entries may have been added since these responses were scanned: look again with today's names.
    responses_scan_identity(responses=candidates)
    responses: dict[tuple[int, int], Response] = {
        (r.prompt_id, r.model_id): r for r in candidates.only("pk", "prompt_id", "model_id", "identity_matches")
    }
    names = {m.pk: m.name for pair in pairs for m in pair}
    rows: list[Comparison] = []
    clean: list[Comparison] = []  # the comparisons gold pairs may draw from: no self-identifying answer
    report.identity_leaks_kept = campaign.keep_identity_leaks
    for prompt in prompts:
        missing = sorted(names[mid] for mid in model_ids if (prompt.pk, mid) not in responses)
        if missing:
            report.skipped.append((prompt.external_id, missing))
            continue
        for model_a, model_b in pairs:
            pair = (responses[(prompt.pk, model_a.pk)], responses[(prompt.pk, model_b.pk)])
            comparison = Comparison(campaign=campaign, prompt=prompt, response_a=pair[0], response_b=pair[1])
            leaks = [
                {"model": names[response.model_id], "matches": response.identity_matches}
                for response in pair
                if response.identity_matches
            ]
            if leaks:
                report.identity_leaks.append(
                    {"prompt_id": prompt.external_id, "models": [model_a.name, model_b.name], "leaks": leaks}
                )
                if not campaign.keep_identity_leaks:
                    continue
            else:
                clean.append(comparison)
            rows.append(comparison)
    campaign.identity_leaks = report.identity_leaks
    campaign.save(update_fields=["identity_leaks"])
    if not rows and report.identity_leaks:
        raise ValidationError(
            f"Every comparison of this campaign has an answer that names its model, its maker or itself as an AI "
            f"({len(report.identity_leaks)} comparisons), so none is left to rate. Keep them on purpose with "
            "--keep-identity-leaks (admin: keep identity leaks), or compare other models or prompts."
        )
    if not rows:
        raise ValidationError(
            f"No prompt of eval set {campaign.eval_set.name!r} has a response from every model of the campaign; "
            "generate or import the missing responses first."
        )
    Comparison.objects.bulk_create(rows, batch_size=500)
    report.created = len(rows)
    # Gold pairs never show a self-identifying answer either, even when real pairs may.
    report.attention_checks = _build_attention_checks(campaign, clean)
    return report


def _build_attention_checks(campaign: Campaign, real: list[Comparison]) -> int:
    """Gold pairs built like real ones, one answer of each model: one model's answer to the prompt (the correct
    side) against the other model's answer to a different prompt. A gold pair made of one model's texts only
    carried that model's habits on both sides, which told gold from real pairs without reading them. The
    off-prompt answer is drawn among the five that look most like the answer it stands in for (length, lines,
    lists, Markdown: the audit's features of the served texts), so the pair looks like a real one as a whole."""
    if campaign.attention_check_rate <= 0:
        return 0
    prompt_ids = sorted({c.prompt_id for c in real})
    if len(prompt_ids) < 2:
        return 0
    wanted = max(1, math.ceil(campaign.attention_check_rate * len(real)))
    rng = random.Random()
    answers: dict[tuple[int, int], Response] = {}
    for comparison in real:
        for response in (comparison.response_a, comparison.response_b):
            answers[(comparison.prompt_id, response.model_id)] = response
    texts = dict(Response.objects.filter(pk__in=[r.pk for r in answers.values()]).values_list("pk", "text"))
    order = list(texts)
    points = dict(zip(order, lookalike_space([served_text(texts[pk]) for pk in order]), strict=True))
    used: dict[int, int] = defaultdict(int)
    golds: list[Comparison] = []
    seen: set[tuple[int, int]] = set()
    for real_cmp in rng.sample(real, k=min(wanted, len(real))):
        gold, stand_in_for = rng.choice(
            [(real_cmp.response_a, real_cmp.response_b), (real_cmp.response_b, real_cmp.response_a)]
        )
        candidates = [
            answer
            for pid in prompt_ids
            if pid != real_cmp.prompt_id
            and (answer := answers.get((pid, stand_in_for.model_id))) is not None
            and (gold.pk, answer.pk) not in seen
        ]
        if not candidates:
            continue
        target = points[stand_in_for.pk]
        nearest = sorted(candidates, key=lambda a: float(np.sum((points[a.pk] - target) ** 2)))[:5]
        fewest = min(used[a.pk] for a in nearest)
        distractor = rng.choice([a for a in nearest if used[a.pk] == fewest])
        used[distractor.pk] += 1
        seen.add((gold.pk, distractor.pk))
        golds.append(
            Comparison(
                campaign=campaign,
                prompt_id=real_cmp.prompt_id,
                response_a=gold,
                response_b=distractor,
                is_attention_check=True,
            )
        )
    Comparison.objects.bulk_create(golds)
    return len(golds)


@transaction.atomic
def campaign_open(*, campaign: Campaign) -> OpenReport:
    """Open (or reopen) a campaign; the first time, create its comparisons and report the prompts skipped."""
    locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
    # Settings edited in the admin since creation are checked again: the model count is not a column.
    campaign_stopping_check(
        target_half_width=locked.target_half_width,
        vote_budget=locked.vote_budget,
        stopping_rule=locked.stopping_rule,
        routing=locked.routing,
        n_models=locked.models.count(),
    )
    report = OpenReport()
    if not locked.comparisons.exists():
        report = _build_comparisons(locked)
        locked.comparisons_count = locked.comparisons.count()
    locked.status = Campaign.Status.OPEN
    locked.opened_at = locked.opened_at or timezone.now()
    locked.closed_at = None
    locked.save(update_fields=["status", "opened_at", "closed_at", "comparisons_count"])
    campaign.status, campaign.opened_at, campaign.closed_at = locked.status, locked.opened_at, locked.closed_at
    campaign.comparisons_count = locked.comparisons_count
    campaign.identity_leaks = locked.identity_leaks
    return report


@transaction.atomic
def campaign_pause(*, campaign: Campaign) -> Campaign:
    """Stop handing out pairs; votes on pairs already served are still accepted."""
    if campaign.status != Campaign.Status.OPEN:
        raise ValidationError(f"Only an open campaign can be paused; {campaign.slug!r} is {campaign.status}.")
    campaign.status = Campaign.Status.PAUSED
    campaign.save(update_fields=["status"])
    return campaign


@transaction.atomic
def campaign_close(*, campaign: Campaign) -> Campaign:
    """Close for good: no new pairs, no more votes."""
    campaign.status = Campaign.Status.CLOSED
    campaign.closed_at = timezone.now()
    campaign.save(update_fields=["status", "closed_at"])
    return campaign


@transaction.atomic
def campaign_rotate_invite(*, campaign: Campaign) -> Campaign:
    """Issue a new invite token; the old link stops working (raters who joined keep their session)."""
    campaign.invite_token = new_token()
    campaign.save(update_fields=["invite_token"])
    return campaign


# ---------------------------------------------------------------- closing by itself


def campaign_close_if_done(*, campaign_id: int) -> str | None:
    """Close an open (or paused) campaign whose vote budget is spent or whose stopping rule is met, and return why;
    None when it stays as it is. Idempotent: the campaign row is locked and its status read again, so two checks
    at once close it once. Stopping on precision or on an anytime-valid sequence keeps the estimates valid."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().filter(pk=campaign_id).first()
        if campaign is None or campaign.status not in (Campaign.Status.OPEN, Campaign.Status.PAUSED):
            return None
        if campaign.stopping_rule == Campaign.Stopping.NONE and campaign.vote_budget is None:
            return None
        tracker = campaign_precision(campaign=campaign)
        if not tracker.done:
            return None
        campaign_close(campaign=campaign)
    logger.info("campaign %s closed by itself: %s", campaign.slug, tracker.reason)
    return tracker.reason


# A stop check runs this many seconds after a vote, covering every vote this process takes meanwhile.
STOP_CHECK_DELAY_SECONDS = 5.0
_stop_checks_due: dict[int, float] = {}
_stop_checks_lock = threading.Lock()


def campaign_stop_check_soon(*, campaign_id: int) -> None:
    """After a vote commits: queue `campaign_close_if_done` for its campaign, STOP_CHECK_DELAY_SECONDS later.

    One web process queues at most one check per campaign per delay: a check already due covers the votes
    that arrive before it runs, so every vote is followed by a check within about the delay, and the rating
    loop pays a dictionary look-up, not a query, for the votes in between. Campaigns with neither a stopping
    rule nor a budget are looked up once per delay and queue nothing."""
    now = time.monotonic()
    with _stop_checks_lock:
        if _stop_checks_due.get(campaign_id, 0.0) > now:
            return
        _stop_checks_due[campaign_id] = now + STOP_CHECK_DELAY_SECONDS
    rules = Campaign.objects.filter(pk=campaign_id).exclude(stopping_rule=Campaign.Stopping.NONE, vote_budget=None)
    if not rules.exists():
        return
    from comparisons.tasks import campaign_stop_check  # the tasks module imports the services

    try:
        campaign_stop_check.apply_async(args=[campaign_id], countdown=STOP_CHECK_DELAY_SECONDS)
    except Exception:  # noqa: BLE001 - the vote is recorded: an unreachable broker must not turn it into an error
        logger.exception("could not queue the stop check of campaign %s; the next vote will try again", campaign_id)
        with _stop_checks_lock:
            _stop_checks_due.pop(campaign_id, None)
