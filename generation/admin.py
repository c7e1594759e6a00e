"""Django admin for the generation app: eval sets, prompts, models (checkpoint upload), runs with live progress."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.db.models import Count
from django.http import HttpRequest
from django.urls import path
from django.utils.html import format_html
from django.views.decorators.csrf import csrf_exempt

from generation import selectors, services
from generation.checkpoints import CheckpointError, archive_kind
from generation.errors import InputError
from generation.identity import describe
from generation.models import EvalSet, GenerationChunk, GenerationRun, ModelEntry, Prompt, Response


@admin.register(EvalSet)
class EvalSetAdmin(admin.ModelAdmin):
    list_display = ["name", "prompt_count", "source", "created_at"]
    search_fields = ["name", "description", "source"]

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).annotate(n_prompts=Count("prompts"))

    @admin.display(description="prompts", ordering="n_prompts")
    def prompt_count(self, obj: EvalSet) -> int:
        return obj.n_prompts  # type: ignore[attr-defined]


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["external_id", "eval_set", "position", "category", "short_instruction", "has_input"]
    list_filter = ["eval_set", "category"]
    search_fields = ["external_id", "instruction", "input", "category"]
    list_select_related = ["eval_set"]

    @admin.display(description="instruction")
    def short_instruction(self, obj: Prompt) -> str:
        return obj.instruction if len(obj.instruction) <= 80 else obj.instruction[:77] + "…"

    @admin.display(boolean=True, description="input")
    def has_input(self, obj: Prompt) -> bool:
        return bool(obj.input)


# A model's name and generation settings: given when it is added, and all an existing entry's change form may
# change (the rest is what its intake found).
SETTINGS_FIELDS = ["name", "description", "template", "max_new_tokens", "temperature", "top_p", "seed", "dtype"]


class CheckpointAddForm(forms.ModelForm):
    """A new checkpoint: a browser upload (streamed to disk) or a directory/archive already on the server."""

    checkpoint_file = forms.FileField(
        required=False,
        help_text=".zip, .tar or .tar.gz of a Hugging Face model directory (safetensors weights), or a .gguf file "
        "(converted once to safetensors).",
    )
    server_path = forms.CharField(
        required=False,
        max_length=1000,
        help_text="Or a directory (used in place), archive or .gguf file already on the server (a shared volume).",
    )

    class Meta:
        model = ModelEntry
        fields = SETTINGS_FIELDS

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        upload, server_path = data.get("checkpoint_file"), (data.get("server_path") or "").strip()
        if bool(upload) == bool(server_path):
            raise forms.ValidationError("Give either a checkpoint file to upload or a server path, not both.")
        if server_path:
            try:
                archive_kind(Path(server_path))
            except CheckpointError as exc:
                raise forms.ValidationError({"server_path": str(exc)}) from exc
        data["server_path"] = server_path
        return data


class ModelSettingsForm(forms.ModelForm):
    """An existing entry's name and generation settings, checked by `services.model_settings_check`."""

    class Meta:
        model = ModelEntry
        fields = SETTINGS_FIELDS

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        try:
            data["name"] = services.model_settings_check(
                model=self.instance, name=data["name"], template=data["template"],
                max_new_tokens=data["max_new_tokens"], temperature=data["temperature"], top_p=data["top_p"],
                dtype=data["dtype"],
            )  # fmt: skip
        except InputError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return data


