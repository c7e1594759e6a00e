"""Admin for campaigns (create/edit, open/pause/close, progress page), raters (named raters) and read-only
views of comparisons, assignments and votes. Every change goes through comparisons.services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from comparisons import services
from comparisons.models import Assignment, Campaign, Comparison, Rater, Vote
from comparisons.results import identity_reports_count
from comparisons.selectors import campaign_blinding_audit_cached, campaign_progress
from comparisons.tracker import campaign_precision


def identity_leaks_summary(campaign: Campaign) -> str:
    """The campaign's self-identifying comparisons in one sentence, for admin messages and pages."""
    leaks = len(campaign.identity_leaks)
    if not leaks:
        return "No answer names its model, its maker or itself as an AI."
    if campaign.keep_identity_leaks:
        return f"{leaks} comparisons have an answer that names its model, its maker or itself as an AI: kept."
    return (
        f"{leaks} comparisons left out because an answer names its model, its maker or itself as an AI "
        "(listed on the progress page)."
    )


def _invite_url(request: HttpRequest, campaign: Campaign) -> str:
    return request.build_absolute_uri(reverse("comparisons:join", kwargs={"token": campaign.invite_token}))


@dataclass(frozen=True)
class _InviteLink:
    """The change page's read-only "Invite link", absolute for the site the admin is being used on. One per
    request (equal for the same request, as the admin requires of a read-only field): the admin object is
    shared by every request, so it keeps none of them."""

    request: HttpRequest
    __name__ = "invite_link"
    short_description = "Invite link"

    def __call__(self, obj: Campaign) -> str:
        if obj.pk is None:
            return "(after saving)"
        return format_html(
            '<input type="text" readonly size="90" value="{}" aria-label="Invite link">', _invite_url(self.request, obj)
        )


