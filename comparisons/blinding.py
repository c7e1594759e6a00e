"""The blinding audit: how well surface features of the texts raters receive predict which model wrote which side.

Pure module (numpy, scikit-learn; no Django). The question a curious rater asks is "which side is model X?".
A rater may see either side on the left (campaigns counterbalance the orders), so each comparison is audited in
both orientations: a row with the feature differences A−B (A = the comparison's first model) labelled 1, and its
mirror B−A labelled 0. A rule
that cannot tell the sides apart (equal features) then scores exactly 50%, and every guess is scored as a
rater would be scored over random screen orders.

Evaluation is honest about selection and about prompts: folds are grouped by prompt (both orientations, and
every pair of one prompt, in the same fold); a one-feature rule's direction, the best one-feature rule and
the classifier are all chosen on the training folds and scored on the held-out one. Intervals are percentile
bootstrap intervals over prompts of the out-of-fold accuracy (they hold the fitted fold models fixed).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

BYTE_LEVEL = "byte-level"
CONTENT = "content"
CI_KIND = "percentile bootstrap over prompts of the cross-validated (out-of-fold) accuracy"

_M = re.MULTILINE
_ODD_SPACES = re.compile("[\u00a0\u1680\u2000-\u200a\u202f\u205f]")
_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\u2b50\u2b55\u2705\u274c]")


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _count(pattern: str, flags: int = _M) -> Callable[[str], float]:
    compiled = re.compile(pattern, flags)
    return lambda text: float(len(compiled.findall(text)))


# name -> (group, label, function of the text). Byte-level features are habits in bytes a reader does not see
# as content (the canonical served text removes them all); content features are what the answer says and how
# it is laid out, real differences between models that the audit reports rather than hides.
FEATURES: dict[str, tuple[str, str, Callable[[str], float]]] = {
    "leading_whitespace": (BYTE_LEVEL, "starts with whitespace", lambda t: float(t[:1].isspace())),
    "trailing_whitespace": (BYTE_LEVEL, "ends with whitespace", lambda t: float(t[-1:].isspace())),
    "crlf_line_endings": (BYTE_LEVEL, "CRLF line endings", _count(r"\r\n", 0)),
    "cr_line_endings": (BYTE_LEVEL, "lone CR line endings", _count(r"\r(?!\n)", 0)),
    "unicode_line_breaks": (BYTE_LEVEL, "NEL, U+2028/U+2029, VT, FF breaks", _count("[\x85\u2028\u2029\x0b\x0c]", 0)),
    "invisible_characters": (
        BYTE_LEVEL,
        "invisible format characters (BOM, zero-width…)",
        lambda t: float(sum(unicodedata.category(c) == "Cf" for c in t)) if not t.isascii() else 0.0,
    ),
    "control_characters": (
        BYTE_LEVEL,
        "control characters",
        lambda t: float(sum(unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in t)),
    ),
    "odd_spaces": (BYTE_LEVEL, "no-break and other odd spaces", _count(_ODD_SPACES.pattern, 0)),
    "trailing_spaces_on_lines": (
        BYTE_LEVEL,
        "lines with trailing spaces",
        lambda t: float(sum(line != line.rstrip() for line in _lines(t))),
    ),
    "blank_line_runs": (
        BYTE_LEVEL,
        "runs of two or more blank lines",
        lambda t: float(len(re.findall(r"\n[ \t]*\n[ \t]*\n", "\n".join(_lines(t))))),
    ),
    "not_nfc": (BYTE_LEVEL, "not in Unicode NFC", lambda t: float(not unicodedata.is_normalized("NFC", t))),
    "chars": (CONTENT, "length in characters", lambda t: float(len(t))),
    "words": (CONTENT, "length in words", lambda t: float(len(t.split()))),
    "lines": (CONTENT, "non-blank lines", lambda t: float(sum(bool(line.strip()) for line in _lines(t)))),
    "paragraphs": (CONTENT, "paragraphs", lambda t: float(len([p for p in re.split(r"\n\s*\n", t) if p.strip()]))),
    "headings": (CONTENT, "Markdown headings", _count(r"^\s{0,3}#{1,6}\s")),
    "bullet_items": (CONTENT, "bulleted list items", _count(r"^\s*[-*+•]\s")),
    "numbered_items": (CONTENT, "numbered list items", _count(r"^\s*\d+[.)]\s")),
    "table_rows": (CONTENT, "table rows", _count(r"^\s*\|.*\|\s*$")),
    "code_fences": (CONTENT, "code fences", _count(r"^\s*(```|~~~)")),
    "indented_lines": (CONTENT, "indented lines (code-like)", _count(r"^(?: {4}|\t)\s*\S")),
    "inline_code": (CONTENT, "inline code spans", _count(r"`[^`\n]+`")),
    "bold": (CONTENT, "bold text", _count(r"\*\*[^*\n]+\*\*|__[^_\n]+__")),
    "links": (CONTENT, "links and URLs", _count(r"https?://|\]\([^)]+\)")),
    "emoji": (CONTENT, "emoji", _count(_EMOJI.pattern, 0)),
    "non_ascii": (CONTENT, "non-ASCII characters", lambda t: float(sum(not c.isascii() for c in t))),
}
FEATURE_NAMES = list(FEATURES)
BYTE_LEVEL_FEATURES = [n for n, (group, _, _) in FEATURES.items() if group == BYTE_LEVEL]
CONTENT_FEATURES = [n for n, (group, _, _) in FEATURES.items() if group == CONTENT]


def text_features(text: str) -> np.ndarray:
    """The text's features in FEATURE_NAMES order."""
    return np.array([function(text) for _, _, function in FEATURES.values()], dtype=float)