@admin.register(ModelEntry)
class ModelEntryAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "status", "architecture", "parameters", "template", "max_new_tokens", "created_at"]
    list_filter = ["kind", "status", "template", "architecture"]
    search_fields = ["name", "description", "architecture", "weights_sha256", "source_sha256"]
    actions = ["validate_again"]
    intake_fields = [
        "kind", "status", "status_reason", "source", "checkpoint_dir", "architecture", "parameter_count",
        "weights_sha256", "source_sha256", "chat_template_sha256", "created_at", "updated_at",
    ]  # fmt: skip

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        kwargs["form"] = CheckpointAddForm if obj is None else ModelSettingsForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None):
        if obj is None:
            return [*SETTINGS_FIELDS, "checkpoint_file", "server_path"]
        return [*SETTINGS_FIELDS, *self.intake_fields]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        return self.intake_fields if obj is not None else []

    def get_urls(self):
        # Replaces the stock add URL: the upload handlers must be chosen before
        # anything (CSRF included) reads the request body.
        return [
            path(
                "add/",
                csrf_exempt(self._add_streaming_to_disk),
                name=f"{self.opts.app_label}_{self.opts.model_name}_add",
            ),
            *super().get_urls(),
        ]

    def _add_streaming_to_disk(self, request: HttpRequest, form_url: str = "", extra_context: Any = None):
        # Every upload goes to a temporary file, whatever its size: never into memory.
        request.upload_handlers = [TemporaryFileUploadHandler(request)]
        return self.admin_site.admin_view(self.add_view)(request, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: ModelEntry, form: forms.ModelForm, change: bool) -> None:
        data = form.cleaned_data
        if change:
            services.model_settings_update(model=obj, **{field: data[field] for field in SETTINGS_FIELDS})
            return
        try:
            entry = services.model_add(
                name=data["name"],
                source=data["server_path"],
                template=data["template"],
                max_new_tokens=data["max_new_tokens"],
                temperature=data["temperature"],
                top_p=data["top_p"],
                seed=data["seed"],
                dtype=data["dtype"],
                description=data.get("description", ""),
            )
        except InputError as exc:  # the form checked the same things; a race is still possible
            raise forms.ValidationError(str(exc)) from exc
        if data.get("checkpoint_file"):
            file = data["checkpoint_file"]
            services.model_attach_upload(model=entry, upload=file, original_name=file.name)
        services.checkpoint_validate_queue(model=entry)
        obj.pk = entry.pk
        obj._state.adding = False
        obj.refresh_from_db()
        messages.info(request, f"Checkpoint received; a worker is validating {entry.name}. Reload to see its status.")

    @admin.display(description="parameters", ordering="parameter_count")
    def parameters(self, obj: ModelEntry) -> str:
        return f"{obj.parameter_count:,}" if obj.parameter_count else "–"

    @admin.action(description="Validate the selected checkpoints again")
    def validate_again(self, request: HttpRequest, queryset) -> None:
        queued = 0
        for entry in queryset.filter(kind=ModelEntry.Kind.CHECKPOINT).exclude(status=ModelEntry.Status.READY):
            if entry.source:
                services.checkpoint_validate_queue(model=entry)
                queued += 1
        self.message_user(request, f"{queued} checkpoint(s) queued for validation.")


class GenerationChunkInline(admin.TabularInline):
    model = GenerationChunk
    extra = 0
    can_delete = False
    fields = ("index", "first_position", "last_position", "status", "worker", "attempts", "heartbeat_at", "error")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RunStartForm(forms.ModelForm):
    """Start (or resume) a run; what is refused is `run_start`'s rule, shown under the field it is about."""

    # Plain whole numbers: the range is run_start's to check (no second rule in the form).
    prompt_limit = forms.IntegerField(required=False, help_text="Only the first N prompts; empty: all of them.")
    chunk_size = forms.IntegerField(
        required=False,
        help_text=f"Prompts per worker task; empty: {GenerationRun._meta.get_field('chunk_size').default}.",
    )
    batch_size = forms.IntegerField(
        required=False,
        help_text=f"Prompts per forward batch; empty: {GenerationRun._meta.get_field('batch_size').default}.",
    )

    class Meta:
        model = GenerationRun
        fields = ["model", "eval_set", "prompt_limit", "chunk_size", "batch_size"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        ready = ModelEntry.objects.filter(kind=ModelEntry.Kind.CHECKPOINT, status=ModelEntry.Status.READY)
        self.fields["model"].queryset = ready  # type: ignore[attr-defined]

    def run_options(self) -> dict[str, Any]:
        return {name: self.cleaned_data.get(name) for name in self.Meta.fields}

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.errors:
            try:
                services.run_start_check(**self.run_options())
            except InputError as exc:
                self.add_error(exc.field if exc.field in self.fields else None, str(exc))
        return data

    def _post_clean(self) -> None:
        """The rules are run_start's (`clean`); the instance is never saved from this form."""


@admin.register(GenerationRun)
class GenerationRunAdmin(admin.ModelAdmin):
    list_display = ["__str__", "status", "progress", "speed", "eta", "created_at", "finished_at"]
    list_filter = ["status", "model", "eval_set"]
    search_fields = ["model__name", "eval_set__name", "error"]
    list_select_related = ["model", "eval_set"]
    actions = ["cancel_runs", "resume_runs"]
    inlines = [GenerationChunkInline]
    change_form_template = "admin/generation/generationrun/change_form.html"
    readonly = [
        "model", "eval_set", "status", "progress", "speed", "eta", "error", "prompt_limit", "chunk_size",
        "batch_size", "total_prompts", "generated_tokens", "created_at", "started_at", "finished_at",
    ]  # fmt: skip

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        if obj is None:
            kwargs["form"] = RunStartForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None):
        return self.readonly if obj is not None else RunStartForm.Meta.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        return self.readonly if obj is not None else []

    def get_inlines(self, request: HttpRequest, obj: Any = None):
        return self.inlines if obj is not None else []

    def save_model(self, request: HttpRequest, obj: GenerationRun, form: forms.ModelForm, change: bool) -> None:
        if change:
            return  # runs change through their actions only
        run = services.run_start(**form.run_options())  # type: ignore[attr-defined]
        obj.pk = run.pk
        obj._state.adding = False
        obj.refresh_from_db()

    def _progress(self, obj: GenerationRun) -> selectors.RunProgress:
        cache = getattr(obj, "_progress_cache", None)
        if cache is None:
            cache = selectors.run_progress(run=obj)
            obj._progress_cache = cache  # type: ignore[attr-defined]
        return cache

    @admin.display(description="done")
    def progress(self, obj: GenerationRun) -> str:
        p = self._progress(obj)
        return format_html(
            '<progress max="{}" value="{}"></progress> {}/{} ({}%)', p.total or 1, p.done, p.done, p.total,
            f"{p.percent:.0f}",
        )  # fmt: skip

    @admin.display(description="tokens/s")
    def speed(self, obj: GenerationRun) -> str:
        tps = self._progress(obj).tokens_per_second
        return f"{tps:.1f}" if tps is not None else "–"

    @admin.display(description="ETA")
    def eta(self, obj: GenerationRun) -> str:
        return selectors.format_duration(self._progress(obj).eta_seconds)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None):
        run = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if run is not None:
            context["run_progress"] = self._progress(run)
            context["auto_refresh"] = not run.is_finished
            context["run_eta"] = selectors.format_duration(context["run_progress"].eta_seconds)
        return super().change_view(request, object_id, form_url, extra_context=context)

    @admin.action(description="Cancel the selected runs")
    def cancel_runs(self, request: HttpRequest, queryset) -> None:
        for run in queryset:
            services.run_cancel(run=run)
        self.message_user(request, f"{queryset.count()} run(s) cancelled; workers stop after their current batch.")

    @admin.action(description="Resume the selected runs (only what is missing)")
    def resume_runs(self, request: HttpRequest, queryset) -> None:
        chunks = 0
        for run in queryset:
            chunks += len(services.run_resume(run=run, requeue_pending=True))
        self.message_user(request, f"{chunks} chunk(s) queued again.")


