"""Admin for campaigns (create/edit, open/pause/close, progress page), raters (named raters) and read-only
views of comparisons, assignments and votes. Every change goes through comparisons.services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
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


class CampaignForm(forms.ModelForm):
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

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        models = list(data.get("models") or [])
        baseline = data.get("baseline")
        if "models" in self.fields:
            if len(models) + (1 if baseline is not None and baseline not in models else 0) < 2:
                raise ValidationError("A campaign compares at least two models.")
            eval_set = data.get("eval_set")
            prompts = data.get("prompts") or []
            if eval_set is not None and any(p.eval_set_id != eval_set.pk for p in prompts):
                raise ValidationError("Every prompt of the subset must belong to the campaign's eval set.")
            n_models = len(models) + (1 if baseline is not None and baseline not in models else 0)
        else:  # the models are read-only once the campaign has comparisons
            n_models = self.instance.models.count() if self.instance.pk else 0
        if "routing" in self.fields and "target_half_width" in data:
            services.campaign_stopping_check(
                target_half_width=data.get("target_half_width"),
                vote_budget=data.get("vote_budget"),
                stopping_rule=data.get("stopping_rule") or Campaign.Stopping.NONE,
                routing=data.get("routing") or Campaign.Routing.UNIFORM,
                n_models=n_models,
            )
        return data


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
        "status", "invite_link", "opened_at", "closed_at", "created_at", "progress_link", "results_link",
        "identity_leaks_report",
    ]  # fmt: skip
    actions = ["open_campaigns", "pause_campaigns", "close_campaigns"]
    fieldsets = [
        (None, {"fields": ["slug", "title", "status", "invite_link", "progress_link", "results_link"]}),
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

    def get_readonly_fields(self, request: HttpRequest, obj: Campaign | None = None) -> list[str]:
        fields = list(self.readonly_fields)
        if obj is not None and obj.comparisons.exists():
            # The comparisons are built from these: they cannot change once the campaign has opened.
            fields += ["eval_set", "models", "baseline", "prompt_limit", "prompts", "keep_identity_leaks"]
        return fields

    @admin.display(description="Self-identifying answers")
    def identity_leaks_report(self, obj: Campaign) -> str:
        if obj.pk is None or obj.opened_at is None:
            return "(checked when the campaign opens)"
        return identity_leaks_summary(obj)

    @admin.display(description="Invite link")
    def invite_link(self, obj: Campaign) -> str:
        if obj.pk is None:
            return "(after saving)"
        request = getattr(self, "_request", None)
        url = _invite_url(request, obj) if request else reverse("comparisons:join", args=[obj.invite_token])
        return format_html('<input type="text" readonly size="90" value="{}" aria-label="Invite link">', url)

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

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        self._request = request
        return super().get_form(request, obj, change, **kwargs)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        baseline = form.cleaned_data.get("baseline")
        if baseline is not None and "models" in form.fields:
            form.instance.models.add(baseline)  # the baseline is one of the compared models

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

    @admin.display(description="Votes")
    def vote_count(self, obj: Rater) -> int:
        return Vote.objects.filter(assignment__rater=obj).count()

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = NamedRaterForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ["username", "password", "campaigns"] if obj is None else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [] if obj is None else list(self.readonly_fields)

    def save_model(self, request: HttpRequest, obj: Rater, form: forms.ModelForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        rater = services.rater_create_named(
            username=form.cleaned_data["username"],
            password=form.cleaned_data["password"],
            campaigns=list(form.cleaned_data.get("campaigns") or []),
        )
        obj.pk = rater.pk
        obj.user = rater.user

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        if change:
            super().save_related(request, form, formsets, change)

    @admin.action(description="Clear the flag")
    def unflag(self, request: HttpRequest, queryset: QuerySet[Rater]) -> None:
        updated = queryset.update(flagged=False, flag_reason="")
        self.message_user(request, f"{updated} rater(s) unflagged.")


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
    list_filter = ["choice", "attention_failed", "identity_reported", "assignment__comparison__campaign"]
    list_select_related = ["assignment", "winner_model"]
