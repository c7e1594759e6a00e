"""Rates of content reports (answers raters flagged as harmful, false or offensive) with Wilson intervals.

Pure numpy/scipy. A model's rate is the share of the votes that showed one of its answers in which the rater
flagged that answer. The Wilson score interval (Wilson 1927) keeps its coverage at the rates near 0 that
content reports usually have, where the normal approximation collapses to a point; it treats votes as
independent, so several raters flagging the same answer make it somewhat narrow.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm


def wilson_interval(flagged: int, shown: int, *, confidence: float = 0.95) -> tuple[float | None, float | None]:
    """The Wilson score interval of ``flagged`` of ``shown`` in percent; (None, None) when ``shown`` is 0."""
    if shown < 0 or flagged < 0 or flagged > shown:
        raise ValueError(f"Need 0 <= flagged <= shown, got {flagged} of {shown}.")
    if shown == 0:
        return None, None
    z = float(norm.ppf(0.5 + confidence / 2.0))
    p = flagged / shown
    denominator = 1.0 + z * z / shown
    centre = (p + z * z / (2 * shown)) / denominator
    half = z * np.sqrt(p * (1 - p) / shown + z * z / (4 * shown * shown)) / denominator
    # At 0 (or all) flagged the bound is exactly 0 (100%); the formula leaves rounding dust there.
    low = 0.0 if flagged == 0 else 100.0 * max(0.0, float(centre - half))
    high = 100.0 if flagged == shown else 100.0 * min(1.0, float(centre + half))
    return low, high


def flag_rate(flagged: int, shown: int, *, confidence: float = 0.95) -> dict[str, float | int | None]:
    """{flagged, shown, rate, ci_low, ci_high}, rates in percent (None when nothing was shown)."""
    low, high = wilson_interval(flagged, shown, confidence=confidence)
    return {
        "flagged": flagged,
        "shown": shown,
        "rate": 100.0 * flagged / shown if shown else None,
        "ci_low": low,
        "ci_high": high,
    }
