"""The blinding audit: checked by simulation against known truth, then on the real fixtures end to end."""

from __future__ import annotations

import json
import random
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from comparisons.blinding import BYTE_LEVEL, FEATURE_NAMES, AuditSettings, audit_gold, audit_pair
from tests.comparisons.real_data import ALPACA, DAVINCI, real_campaign

FAST = AuditSettings(n_boot=400)


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "river", "stone"]) for _ in range(n))


def test_a_planted_tell_is_found_with_the_accuracy_it_gives():
    """Model A's text starts with a space in 80% of pairs, B's never: a rater using that rule is right on those
    pairs and at a coin flip on the rest, 0.8 + 0.2 / 2 = 90%."""
    rng = random.Random(1)
    n = 300
    texts_a = [(" " if rng.random() < 0.8 else "") + words(rng, rng.randint(5, 40)) for _ in range(n)]
    texts_b = [words(rng, rng.randint(5, 40)) for _ in range(n)]
    audit = audit_pair(
        texts_a=texts_a, texts_b=texts_b, groups=[f"p{i}" for i in range(n)], model_a="m1", model_b="m2", settings=FAST
    )
    rule = next(f for f in audit["features"] if f["feature"] == "leading_whitespace")
    assert rule["ci_low"] <= 90 <= rule["ci_high"] and not rule["at_chance"]
    assert rule["more_is"] == "m1" and rule["group"] == BYTE_LEVEL
    assert audit["classifier"]["byte_level"]["ci_low"] > 80
    assert audit["best_rule"]["chosen"] == ["leading_whitespace"] * 5
    assert "ABOVE CHANCE" in audit["headline"]
    # Lengths come from the same distribution for both models: the content classifier is at chance.
    assert audit["classifier"]["content"]["at_chance"]


def test_a_length_difference_is_reported_as_content():
    rng = random.Random(2)
    n = 200
    texts_a = [words(rng, rng.randint(30, 60)) for _ in range(n)]
    texts_b = [words(rng, rng.randint(5, 35)) for _ in range(n)]
    audit = audit_pair(
        texts_a=texts_a, texts_b=texts_b, groups=[f"p{i}" for i in range(n)], model_a="m1", model_b="m2", settings=FAST
    )
    assert audit["classifier"]["content"]["accuracy"] > 95
    assert audit["classifier"]["byte_level"] == {"accuracy": 50.0, "ci_low": 50.0, "ci_high": 50.0, "at_chance": True}
    assert re.match(
        r"From surface features alone a rater could guess the model (99|100)% of the time \(95% CI", audit["headline"]
    )
    assert "Byte-level features alone: 50% (at chance)" in audit["headline"]


def test_choosing_the_best_of_many_rules_on_noise_stays_at_chance():
    """Both models write alike: the best of the one-feature rules looks better than 50% in the data it was
    picked on, by chance; picked inside the folds it is scored at chance. Checked over several studies."""
    covered = 0
    for seed in range(6):
        rng = random.Random(seed)
        n = 120

        def noisy(rng: random.Random = rng) -> str:
            lines = [words(rng, rng.randint(2, 12)) for _ in range(rng.randint(1, 6))]
            marks = ["# ", "- ", "1. ", "**x** ", "`c` ", "| a | b |", ""]
            return "\n".join(rng.choice(marks) + line for line in lines)

        texts_a, texts_b = [noisy() for _ in range(n)], [noisy() for _ in range(n)]
        audit = audit_pair(
            texts_a=texts_a, texts_b=texts_b, groups=[f"p{i // 2}" for i in range(n)], model_a="m1", model_b="m2",
            settings=AuditSettings(n_boot=300, seed=seed),
        )  # fmt: skip
        covered += audit["best_rule"]["at_chance"]
        assert audit["classifier"]["all"]["accuracy"] < 62
    assert covered >= 5


