"""What people judged: campaigns, the comparisons they contain, raters, assignments and votes.

A Campaign compares models on an eval set; opening it creates one Comparison
per (prompt, model pair). An Assignment hands one comparison to one rater with
a counterbalanced left/right order and a time-limited lease; a Vote is the rater's
choice on that assignment. Rater-facing code never reads these rows directly:
it goes through `comparisons.selectors.rater_view_for_assignment`.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.sessions.base_session import AbstractBaseSession
from django.db import models
from django.db.models import ManyToManyField, Q

from generation.models import EvalSet, ModelEntry, Prompt, Response, validate_name_start


def new_token() -> str:
    """An opaque, unguessable token: 32 random bytes (256 bits), URL-safe."""
    return secrets.token_urlsafe(32)


def new_completion_code() -> str:
    """A short code a crowd worker pastes back into their platform (about 50 bits)."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(10))


class Campaign(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        OPEN = "open", "Open"
        PAUSED = "paused", "Paused"
        CLOSED = "closed", "Closed"

    slug = models.SlugField(
        max_length=100,
        unique=True,
        validators=[validate_name_start],
        help_text="Appears in the raters' URLs: choose a neutral one when raters must not know the contestants.",
    )
    title = models.CharField(
        max_length=300,
        validators=[validate_name_start],
        help_text="Shown to admins and analysts only, never to raters.",
    )
    eval_set = models.ForeignKey(EvalSet, on_delete=models.PROTECT, related_name="campaigns")
    baseline = models.ForeignKey(
        ModelEntry,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="baseline_campaigns",
        help_text="Compare every other model against this one; empty = all pairs of models.",
    )
    votes_per_comparison = models.PositiveIntegerField(default=3, help_text="k: votes wanted per comparison.")
    prompt_limit = models.PositiveIntegerField(null=True, blank=True, help_text="Only the first N prompts.")
    prompts = models.ManyToManyField(
        Prompt, blank=True, related_name="+", help_text="Optional subset of the eval set's prompts."
    )
    instructions = models.TextField(blank=True, help_text="Shown to raters on the welcome page and beside each pair.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    attention_check_rate = models.FloatField(
        default=0.0, help_text="Share of served pairs that are attention checks (0 to 1)."
    )
    lease_seconds = models.PositiveIntegerField(default=600, help_text="How long a served pair is held for a rater.")
    comparisons_per_rater = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most pairs one rater judges (attention checks included); empty = no limit."
    )

    class Rendering(models.TextChoices):
        MARKDOWN = "markdown", "Markdown"
        PLAIN = "plain", "Plain text"

    render_mode = models.CharField(
        max_length=20,
        choices=Rendering.choices,
        default=Rendering.MARKDOWN,
        help_text="How raters see the texts: Markdown (lists, tables, code; headings no larger than body text; "
        "code written without fences keeps its indentation) or plain text exactly as served. Either way, "
        "raters can show the raw text of each response.",
    )
    keep_identity_leaks = models.BooleanField(
        default=False,
        help_text="Also compare answers that name their model, their maker or themselves as an AI. Off by default: "
        "such comparisons are left out, because they tell raters who wrote what.",
    )
    identity_leaks = models.JSONField(
        default=list,
        blank=True,
        editable=False,
        help_text="Filled when the campaign opens: each (prompt, pair of models) where an answer self-identifies, "
        "as {prompt_id, models, leaks: [{model, matches: [{phrase, kind, start, end}]}]}; left out unless "
        "keep_identity_leaks.",
    )

    class Stopping(models.TextChoices):
        NONE = "none", "None: run until closed by hand (or the vote budget is spent)"
        PRECISION = "precision", "Precision: close when every pair reached the target half-width"
        DECISIVE = "decisive", "Decisive (anytime-valid): close when every pair's confidence sequence leaves 50% out"

    class Routing(models.TextChoices):
        UNIFORM = "uniform", "Uniform: fewest votes first"
        ADAPTIVE = "adaptive", "Adaptive: the pair whose vote settles the ranking most (3 or more models)"

    target_half_width = models.FloatField(
        null=True,
        blank=True,
        help_text="Precision wanted for every pair's win rate: the half-width of its 95% interval, in points "
        "(e.g. 5 for ±5). The progress page projects the votes still needed to reach it.",
    )
    vote_budget = models.PositiveIntegerField(
        null=True, blank=True, help_text="Close the campaign by itself once this many votes are in; empty = no budget."
    )
    stopping_rule = models.CharField(
        max_length=20,
        choices=Stopping.choices,
        default=Stopping.NONE,
        help_text="When the campaign closes by itself. Stopping as soon as a pair looks decisive inflates false "
        "positives unless the interval is anytime-valid, which is why 'decisive' uses a confidence sequence.",
    )
    routing = models.CharField(
        max_length=20,
        choices=Routing.choices,
        default=Routing.UNIFORM,
        help_text="Which pair of models the next vote compares. Adaptive routing needs three or more models; "
        "k stays the most votes one comparison receives.",
    )
    invite_token = models.CharField(max_length=64, unique=True, default=new_token, editable=False)
    comparisons_count = models.PositiveIntegerField(
        default=0,
        editable=False,
        help_text="Comparisons created when the campaign first opened (attention checks included): a rater's "
        "progress counts against it when no per-rater limit is set, without counting the comparisons anew.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # Declared last: the field's name shadows the `models` module in the rest of the class body.
    models = ManyToManyField(ModelEntry, related_name="campaigns")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(votes_per_comparison__gte=1), name="campaign_k_positive"),
            models.CheckConstraint(
                condition=Q(attention_check_rate__gte=0) & Q(attention_check_rate__lte=1),
                name="campaign_attention_rate_in_range",
            ),
            models.CheckConstraint(condition=Q(lease_seconds__gte=1), name="campaign_lease_positive"),
            models.CheckConstraint(
                condition=Q(comparisons_per_rater__isnull=True) | Q(comparisons_per_rater__gte=1),
                name="campaign_per_rater_positive",
            ),
            models.CheckConstraint(
                condition=Q(target_half_width__isnull=True)
                | (Q(target_half_width__gt=0) & Q(target_half_width__lte=50)),
                name="campaign_target_half_width_in_range",
            ),
            models.CheckConstraint(
                condition=Q(vote_budget__isnull=True) | Q(vote_budget__gte=1), name="campaign_vote_budget_positive"
            ),
            models.CheckConstraint(
                condition=Q(stopping_rule__in=["none", "precision", "decisive"]), name="campaign_stopping_rule_valid"
            ),
            models.CheckConstraint(
                condition=~Q(stopping_rule="precision") | Q(target_half_width__isnull=False),
                name="campaign_precision_rule_has_target",
            ),
            models.CheckConstraint(condition=Q(routing__in=["uniform", "adaptive"]), name="campaign_routing_valid"),
        ]

    def __str__(self) -> str:
        return self.slug

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.OPEN

    @property
    def identity_leaks_left_out(self) -> int:
        """How many comparisons were left out because an answer self-identifies (0 when they were kept)."""
        return 0 if self.keep_identity_leaks else len(self.identity_leaks)