def lookalike_space(texts: Sequence[str]) -> np.ndarray:
    """The texts' features as points where distance means "looks alike" (signed log, each feature scaled to unit
    spread over these texts): used to pick attention-check distractors that look like the answer they replace."""
    if not texts:
        return np.zeros((0, len(FEATURE_NAMES)))
    points = _signed_log(np.array([text_features(t) for t in texts]))
    spread = points.std(axis=0)
    return points / np.where(spread > 0, spread, 1.0)


@dataclass(frozen=True)
class AuditSettings:
    folds: int = 5
    n_boot: int = 1000
    seed: int = 0
    confidence: float = 0.95


# ---------------------------------------------------------------- scoring helpers


@dataclass(frozen=True)
class Resamples:
    """Bootstrap rounds over prompts: `draws[r, g]` is how many times prompt g is drawn in round r, `codes[i]`
    the prompt of row i. Statistics are sums per prompt weighted by the draws (memory: rounds × prompts)."""

    draws: np.ndarray
    codes: np.ndarray

    def totals(self, values: np.ndarray) -> np.ndarray:
        """Per round, the sum of `values` over the rows of the drawn prompts."""
        per_group = np.bincount(self.codes, weights=values, minlength=self.draws.shape[1])
        return self.draws @ per_group


def resample(groups: np.ndarray, settings: AuditSettings) -> Resamples:
    uniques, codes = np.unique(groups, return_inverse=True)
    rng = np.random.default_rng(settings.seed)
    picks = rng.integers(0, len(uniques), size=(settings.n_boot, len(uniques)))
    draws = np.zeros((settings.n_boot, len(uniques)))
    np.add.at(draws, (np.arange(settings.n_boot)[:, None], picks), 1.0)
    return Resamples(draws=draws, codes=codes)


def _interval(values: np.ndarray, settings: AuditSettings) -> tuple[float, float]:
    tail = (1 - settings.confidence) / 2
    low, high = np.nanquantile(values, [tail, 1 - tail])
    return float(low), float(high)


def _accuracy_entry(scores: np.ndarray, rounds: Resamples, settings: AuditSettings) -> dict[str, Any]:
    """Mean out-of-fold score (1 right, 0 wrong, 0.5 a coin flip) in percent, with its interval."""
    low, high = _interval(rounds.totals(scores) / rounds.totals(np.ones(len(scores))), settings)
    accuracy = 100.0 * float(scores.mean())
    return {
        "accuracy": round(accuracy, 1),
        "ci_low": round(100.0 * low, 1),
        "ci_high": round(100.0 * high, 1),
        "at_chance": bool(low <= 0.5 <= high),
    }


def _folds(groups: np.ndarray, settings: AuditSettings) -> list[tuple[np.ndarray, np.ndarray]]:
    n_groups = len(np.unique(groups))
    splitter = GroupKFold(n_splits=min(settings.folds, n_groups))
    return list(splitter.split(np.zeros(len(groups)), groups=groups))


def _signed_log(values: np.ndarray) -> np.ndarray:
    return np.sign(values) * np.log1p(np.abs(values))