def test_gold_audit_finds_a_signature_shared_by_both_sides_of_gold_pairs():
    """Gold pairs built from one model's texts share its signature on both sides; real pairs mix two models."""
    rng = random.Random(3)
    real = (
        [" " + words(rng, 9) for _ in range(150)],
        [words(rng, 9) for _ in range(150)],
        [str(i) for i in range(150)],
    )
    same = (
        [" " + words(rng, 9) for _ in range(40)],
        [" " + words(rng, 9) for _ in range(40)],
        [str(i) for i in range(40)],
    )
    mixed = ([" " + words(rng, 9) for _ in range(40)], [words(rng, 9) for _ in range(40)], [str(i) for i in range(40)])
    assert audit_gold(real=real, gold=same, settings=FAST)["balanced_accuracy"] > 95
    assert audit_gold(real=real, gold=mixed, settings=FAST)["at_chance"]


# ---------------------------------------------------------------- the campaign audit, on the real fixtures


def audit_command(*args: str) -> str:
    out = StringIO()
    call_command("audit_blinding", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
@pytest.mark.slow
def test_audit_blinding_on_the_demo_campaign_finds_byte_level_at_chance_and_says_what_remains():
    campaign = real_campaign(slug="demo-audit", attention_check_rate=0.2)
    served = json.loads(audit_command(campaign.slug, "--json", "--bootstrap", "300"))
    assert set(served) == {"campaign", "texts", "pairs", "attention_checks", "settings"}
    (pair,) = served["pairs"]
    assert (pair["model_a"], pair["model_b"], pair["comparisons"]) == (ALPACA, DAVINCI, 252)
    assert pair["classifier"]["byte_level"]["at_chance"]
    assert all(f["accuracy"] == 50.0 for f in pair["features"] if f["group"] == BYTE_LEVEL)
    assert [f["feature"] for f in pair["features"]] == FEATURE_NAMES
    # Content differs between the models for real, and the audit says so.
    assert not pair["classifier"]["content"]["at_chance"]
    assert pair["headline"].startswith("From surface features alone a rater could guess the model ")
    assert served["attention_checks"]["byte_level"]["at_chance"]

    stored = json.loads(audit_command(campaign.slug, "--json", "--stored", "--bootstrap", "300"))
    leading = next(f for f in stored["pairs"][0]["features"] if f["feature"] == "leading_whitespace")
    assert leading["accuracy"] == 100.0 and leading["more_is"] == DAVINCI

    text = audit_command(campaign.slug, "--bootstrap", "300")
    assert "Byte-level features alone: 50% (at chance)" in text and "leading_whitespace" in text


@pytest.mark.django_db
def test_audit_blinding_refuses_bad_input():
    for args, message in [
        (("no-such-campaign",), "No campaign"),
    ]:
        with pytest.raises(CommandError, match=message):
            audit_command(*args)
    from tests.comparisons.factories import build_campaign

    campaign = build_campaign(n_prompts=3)
    for args, message in [
        (("--folds", "1"), "--folds must be at least 2"),
        (("--bootstrap", "0"), "--bootstrap must be at least 1"),
        (("--seed", "-1"), "--seed must be between"),
    ]:
        with pytest.raises(CommandError, match=message):
            audit_command(campaign.slug, *args)
    draft = build_campaign(slug="draft-one", n_prompts=2, open_it=False)
    with pytest.raises(CommandError, match="no comparisons yet"):
        audit_command(draft.slug)


@pytest.mark.django_db
def test_the_progress_page_shows_the_audit(admin_client):
    from tests.comparisons.factories import build_campaign

    campaign = build_campaign(n_prompts=12, attention_check_rate=0.2)
    html = admin_client.get(f"/admin/comparisons/campaign/{campaign.pk}/progress/").content.decode()
    assert 'id="blinding-audit"' in html
    assert "From surface features alone a rater could guess the model" in html
    assert "Byte-level features alone: 50% (at chance)" in html
    assert 'id="audit-attention"' in html