class Comparison(models.Model):
    """Two responses to the same prompt. For an attention check, response_a is the
    on-prompt (gold) answer and response_b answers a different prompt."""

    # No index of its own: the (campaign, id) index below serves every lookup by campaign.
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="comparisons", db_index=False)
    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="+")
    response_a = models.ForeignKey(Response, on_delete=models.PROTECT, related_name="+")
    response_b = models.ForeignKey(Response, on_delete=models.PROTECT, related_name="+")
    is_attention_check = models.BooleanField(default=False)
    # Denormalized: votes recorded (attention checks excluded), updated in the vote's transaction.
    votes_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["campaign", "prompt__position", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "prompt", "response_a", "response_b"], name="comparison_unique_pair"
            ),
            models.CheckConstraint(condition=~Q(response_a=models.F("response_b")), name="comparison_distinct"),
        ]
        indexes = [
            # The campaign's id range (MIN and MAX: one probe each), where a pick's ties start at random.
            models.Index(fields=["campaign", "id"], name="comparison_campaign_id"),
            # The next-pair pick reads a campaign's comparisons in the order of their votes and stops after a
            # window of them (rating_queries.rank_candidates), instead of ranking the whole campaign. Holding
            # votes_count makes a vote's counter update write index entries (no HOT update): the price of a
            # pick that costs the same at 30,000 comparisons as at 30.
            models.Index(fields=["campaign", "is_attention_check", "votes_count", "id"], name="comparison_load_order"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign} #{self.pk}"


class Rater(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="rater")
    campaign = models.ForeignKey(
        Campaign,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="invited_raters",
        help_text="Set for raters who joined by invite link: they rate this campaign only.",
    )
    campaigns = models.ManyToManyField(
        Campaign, blank=True, related_name="named_raters", help_text="Campaigns a named rater may rate."
    )
    participant_id = models.CharField(max_length=200, blank=True, help_text="External id, e.g. PROLIFIC_PID.")
    completion_code = models.CharField(max_length=20, default=new_completion_code, editable=False)
    flagged = models.BooleanField(default=False)
    flag_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One participant id is one rater per campaign: a returning participant resumes (services.rater_join).
            models.UniqueConstraint(
                fields=["campaign", "participant_id"],
                condition=Q(campaign__isnull=False) & ~Q(participant_id=""),
                name="rater_unique_participant_per_campaign",
            ),
        ]

    def __str__(self) -> str:
        return str(self.user)


