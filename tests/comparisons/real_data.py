"""The demo's data in a test database: the real Self-Instruct prompts and the real outputs of Alpaca 7B
(AlpacaEval file) and text-davinci-003 (Self-Instruct predictions), imported as `make demo` imports them."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.db.models import Model

from comparisons import services
from comparisons.models import Assignment, Campaign, Comparison
from generation.models import EvalSet, ModelEntry, Prompt, Response

FIXTURES = Path(settings.BASE_DIR) / "fixtures"
EVAL_SET = "self-instruct"
ALPACA, DAVINCI = "alpaca-7b", "text-davinci-003"
OUTPUTS = {
    ALPACA: FIXTURES / "alpaca_eval" / "alpaca-7b.json",
    DAVINCI: FIXTURES / "self_instruct" / "predictions" / "text-davinci-003.jsonl",
}


def import_real_outputs() -> EvalSet:
    """Import the eval set and both models' outputs (once per test database)."""
    if not EvalSet.objects.filter(name=EVAL_SET).exists():
        call_command("import_evalset", FIXTURES / "self_instruct" / "user_oriented_instructions.jsonl",
                     name=EVAL_SET, stdout=StringIO())  # fmt: skip
    for model, path in OUTPUTS.items():
        if not ModelEntry.objects.filter(name=model).exists():
            call_command("import_outputs", path, model=model, evalset=EVAL_SET, stdout=StringIO())
    return EvalSet.objects.get(name=EVAL_SET)


def real_campaign(*, slug: str = "real-study", k: int = 1, **options: object) -> Campaign:
    """An open campaign on the real outputs, Alpaca 7B against text-davinci-003 on all 252 prompts."""
    eval_set = import_real_outputs()
    campaign = services.campaign_create(
        slug=slug,
        title="Alpaca 7B vs text-davinci-003",
        eval_set=eval_set,
        models=list(ModelEntry.objects.filter(name__in=OUTPUTS).order_by("name")),
        votes_per_comparison=k,
        **options,  # type: ignore[arg-type]
    )
    services.campaign_open(campaign=campaign)
    campaign.refresh_from_db()
    analyze_tables(Prompt, Response, ModelEntry, Comparison)
    return campaign


def analyze_tables(*models: type[Model]) -> None:
    """PostgreSQL: refresh the planner's statistics of these tables, counting this test's uncommitted rows.

    The test database's tables were last analyzed empty (after a flush); with those statistics PostgreSQL
    joined a thousand-row campaign by nested sequential scans, 20 s per query and over half an hour for one
    five-way join. Production tables are analyzed by autovacuum once their rows are committed."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE " + ", ".join(connection.ops.quote_name(m._meta.db_table) for m in models))


def served_models(token: str) -> tuple[str, str]:
    """Test-side truth, never shown to raters: the models shown as A and as B on this assignment."""
    assignment = Assignment.objects.select_related(
        "comparison__response_a__model", "comparison__response_b__model"
    ).get(token=token)
    a, b = assignment.comparison.response_a.model.name, assignment.comparison.response_b.model.name
    return (a, b) if assignment.left_is_a else (b, a)
