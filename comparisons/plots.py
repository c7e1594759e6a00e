"""Figures of the results page as inline SVG, drawn server-side with matplotlib (Agg, no display needed).

No Django here: these take the dicts ``comparisons.stats.analyze`` returns.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

_SVG_SETTINGS = {"svg.fonttype": "none", "font.size": 10, "font.family": "sans-serif"}


def _style_axes(ax: Any) -> None:
    """The look both figures share: light vertical grid behind the data, no top or right frame."""
    ax.grid(axis="x", color="#eeeeee")
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _to_svg(fig, salt: str) -> str:
    buffer = io.StringIO()
    with plt.rc_context({**_SVG_SETTINGS, "svg.hashsalt": salt}):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    # Inline in HTML: drop the XML prologue and DOCTYPE, keep the <svg> element.
    return text[text.index("<svg") :]


def forest_plot_svg(pairs: list[dict], *, confidence: float = 0.95) -> str:
    """Win rate of each pair with its CI as a horizontal interval, against the 50% line."""
    with plt.rc_context(_SVG_SETTINGS):
        height = 0.9 + 0.45 * max(len(pairs), 1)
        fig, ax = plt.subplots(figsize=(7.5, height))
        labels = [f"{p['model']} vs {p['baseline']}" for p in pairs]
        ys = list(range(len(pairs)))[::-1]
        for y, pair in zip(ys, pairs, strict=True):
            rate = pair["win_rate"]
            if pair["ci_low"] is not None and pair["ci_high"] is not None:
                # An exact interval (too few prompts for the bootstrap) is drawn dashed.
                style = "dashed" if pair.get("ci_method") == "clopper_pearson" else "solid"
                ax.hlines(y, pair["ci_low"], pair["ci_high"], color="#1f4e79", linewidth=2.5, linestyles=style)
            ax.plot([rate], [y], marker="s", color="#1f4e79", markersize=7)
            ax.annotate(f"{rate:.1f}%", (rate, y), xytext=(0, 7), textcoords="offset points", ha="center", fontsize=8)
        ax.axvline(50, color="#999999", linestyle="--", linewidth=1)
        ax.set_yticks(ys, labels)
        ax.set_xlim(0, 100)
        ax.set_ylim(-0.7, len(pairs) - 0.3)
        exact = any(p.get("ci_method") == "clopper_pearson" for p in pairs)
        ax.set_xlabel(
            f"win rate, ties count half (%), with {100 * confidence:g}% bootstrap CI"
            + (" (dashed: exact, too few prompts)" if exact else "")
        )
        _style_axes(ax)
        return _to_svg(fig, "forest")


def ranking_plot_svg(ranking: list[dict], *, confidence: float = 0.95) -> str:
    """Bradley–Terry scores (Elo-like) with their CIs, best model on top."""
    with plt.rc_context(_SVG_SETTINGS):
        fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.45 * max(len(ranking), 1)))
        ys = list(range(len(ranking)))[::-1]
        for y, entry in zip(ys, ranking, strict=True):
            if entry["ci_low"] is not None and entry["ci_high"] is not None:
                ax.hlines(y, entry["ci_low"], entry["ci_high"], color="#7a3e00", linewidth=2.5)
            ax.plot([entry["score"]], [y], marker="o", color="#7a3e00", markersize=7)
        ax.axvline(1000, color="#999999", linestyle="--", linewidth=1)
        # With very few votes a bound can run off to the fit's limit; keep the scores readable.
        scores = [e["score"] for e in ranking if e["score"] is not None]
        if scores:
            lows = [e["ci_low"] if e["ci_low"] is not None else e["score"] for e in ranking]
            highs = [e["ci_high"] if e["ci_high"] is not None else e["score"] for e in ranking]
            low = max(min([*lows, 1000.0]), min(scores) - 400)
            high = min(max([*highs, 1000.0]), max(scores) + 400)
            pad = max(0.1 * (high - low), 20.0)
            ax.set_xlim(low - pad, high + pad)
        groups = {e.get("component", 1) for e in ranking}
        labels = [e["model"] + (f" (group {e['component']})" if len(groups) > 1 else "") for e in ranking]
        ax.set_yticks(ys, labels)
        # Models of different groups cannot be compared: a line between groups.
        for y, above, below in zip(ys[1:], ranking, ranking[1:], strict=False):
            if above.get("component") != below.get("component"):
                ax.axhline(y + 0.5, color="#b36b00", linewidth=1)
        ax.set_ylim(-0.7, len(ranking) - 0.3)
        mean = "mean 1000 in each group" if len(groups) > 1 else "mean 1000"
        ax.set_xlabel(f"Bradley–Terry score (Elo-like, {mean}), with {100 * confidence:g}% bootstrap CI")
        _style_axes(ax)
        return _to_svg(fig, "ranking")