class Session(AbstractBaseSession):
    """A browser's session (Django's session row) with its signed-in user as a column of its own, kept with the
    session data on every save (`comparisons.sessions`), so that a request reads its session, its user and the
    user's Rater in one statement (`rating_queries.session_with_user`). Deleting a user ends their sessions."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )

    @classmethod
    def get_session_store_class(cls) -> type[Any]:
        from comparisons.sessions import SessionStore  # the store imports this model

        return SessionStore


class Assignment(models.Model):
    class Status(models.TextChoices):
        LEASED = "leased", "Leased"
        VOTED = "voted", "Voted"
        SKIPPED = "skipped", "Skipped"

    # Unique through Meta.constraints, not `unique=True`: on PostgreSQL a unique CharField also gets a second,
    # pattern-matching index that no query uses and every lease and vote would have to update.
    token = models.CharField(max_length=64, default=new_token, editable=False)
    # No index of their own: the composite indexes below begin with each of them. A second, narrower index made
    # every lease and vote update one index more, and PostgreSQL's generic plan of the rater's current lease
    # chose it (reading all of the rater's assignments), so that statement was planned afresh on every request.
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="assignments", db_index=False)
    rater = models.ForeignKey(Rater, on_delete=models.CASCADE, related_name="assignments", db_index=False)
    left_is_a = models.BooleanField(
        help_text="Response A of the comparison on the left. Counterbalanced: each comparison's votes are split "
        "between the two orders (k even: half each; k odd: one more in one order)."
    )
    routing_probability = models.FloatField(
        null=True,
        blank=True,
        help_text="Under adaptive routing, the probability this comparison's pair of models had of being served "
        "when it was leased (its inverse weights the vote for unbiased estimates); empty under uniform routing.",
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.LEASED)
    created_at = models.DateTimeField(auto_now_add=True)
    leased_until = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True, help_text="When it was voted or skipped.")
    # Not a field: an annotation `services.assignment_next` sets, what the rater is shown of the pair
    # (`rating_queries.RaterViewRow`), read in the lease's transaction.
    view_row: Any

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Rater first: then the index that answers "has this rater seen this pair" cannot also serve the count
            # of a comparison's live leases, which the (comparison, status, leased_until) index answers from the
            # index alone. Comparison first, plans made on a new study's small tables counted them through it,
            # reading every assignment of each candidate from the table (2.5 times the pick's reads).
            models.UniqueConstraint(fields=["rater", "comparison"], name="assignment_unique_rater_comparison"),
            models.UniqueConstraint(fields=["token"], name="assignment_unique_token"),
        ]
        indexes = [
            models.Index(fields=["comparison", "status", "leased_until"]),
            models.Index(fields=["rater", "status", "leased_until"]),
        ]

    def __str__(self) -> str:
        return f"assignment {self.pk}"


class Vote(models.Model):
    """A rater's verdict on one assignment.

    ``comparison``, ``rater``, ``left_is_a`` and ``routing_probability`` are the assignment's, and ``campaign``
    its comparison's, copied by the database in the statement that writes the vote (`rating_queries.write_vote`)
    and never changed after: the results page and the export read a campaign's million votes from this one table
    instead of joining each to its assignment (the join was most of PostgreSQL's time on a cold results page), and
    a rater's votes in a campaign are counted without visiting a comparison per vote."""

    class Choice(models.TextChoices):
        LEFT = "left", "Left (shown as A)"
        RIGHT = "right", "Right (shown as B)"
        TIE = "tie", "Tie"
        BOTH_BAD = "both_bad", "Both are bad"

    assignment = models.OneToOneField(Assignment, on_delete=models.CASCADE, related_name="vote")
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="+", editable=False)
    # Indexed by `vote_rater_campaign` and `vote_rater_last`, which begin with it.
    rater = models.ForeignKey(Rater, on_delete=models.CASCADE, related_name="+", editable=False, db_index=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+", editable=False)
    left_is_a = models.BooleanField(editable=False)
    routing_probability = models.FloatField(null=True, blank=True, editable=False)
    choice = models.CharField(max_length=20, choices=Choice.choices, help_text="Relative to the rater's screen.")
    winner_response = models.ForeignKey(
        Response, on_delete=models.PROTECT, null=True, blank=True, related_name="+", help_text="Empty for tie/both bad."
    )
    winner_model = models.ForeignKey(
        ModelEntry,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty for tie/both bad.",
    )
    rationale = models.TextField(blank=True)
    seconds = models.FloatField(help_text="From serving the pair to the vote.")
    submitted_at = models.DateTimeField()
    attention_failed = models.BooleanField(default=False, help_text="An attention check answered wrongly.")
    identity_reported = models.BooleanField(
        default=False, help_text="The rater reported that an answer of this pair reveals who wrote it."
    )

    class Meta:
        ordering = ["-submitted_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(choice__in=["left", "right", "tie", "both_bad"]), name="vote_choice_valid"
            ),
            models.CheckConstraint(condition=Q(seconds__gte=0), name="vote_seconds_non_negative"),
        ]
        # The few votes that failed an attention check, found without scanning a campaign's million votes.
        indexes = [
            models.Index(fields=["comparison"], condition=Q(attention_failed=True), name="vote_attention_failed"),
            # A rater's votes in a campaign (their progress, the per-rater cap), counted in one index range.
            models.Index(fields=["rater", "campaign"], name="vote_rater_campaign"),
            # A rater's last vote anywhere (a vote's seconds run from it), read from the end of one index range:
            # the maximum over all their assignments grew with every vote they had cast.
            models.Index(fields=["rater", "submitted_at"], name="vote_rater_last"),
            # The votes with a rationale (most have none), read by the export without scanning the others.
            models.Index(fields=["campaign"], condition=~Q(rationale=""), name="vote_with_rationale"),
        ]

    def __str__(self) -> str:
        return f"vote {self.pk}"