@admin.register(GenerationChunk)
class GenerationChunkAdmin(admin.ModelAdmin):
    list_display = ["run", "index", "first_position", "last_position", "status", "worker", "attempts", "heartbeat_at"]
    list_filter = ["status", "run__model"]
    search_fields = ["worker", "error", "run__model__name"]
    list_select_related = ["run__model", "run__eval_set"]
    readonly_fields = [f.name for f in GenerationChunk._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class SelfIdentifiesFilter(admin.SimpleListFilter):
    """Responses that name their model, their maker or themselves as an AI (campaigns leave them out by default)."""

    title = "self-identifies"
    parameter_name = "self_identifies"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset):
        if self.value() == "yes":
            return queryset.exclude(identity_matches=[])
        if self.value() == "no":
            return queryset.filter(identity_matches=[])
        return queryset


RESPONSE_FIELDS = (
    "prompt", "model", "run", "text", "finish_reason", "prompt_tokens", "completion_tokens", "seconds",
    "self_identification", "provenance",
)  # fmt: skip


@admin.register(Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = [
        "prompt", "model", "short_text", "self_identification", "finish_reason", "made_with", "prompt_tokens",
        "completion_tokens", "seconds",
    ]  # fmt: skip
    list_filter = [SelfIdentifiesFilter, "model", "finish_reason", "prompt__eval_set"]
    search_fields = ["text", "prompt__external_id", "prompt__instruction", "model__name"]
    list_select_related = ["prompt", "model"]
    # Only the text may be corrected: a response is one model's answer to one prompt, made as its provenance says.
    fields = RESPONSE_FIELDS
    readonly_fields = tuple(field for field in RESPONSE_FIELDS if field != "text")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # responses come from generation runs and imports (with their provenance)

    def save_model(self, request: HttpRequest, obj: Response, form: forms.ModelForm, change: bool) -> None:
        services.response_text_update(response=obj, text=form.cleaned_data["text"])

    @admin.display(description="self-identifies")
    def self_identification(self, obj: Response) -> str:
        return describe(obj.identity_matches) or "–"

    @admin.display(description="made with")
    def made_with(self, obj: Response) -> str:
        config = obj.generator_config or {}
        if config.get("source") == "generated":
            decoding = config.get("decoding", "")
            if decoding == "sampling":
                decoding = f"T={config.get('temperature')}, top-p={config.get('top_p')}, seed {config.get('seed')}"
            return f"{config.get('template')} template, {decoding}, weights {str(config.get('checkpoint_sha256'))[:12]}"
        if config.get("source") == "imported":
            return f"imported from {config.get('outputs_file')} ({str(config.get('outputs_sha256'))[:12]})"
        return "–"

    @admin.display(description="provenance (generator_config)")
    def provenance(self, obj: Response) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.generator_config or {}, indent=2, sort_keys=True))

    @admin.display(description="text")
    def short_text(self, obj: Response) -> str:
        return obj.text if len(obj.text) <= 80 else obj.text[:77] + "…"
