"""What models said: eval sets, prompts, model entries, generation runs, responses."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from generation.prompting import compose_instruction

# A spreadsheet reads a cell starting with one of these as a formula (CSV injection, OWASP): names that land in
# exported CSV cells may not start with them.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def name_start_problem(name: str) -> str:
    """Why `name` cannot be a model or campaign name ('' when it can): it starts like a spreadsheet formula."""
    if name[:1] in FORMULA_STARTS:
        return (
            f"A name may not start with {name[:1]!r}: spreadsheets opening an export would read it as a formula. "
            "Start it with a letter or digit."
        )
    return ""


def validate_name_start(value: str) -> None:
    problem = name_start_problem(value)
    if problem:
        raise ValidationError(problem)


class EvalSet(models.Model):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    source = models.CharField(max_length=500, blank=True, help_text="Where the prompts came from.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Prompt(models.Model):
    eval_set = models.ForeignKey(EvalSet, on_delete=models.CASCADE, related_name="prompts")
    external_id = models.CharField(max_length=200, help_text="e.g. user_oriented_task_0")
    position = models.PositiveIntegerField(help_text="Order within the eval set, from 0.")
    instruction = models.TextField()
    input = models.TextField(blank=True)
    category = models.CharField(max_length=200, blank=True, help_text="Self-Instruct's motivation_app.")
    reference_output = models.TextField(blank=True)

    class Meta:
        ordering = ["eval_set", "position"]
        constraints = [
            models.UniqueConstraint(fields=["eval_set", "external_id"], name="prompt_unique_external_id"),
            models.UniqueConstraint(fields=["eval_set", "position"], name="prompt_unique_position"),
        ]
        indexes = [models.Index(fields=["eval_set", "category"])]

    def __str__(self) -> str:
        return self.external_id

    @property
    def composed_instruction(self) -> str:
        """The AlpacaEval form: instruction, a blank line, then the input when there is one."""
        return compose_instruction(self.instruction, self.input)


class PromptTemplate(models.TextChoices):
    ALPACA = "alpaca", "Alpaca (instruction / input / response)"
    CHAT = "chat", "Tokenizer's chat template"
    PLAIN = "plain", "Plain instruction text"


class DType(models.TextChoices):
    AUTO = "auto", "auto (bf16/fp16 on GPU, fp32 on CPU)"
    FLOAT32 = "float32", "float32"
    BFLOAT16 = "bfloat16", "bfloat16"
    FLOAT16 = "float16", "float16"


class ModelEntry(models.Model):
    class Kind(models.TextChoices):
        CHECKPOINT = "checkpoint", "Checkpoint"
        IMPORTED = "imported", "Imported outputs"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending validation"
        VALIDATING = "validating", "Validating"
        READY = "ready", "Ready"
        INVALID = "invalid", "Invalid"

    name = models.CharField(max_length=200, unique=True, validators=[validate_name_start])
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    status_reason = models.TextField(blank=True, help_text="Why validation failed.")
    description = models.TextField(blank=True)

    # Checkpoint fields (empty for imported outputs).
    source = models.CharField(max_length=1000, blank=True, help_text="Uploaded archive or server directory.")
    checkpoint_dir = models.CharField(max_length=1000, blank=True, help_text="Validated model directory.")
    architecture = models.CharField(max_length=200, blank=True)
    parameter_count = models.BigIntegerField(null=True, blank=True)
    weights_sha256 = models.CharField(max_length=64, blank=True)
    source_sha256 = models.CharField(
        max_length=64,
        blank=True,
        help_text="sha256 of the uploaded single-file checkpoint (GGUF) it was converted from.",
    )
    chat_template_sha256 = models.CharField(
        max_length=64, blank=True, help_text="sha256 of the tokenizer's chat template text, when it has one."
    )

    # Generation settings.
    template = models.CharField(max_length=20, choices=PromptTemplate.choices, default=PromptTemplate.ALPACA)
    max_new_tokens = models.PositiveIntegerField(default=256)
    temperature = models.FloatField(default=0.0, help_text="0 means greedy decoding.")
    top_p = models.FloatField(default=1.0)
    seed = models.BigIntegerField(default=0)
    dtype = models.CharField(max_length=20, choices=DType.choices, default=DType.AUTO)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "model"
        constraints = [
            models.CheckConstraint(condition=Q(max_new_tokens__gte=1), name="model_max_new_tokens_positive"),
            models.CheckConstraint(condition=Q(temperature__gte=0), name="model_temperature_non_negative"),
            models.CheckConstraint(condition=Q(top_p__gt=0) & Q(top_p__lte=1), name="model_top_p_in_range"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


class GenerationRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    model = models.ForeignKey(ModelEntry, on_delete=models.CASCADE, related_name="runs")
    eval_set = models.ForeignKey(EvalSet, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    chunk_size = models.PositiveIntegerField(default=32)
    batch_size = models.PositiveIntegerField(default=8)
    prompt_limit = models.PositiveIntegerField(null=True, blank=True, help_text="Only the first N prompts.")
    total_prompts = models.PositiveIntegerField(default=0)
    generated_tokens = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["model", "eval_set"], name="run_unique_model_eval_set"),
            models.CheckConstraint(condition=Q(chunk_size__gte=1), name="run_chunk_size_positive"),
            models.CheckConstraint(condition=Q(batch_size__gte=1), name="run_batch_size_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.model} on {self.eval_set}"

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.SUCCEEDED, self.Status.FAILED, self.Status.CANCELLED}


class GenerationChunk(models.Model):
    """A slice of a run's prompts: the unit of work of one Celery task."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    run = models.ForeignKey(GenerationRun, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    first_position = models.PositiveIntegerField()
    last_position = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    worker = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["run", "index"]
        constraints = [
            models.UniqueConstraint(fields=["run", "index"], name="chunk_unique_index"),
            models.CheckConstraint(
                condition=Q(last_position__gte=models.F("first_position")), name="chunk_range_ordered"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.run} chunk {self.index}"


class Response(models.Model):
    class FinishReason(models.TextChoices):
        STOP = "stop", "End of sequence"
        LENGTH = "length", "Max new tokens"
        IMPORTED = "imported", "Imported"

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="responses")
    model = models.ForeignKey(ModelEntry, on_delete=models.CASCADE, related_name="responses")
    run = models.ForeignKey(GenerationRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="responses")
    text = models.TextField()
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    finish_reason = models.CharField(max_length=20, choices=FinishReason.choices)
    identity_matches = models.JSONField(
        default=list,
        blank=True,
        help_text="Where the text names its model, its maker or itself as an AI (generation.identity): "
        "a list of {phrase, kind, start, end}; empty when it does not.",
    )
    generator_config = models.JSONField(
        default=dict,
        blank=True,
        help_text="Provenance: for a generated response the checkpoint hash, template and decoding settings it was "
        "made with; for an imported one the outputs file and its hash.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["prompt__position"]
        constraints = [
            models.UniqueConstraint(fields=["prompt", "model"], name="response_unique_prompt_model"),
        ]

    def __str__(self) -> str:
        return f"{self.model} on {self.prompt}"

    @property
    def self_identifies(self) -> bool:
        return bool(self.identity_matches)


class PlaygroundAnswer(models.Model):
    """A staff member's try of one model on one instruction: never an evaluation Response, never rated."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    token = models.CharField(max_length=32, unique=True, help_text="Opaque handle the page polls.")
    model = models.ForeignKey(ModelEntry, on_delete=models.CASCADE, related_name="playground_answers")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="playground_answers"
    )
    instruction = models.TextField()
    input = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    prompt_text = models.TextField(blank=True, help_text="Exactly what the model received, special tokens included.")
    text = models.TextField(blank=True)
    finish_reason = models.CharField(max_length=20, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    generator_config = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.model} playground answer"