class VoteBlock(models.Model):
    """A sealed run of a campaign's votes in the form the results page's analysis reads them (`vote_copy`):
    BLOCK_VOTES consecutive votes by id, each field's values in one array. Votes are never changed once
    written, so a block stays true until a vote in it is deleted (with its rater), which the read notices;
    it is derived data, rebuilt from the votes whenever it is missing, stale or of another ``layout``."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    first_vote_id = models.BigIntegerField()
    last_vote_id = models.BigIntegerField()
    votes = models.PositiveIntegerField()
    layout = models.CharField(max_length=32, help_text="Digest of the record type the data is written in.")
    data = models.BinaryField()
    sealed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "first_vote_id"], name="vote_block_unique_start"),
            models.CheckConstraint(condition=Q(last_vote_id__gte=models.F("first_vote_id")), name="vote_block_range"),
            models.CheckConstraint(condition=Q(votes__gte=1), name="vote_block_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}: votes {self.first_vote_id}-{self.last_vote_id}"


class ContentReport(models.Model):
    """A rater's flag on one answer of the pair they voted on: harmful, false or offensive.

    The rater reports by side (A/B on their screen); `services.rating` maps the side to the response through
    the assignment's left/right order, so nothing about models passes through the rater."""

    class Kind(models.TextChoices):
        HARMFUL = "harmful", "Harmful"
        FALSE = "false", "False or misleading"
        OFFENSIVE = "offensive", "Offensive"

    vote = models.ForeignKey(Vote, on_delete=models.CASCADE, related_name="content_reports")
    response = models.ForeignKey(Response, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=20, choices=Kind.choices)

    class Meta:
        ordering = ["vote", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["vote", "response", "kind"], name="content_report_unique"),
            models.CheckConstraint(
                condition=Q(kind__in=["harmful", "false", "offensive"]), name="content_report_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} report on vote {self.vote_id}"


class Judgment(models.Model):
    """An automatic judge's verdict on one comparison, imported from an AlpacaEval annotations file.

    ``preference`` is on AlpacaEval's scale but oriented to the comparison: 1 = response_a is better,
    2 = response_b is better, values between for ties or weighted preferences (1.5 = tie)."""

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="judgments")
    judge = models.CharField(max_length=200, help_text="The name given to import_judgments --judge.")
    preference = models.FloatField()
    annotator = models.CharField(max_length=200, blank=True, help_text="The file's own 'annotator' field.")
    imported_at = models.DateTimeField()

    class Meta:
        ordering = ["judge", "comparison"]
        constraints = [
            models.UniqueConstraint(fields=["judge", "comparison"], name="judgment_one_per_judge_comparison"),
            models.CheckConstraint(
                condition=Q(preference__gte=1) & Q(preference__lte=2), name="judgment_preference_in_range"
            ),
            models.CheckConstraint(condition=~Q(judge=""), name="judgment_judge_named"),
        ]

    def __str__(self) -> str:
        return f"{self.judge} on {self.comparison_id}"