def _classifier_scores(diff: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Out-of-fold score per comparison of a logistic regression on the feature differences (both orientations,
    no intercept: mirrored rows get mirrored predictions, and equal sides a coin flip)."""
    scores = np.full(len(diff), 0.5)
    x = _signed_log(diff)
    for train, test in folds:
        rows = np.vstack([x[train], -x[train]])
        labels = np.r_[np.ones(len(train)), np.zeros(len(train))]
        if not np.any(rows):
            continue  # nothing tells the sides apart: every guess is a coin flip
        model = make_pipeline(
            StandardScaler(with_mean=False), LogisticRegression(fit_intercept=False, C=1.0, max_iter=1000)
        )
        model.fit(rows, labels)
        p = model.predict_proba(x[test])[:, 1]
        scores[test] = np.where(p > 0.5, 1.0, np.where(p < 0.5, 0.0, 0.5))
    return scores


def _rule_scores(sign_diff: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Scores of "the side with more of the feature is model A" (direction +1), "…with less" (−1) or a coin (0)."""
    return 0.5 + 0.5 * sign_diff * direction


# ---------------------------------------------------------------- which model wrote which side


def audit_pair(
    *,
    texts_a: Sequence[str],
    texts_b: Sequence[str],
    groups: Sequence[str],
    model_a: str,
    model_b: str,
    settings: AuditSettings | None = None,
) -> dict[str, Any]:
    """Audit one pair of models: texts_a[i] (model_a's) and texts_b[i] (model_b's) were served together on
    prompt groups[i]. Returns the classifier accuracies (all, byte-level and content features), the best
    one-feature rule and each feature's rule, in percent with intervals, and a headline sentence."""
    settings = settings or AuditSettings()
    n = len(texts_a)
    group_array = np.asarray(groups, dtype=object).astype(str)
    feats_a = np.array([text_features(t) for t in texts_a]).reshape(n, len(FEATURE_NAMES))
    feats_b = np.array([text_features(t) for t in texts_b]).reshape(n, len(FEATURE_NAMES))
    diff = feats_a - feats_b
    entry: dict[str, Any] = {
        "model_a": model_a,
        "model_b": model_b,
        "comparisons": n,
        "prompts": len(np.unique(group_array)),
    }
    if len(np.unique(group_array)) < 2:
        entry.update(classifier=None, best_rule=None, features=[], headline="Too few prompts to audit.")
        return entry
    folds = _folds(group_array, settings)
    rounds = resample(group_array, settings)
    index = {name: i for i, name in enumerate(FEATURE_NAMES)}
    classifier = {}
    for key, names in (("all", FEATURE_NAMES), ("byte_level", BYTE_LEVEL_FEATURES), ("content", CONTENT_FEATURES)):
        columns = [index[name] for name in names]
        scores = _classifier_scores(diff[:, columns], folds)
        classifier[key] = _accuracy_entry(scores, rounds, settings)

    sign_diff = np.sign(diff)
    features = []
    best_scores = np.full(n, 0.5)
    chosen: list[str] = []
    per_feature_scores = np.full((n, len(FEATURE_NAMES)), 0.5)
    for train, test in folds:
        direction = np.sign(sign_diff[train].sum(axis=0))
        per_feature_scores[test] = _rule_scores(sign_diff[test], direction)
        train_accuracy = _rule_scores(sign_diff[train], direction).mean(axis=0)
        best = int(np.argmax(train_accuracy))
        chosen.append(FEATURE_NAMES[best])
        best_scores[test] = per_feature_scores[test, best]
    overall_direction = np.sign(sign_diff.sum(axis=0))
    for i, name in enumerate(FEATURE_NAMES):
        group, label, _ = FEATURES[name]
        more = {1.0: model_a, -1.0: model_b}.get(float(overall_direction[i]))
        features.append(
            {
                "feature": name,
                "label": label,
                "group": group,
                **_accuracy_entry(per_feature_scores[:, i], rounds, settings),
                "mean_a": round(float(feats_a[:, i].mean()), 3),
                "mean_b": round(float(feats_b[:, i].mean()), 3),
                "differs": float(np.mean(diff[:, i] != 0)),
                "more_is": more,
            }
        )
    best_rule = {**_accuracy_entry(best_scores, rounds, settings), "chosen": chosen}
    entry.update(
        classifier=classifier,
        best_rule=best_rule,
        features=features,
        headline=headline(entry | {"classifier": classifier, "features": features}, confidence=settings.confidence),
    )
    return entry


def _pct(value: float) -> str:
    return f"{value:.0f}%"


def headline(entry: dict[str, Any], *, confidence: float = 0.95) -> str:
    """The audit of one pair of models in plain words."""
    every, byte, content = (entry["classifier"][k] for k in ("all", "byte_level", "content"))
    sentence = (
        f"From surface features alone a rater could guess the model {_pct(every['accuracy'])} of the time "
        f"({100 * confidence:g}% CI {_pct(every['ci_low'])}–{_pct(every['ci_high'])}; 50% = blind). "
        f"Byte-level features alone: {_pct(byte['accuracy'])} "
        f"({'at chance' if byte['at_chance'] else 'ABOVE CHANCE: the blinding leaks'}). "
        f"Content features: {_pct(content['accuracy'])}"
    )
    telling = sorted(
        (f for f in entry["features"] if f["group"] == CONTENT and not f["at_chance"] and f["more_is"]),
        key=lambda f: -f["accuracy"],
    )
    if telling:
        top = telling[0]
        sentence += (
            f"; the strongest single one is {top['label']} (the side with more is {top['more_is']}: "
            f"right {_pct(top['accuracy'])} of the time)"
        )
    return sentence + "."


# ---------------------------------------------------------------- attention checks against real pairs


def _unordered_pair_features(left: Sequence[str], right: Sequence[str], names: Sequence[str]) -> np.ndarray:
    """Features of a pair that do not depend on its screen order: |f(L) − f(R)| and f(L) + f(R)."""
    index = [FEATURE_NAMES.index(name) for name in names]
    f_left = np.array([text_features(t)[index] for t in left]).reshape(len(left), len(index))
    f_right = np.array([text_features(t)[index] for t in right]).reshape(len(right), len(index))
    return _signed_log(np.hstack([np.abs(f_left - f_right), f_left + f_right]))


def audit_gold(
    *,
    real: tuple[Sequence[str], Sequence[str], Sequence[str]],
    gold: tuple[Sequence[str], Sequence[str], Sequence[str]],
    names: Sequence[str] = tuple(BYTE_LEVEL_FEATURES),
    settings: AuditSettings | None = None,
) -> dict[str, Any]:
    """Can the features `names` of a pair's two texts tell an attention check from a real pair?

    `real` and `gold` are (texts of one side, texts of the other side, prompt groups). A class-balanced
    logistic regression is cross-validated by prompt; the score is the balanced accuracy (the mean of the hit
    rates on gold and on real pairs, so 50% = cannot tell, whatever the share of gold pairs)."""
    settings = settings or AuditSettings()
    x = np.vstack([_unordered_pair_features(real[0], real[1], names), _unordered_pair_features(*gold[:2], names)])
    y = np.r_[np.zeros(len(real[0])), np.ones(len(gold[0]))]
    groups = np.r_[np.asarray(real[2], dtype=object).astype(str), np.asarray(gold[2], dtype=object).astype(str)]
    entry: dict[str, Any] = {"real_pairs": len(real[0]), "gold_pairs": len(gold[0]), "features": list(names)}
    if not len(gold[0]) or not len(real[0]) or len(np.unique(groups)) < 2:
        return entry | {"balanced_accuracy": None, "ci_low": None, "ci_high": None, "at_chance": None}
    correct = np.full(len(y), 0.5)
    for train, test in _folds(groups, settings):
        if len(np.unique(y[train])) < 2 or not np.any(np.ptp(x[train], axis=0)):
            continue  # one class only, or nothing varies: a coin flip
        model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=1000))
        model.fit(x[train], y[train])
        p = model.predict_proba(x[test])[:, 1]
        correct[test] = np.where(p == 0.5, 0.5, ((p > 0.5) == (y[test] == 1)).astype(float))

    is_gold = (y == 1).astype(float)
    point = (np.sum(correct * is_gold) / is_gold.sum() + np.sum(correct * (1 - is_gold)) / (1 - is_gold).sum()) / 2
    rounds = resample(groups, settings)
    with np.errstate(invalid="ignore", divide="ignore"):  # a round may draw no gold pair: left out (NaN)
        hit_gold = rounds.totals(correct * is_gold) / rounds.totals(is_gold)
        hit_real = rounds.totals(correct * (1 - is_gold)) / rounds.totals(1 - is_gold)
    low, high = _interval((hit_gold + hit_real) / 2, settings)
    return entry | {
        "balanced_accuracy": round(100 * point, 1),
        "ci_low": round(100 * low, 1),
        "ci_high": round(100 * high, 1),
        "at_chance": bool(low <= 0.5 <= high) or math.isclose(point, 0.5),
    }