class CampaignForm(forms.ModelForm):
    """The campaign's settings; the rules are the services' (`campaign_settings_check`), shown on their fields."""

    class Meta:
        model = Campaign
        fields = [
            "slug", "title", "eval_set", "models", "baseline", "prompt_limit", "prompts", "votes_per_comparison",
            "instructions", "attention_check_rate", "lease_seconds", "comparisons_per_rater", "render_mode",
            "keep_identity_leaks", "target_half_width", "vote_budget", "stopping_rule", "routing",
        ]  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Left out of a form post (older scripts, tests), they keep the model's defaults.
        for name in ("stopping_rule", "routing"):
            if name in self.fields:
                self.fields[name].required = False

    def clean_stopping_rule(self) -> str:
        return self.cleaned_data.get("stopping_rule") or Campaign.Stopping.NONE

    def clean_routing(self) -> str:
        return self.cleaned_data.get("routing") or Campaign.Routing.UNIFORM

    def changes(self) -> services.CampaignSettings:
        """The settings this form edits (fields shown read-only are not among them), as the services take them."""
        data = self.cleaned_data
        changes: dict[str, Any] = {name: data[name] for name in self.Meta.fields if name in self.fields}
        for name in ("models", "prompts"):
            if name in changes:
                changes[name] = list(changes[name] or [])
        return cast(services.CampaignSettings, changes)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data  # a field's own error first (a required field left empty, a number that is not one)
        try:
            services.campaign_settings_check(
                campaign=self.instance if self.instance.pk is not None else None, changes=self.changes()
            )
        except ValidationError as exc:
            for name, messages in exc.error_dict.items() if hasattr(exc, "error_dict") else [(None, exc)]:
                self.add_error(name if name in self.fields else None, messages)
        return data

    def validate_unique(self) -> None:
        """The slug's uniqueness is the services' rule (one message, not two)."""


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignForm
    list_display = [
        "slug", "title", "eval_set", "status", "votes_per_comparison", "progress_link", "results_link", "created_at",
    ]  # fmt: skip
    list_filter = ["status"]
    search_fields = ["slug", "title"]
    filter_horizontal = ["models"]
    raw_id_fields = ["prompts"]
    readonly_fields = [
        "status", "opened_at", "closed_at", "created_at", "progress_link", "results_link",
        "identity_leaks_report",
    ]  # fmt: skip
    actions = ["open_campaigns", "pause_campaigns", "close_campaigns"]
    fieldsets = [
        # The invite link follows the status (`get_fieldsets`).
        (None, {"fields": ["slug", "title", "status", "progress_link", "results_link"]}),
        (
            "What is compared",
            {
                "fields": [
                    "eval_set",
                    "models",
                    "baseline",
                    "prompt_limit",
                    "prompts",
                    "keep_identity_leaks",
                    "identity_leaks_report",
                ]
            },
        ),  # fmt: skip
        (
            "Rating",
            {
                "fields": [
                    "votes_per_comparison",
                    "instructions",
                    "attention_check_rate",
                    "lease_seconds",
                    "comparisons_per_rater",
                    "render_mode",
                ]
            },
        ),
        (
            "Precision, stopping and routing",
            {"fields": ["target_half_width", "vote_budget", "stopping_rule", "routing"]},
        ),
        ("Dates", {"fields": ["created_at", "opened_at", "closed_at"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Campaign | None = None) -> list[Any]:
        fields: list[Any] = [*self.readonly_fields, _InviteLink(request)]
        if obj is not None and obj.comparisons.exists():
            fields += services.COMPARED_SETTINGS  # the comparisons are built from these
        return fields

    def get_fieldsets(self, request: HttpRequest, obj: Campaign | None = None) -> list[Any]:
        (title, options), *rest = super().get_fieldsets(request, obj)
        first: list[Any] = list(options["fields"])
        first.insert(first.index("status") + 1, _InviteLink(request))
        return [(title, {**options, "fields": first}), *rest]

    @admin.display(description="Self-identifying answers")
    def identity_leaks_report(self, obj: Campaign) -> str:
        if obj.pk is None or obj.opened_at is None:
            return "(checked when the campaign opens)"
        return identity_leaks_summary(obj)

    @admin.display(description="Progress")
    def progress_link(self, obj: Campaign) -> str:
        if obj.pk is None:
            return "-"
        return format_html('<a href="{}">progress</a>', reverse("admin:comparisons_campaign_progress", args=[obj.pk]))

    @admin.display(description="Results")
    def results_link(self, obj: Campaign) -> str:
        if obj.pk is None:
            return "-"
        return format_html('<a href="{}">results</a>', reverse("comparisons:results", args=[obj.slug]))

    def save_model(self, request: HttpRequest, obj: Campaign, form: CampaignForm, change: bool) -> None:
        if change:
            services.campaign_update(campaign=obj, **form.changes())
        else:
            obj.pk = services.campaign_create(**form.changes()).pk  # type: ignore[misc]
        obj.refresh_from_db()

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Models and prompts were set by the service, with the baseline among the models."""

    def get_urls(self) -> list:
        custom = [
            path(
                "<int:pk>/progress/",
                self.admin_site.admin_view(self.progress_view),
                name="comparisons_campaign_progress",
            )
        ]
        return custom + super().get_urls()

    def progress_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        campaign = get_object_or_404(Campaign, pk=pk)
        if not self.has_view_permission(request, campaign):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Progress of {campaign.slug}",
            "campaign": campaign,
            "progress": campaign_progress(campaign=campaign),
            "tracker": campaign_precision(campaign=campaign),
            "invite_url": _invite_url(request, campaign),
            "audit": campaign_blinding_audit_cached(campaign=campaign),
            "identity_summary": identity_leaks_summary(campaign),
            "identity_reports": identity_reports_count(campaign=campaign),
            "identity_lines": services.identity_leak_lines(campaign.identity_leaks),
        }
        return TemplateResponse(request, "admin/comparisons/campaign/progress.html", context)

    @admin.action(description="Open (creates the comparisons the first time)")
    def open_campaigns(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        for campaign in queryset:
            try:
                report = services.campaign_open(campaign=campaign)
            except ValidationError as exc:
                self.message_user(request, f"{campaign.slug}: {' '.join(exc.messages)}", messages.ERROR)
                continue
            skipped = ", ".join(pid for pid, _ in report.skipped[:10])
            more = f" (skipped prompts: {skipped}{'…' if len(report.skipped) > 10 else ''})" if skipped else ""
            identity = f" {identity_leaks_summary(campaign)}" if report.identity_leaks else ""
            self.message_user(
                request,
                f"{campaign.slug} is open: {report.created} new comparisons, "
                f"{report.attention_checks} attention checks, {len(report.skipped)} prompts skipped{more}.{identity}",
            )

    @admin.action(description="Pause (stop handing out pairs)")
    def pause_campaigns(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        for campaign in queryset:
            try:
                services.campaign_pause(campaign=campaign)
                self.message_user(request, f"{campaign.slug} is paused.")
            except ValidationError as exc:
                self.message_user(request, " ".join(exc.messages), messages.ERROR)

    @admin.action(description="Close (no more pairs or votes)")
    def close_campaigns(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        for campaign in queryset:
            services.campaign_close(campaign=campaign)
            self.message_user(request, f"{campaign.slug} is closed.")


class NamedRaterForm(forms.ModelForm):
    """Create a rater with a username and password (for raters who are not recruited by an invite link)."""

    username = forms.CharField(max_length=150)
    password = forms.CharField(widget=forms.PasswordInput, min_length=8)

    class Meta:
        model = Rater
        fields = ["campaigns"]

    def clean_username(self) -> str:
        username = self.cleaned_data["username"].strip()
        if get_user_model().objects.filter(username=username).exists():
            raise forms.ValidationError(f"A user named {username!r} already exists.")
        return username

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        password_validation.validate_password(password)
        return password


@admin.register(Rater)
class RaterAdmin(admin.ModelAdmin):
    list_display = ["user", "campaign", "participant_id", "flagged", "vote_count", "created_at"]
    list_filter = ["flagged", "campaign"]
    search_fields = ["user__username", "participant_id"]
    filter_horizontal = ["campaigns"]
    readonly_fields = ["user", "campaign", "participant_id", "completion_code", "created_at"]
    fields = [
        "user",
        "campaign",
        "campaigns",
        "participant_id",
        "completion_code",
        "flagged",
        "flag_reason",
        "created_at",
    ]
    actions = ["unflag"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Rater]:
        return (
            super().get_queryset(request).select_related("user", "campaign").annotate(votes=Count("assignments__vote"))
        )

    @admin.display(description="Votes", ordering="votes")
    def vote_count(self, obj: Rater) -> int:
        return obj.votes  # type: ignore[attr-defined]  # annotated by get_queryset

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = NamedRaterForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ["username", "password", "campaigns"] if obj is None else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [] if obj is None else list(self.readonly_fields)

    def save_model(self, request: HttpRequest, obj: Rater, form: forms.ModelForm, change: bool) -> None:
        data = form.cleaned_data
        if change:
            services.rater_update(
                rater=obj, campaigns=data["campaigns"], flagged=data["flagged"], flag_reason=data["flag_reason"]
            )
            return
        rater = services.rater_create_named(
            username=form.cleaned_data["username"],
            password=form.cleaned_data["password"],
            campaigns=list(form.cleaned_data.get("campaigns") or []),
        )
        obj.pk = rater.pk
        obj.user = rater.user

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        """The campaigns were set by the service."""

    @admin.action(description="Clear the flag")
    def unflag(self, request: HttpRequest, queryset: QuerySet[Rater]) -> None:
        unflagged = services.rater_unflag(raters=queryset)
        self.message_user(request, f"{unflagged} rater(s) unflagged.")


class ReadOnlyAdmin(admin.ModelAdmin):
    """Comparisons, assignments and votes are written by the services only."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Comparison)
class ComparisonAdmin(ReadOnlyAdmin):
    list_display = ["pk", "campaign", "prompt", "response_a", "response_b", "is_attention_check", "votes_count"]
    list_filter = ["campaign", "is_attention_check"]
    list_select_related = ["campaign", "prompt", "response_a__model", "response_a__prompt", "response_b__model"]


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = ["pk", "comparison", "rater", "left_is_a", "status", "created_at", "leased_until"]
    list_filter = ["status", "comparison__campaign"]
    list_select_related = ["comparison__campaign", "rater__user"]
    exclude = ["token"]


@admin.register(Vote)
class VoteAdmin(ReadOnlyAdmin):
    list_display = [
        "pk", "assignment", "choice", "winner_model", "seconds", "attention_failed", "identity_reported",
        "submitted_at",
    ]  # fmt: skip
    list_filter = ["choice", "attention_failed", "identity_reported", "comparison__campaign"]
    list_select_related = ["assignment", "winner_model"]