class SnapshotImmutable(Exception):
    """A published result snapshot was about to be changed; snapshots are written once."""


class ResultSnapshotQuerySet(models.QuerySet):
    def update(self, **kwargs: object) -> int:
        raise SnapshotImmutable("A published result snapshot cannot be changed; publish a new one beside it.")


class ResultSnapshot(models.Model):
    """A campaign's results frozen at one moment: the exact votes CSV, the analysis JSON and the manifest
    (hashes of the votes and of every model's weights or outputs, decoding settings, analysis options, code
    version). Written once by `services.snapshot_publish`; updates are refused here and by a database trigger."""

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="snapshots")
    number = models.PositiveIntegerField(help_text="1, 2, … within the campaign: part of the stable URL.")
    published_at = models.DateTimeField()
    published_by = models.CharField(max_length=150, blank=True)
    votes_count = models.PositiveIntegerField()
    votes_sha256 = models.CharField(max_length=64, help_text="sha256 of the votes' ids and choices.")
    manifest = models.TextField(help_text="manifest.json of the bundle, exactly as served.")
    votes_csv = models.TextField(help_text="votes.csv of the bundle, exactly as served.")
    analysis_json = models.TextField(help_text="analysis.json of the bundle, exactly as served.")

    objects = ResultSnapshotQuerySet.as_manager()

    class Meta:
        ordering = ["campaign", "number"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "number"], name="snapshot_unique_number"),
            models.CheckConstraint(condition=Q(number__gte=1), name="snapshot_number_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign} snapshot {self.number}"

    def save(self, *args: object, **kwargs: object) -> None:
        if not self._state.adding:
            raise SnapshotImmutable("A published result snapshot cannot be changed; publish a new one beside it.")
        super().save(*args, **kwargs)  # type: ignore[arg-type]
