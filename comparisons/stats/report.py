"""The whole analysis of one vote table as one JSON-ready dict, plus its plain-text rendering.

``analyze`` is what the ``analyze`` command, the results page and the benchmark call: the same table
of votes always gives the same numbers (the bootstrap is seeded).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from scipy import sparse

from .agreement import agreement_summary
from .bias import length_bias, position_bias
from .bootstrap import CI_METHODS, rate_fields, replicate_sums
from .length_control import LengthControlled, length_controlled
from .pairs import Cells, PairStats, cells_build, pair_stats
from .ranking import ELO_BASE, ranking_compute, winrate_matrix
from .table import BOTH_BAD_MODES, FIRST_WINS, SECOND_WINS, TIED, Votes, VoteTableError, sorted_codes, votes_prepare
from .weighting import Weighted, routing_probabilities, weighted_estimates

NO_CATEGORY = "(none)"
SUMMARY_COLUMNS = [
    "model",
    "baseline",
    "n",
    "prompts",
    "wins",
    "losses",
    "ties",
    "both_bad",
    "win_rate",
    "win_rate_no_ties",
    "ci_low",
    "ci_high",
    "se",
    "p_value",
    "ci_method",
    "weighted_win_rate",
    "weighted_ci_low",
    "weighted_ci_high",
]


def _pair_columns_with_second(cells: Cells) -> sparse.csr_matrix:
    """[first's score | votes | second's score] per prompt: what both the pair CIs and Bradley–Terry resample."""
    second = cells.losses + 0.5 * cells.ties
    return sparse.hstack(
        [cells.per_prompt(cells.score), cells.per_prompt(cells.votes), cells.per_prompt(second)]
    ).tocsr()


def _pair_entries(
    stats: PairStats,
    models: list[str],
    baseline: str | None,
    lc: LengthControlled | None = None,
    weighted: Weighted | None = None,
) -> list[dict]:
    entries = []
    for k in range(len(stats.pair_first)):
        first, second = models[stats.pair_first[k]], models[stats.pair_second[k]]
        flip = baseline is not None and baseline == first
        if baseline is not None and baseline not in (first, second):
            continue
        entry = {"model": second, "baseline": first} if flip else {"model": first, "baseline": second}
        entry.update(stats.entry(k, flip=flip))
        if lc is not None:
            entry.update(rate_fields("lc_", lc.win_rate[k], lc.ci_low[k], lc.ci_high[k], flip=flip))
        if weighted is not None:
            entry.update(weighted.fields(k, flip=flip))
        entries.append(entry)
    entries.sort(key=lambda e: (e["model"], e["baseline"]))
    return entries


def _check_settings(
    n_boot: int, seed: int, ci: str, confidence: float, both_bad: str, min_seconds: float | None
) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 0:
        raise VoteTableError(f"The number of bootstrap rounds must be a whole number, 0 or more, not {n_boot!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise VoteTableError(f"The bootstrap seed must be a whole number, 0 or more, not {seed!r}.")
    if min_seconds is not None and not (np.isfinite(min_seconds) and min_seconds >= 0):
        raise VoteTableError(f"min_seconds must be a finite number, 0 or more, not {min_seconds!r}.")
    if ci not in CI_METHODS:
        raise VoteTableError(f"Unknown CI method {ci!r}; use one of {', '.join(CI_METHODS)}.")
    if not (np.isfinite(confidence) and 0.0 < confidence < 1.0):
        raise VoteTableError(f"The confidence level must be between 0 and 1 (e.g. 0.95), not {confidence}.")
    if both_bad not in BOTH_BAD_MODES:
        raise VoteTableError(f"both_bad must be one of {', '.join(BOTH_BAD_MODES)}, not {both_bad!r}.")


def _categories(
    votes: Votes, *, baseline: str | None, n_boot: int, seed: int, ci: str, confidence: float, both_bad: str
) -> list[dict]:
    if "category" not in votes.frame.columns:
        return []
    codes, names = sorted_codes(votes.frame["category"].array)
    shown = [NO_CATEGORY if name == "" else name for name in names]
    labels = sorted(set(shown))
    position = {label: i for i, label in enumerate(labels)}
    codes = np.array([position[label] for label in shown], dtype=np.int64)[codes]
    # Each category's votes, in table order, as one slice of a stable sort (not one mask per category); as 16-bit
    # numbers the stable sort is a radix sort.
    order = np.argsort(codes.astype(np.int16) if len(labels) < 2**15 else codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(labels) + 1))
    out = []
    for index, category in enumerate(labels):
        rows = order[bounds[index] : bounds[index + 1]]
        prompt_codes, prompt_ids = pd.factorize(votes.prompt[rows], sort=True)
        cells = cells_build(
            first=votes.first[rows],
            second=votes.second[rows],
            outcome=votes.outcome[rows],
            prompt=prompt_codes.astype(np.int64),
            n_models=len(votes.models),
            n_prompts=len(prompt_ids),
            both_bad=both_bad,
        )
        if cells.n_pairs == 0:
            continue
        # Each category resamples its own prompts, from its own seeded stream.
        rng = np.random.default_rng([seed, 1, index])
        replicates = replicate_sums(rng, _pair_columns_with_second(cells)[:, : 2 * cells.n_pairs], n_boot)
        stats = pair_stats(cells, replicates=replicates, method=ci, confidence=confidence)
        for entry in _pair_entries(stats, votes.models, baseline):
            out.append({"category": str(category), **entry})
    return out


def _length_controlled(
    votes: Votes, cells: Cells, *, both_bad: str, n_boot: int, seed: int, confidence: float
) -> LengthControlled:
    """The length-controlled win rate of every pair in ``cells``, from the votes' response lengths."""
    frame, n_models = votes.frame, len(votes.models)
    if "length_a" not in frame.columns or "length_b" not in frame.columns:
        nothing = np.full(cells.n_pairs, np.nan)
        return LengthControlled(nothing, nothing.copy(), nothing.copy())
    a_is_first = np.asarray(votes.models, dtype=object)[votes.first] == frame["model_a"].to_numpy(dtype=object)
    len_a, len_b = frame["length_a"].to_numpy(dtype=float), frame["length_b"].to_numpy(dtype=float)
    diff = np.where(a_is_first, len_a - len_b, len_b - len_a)
    score = np.select(
        [votes.outcome == FIRST_WINS, votes.outcome == SECOND_WINS, votes.outcome == TIED],
        [1.0, 0.0, 0.5],
        0.5 if both_bad == "tie" else np.nan,
    )
    codes = cells.pair_first * n_models + cells.pair_second
    return length_controlled(
        pair_code=np.searchsorted(codes, votes.first * n_models + votes.second),
        n_pairs=cells.n_pairs,
        prompt=votes.prompt,
        n_prompts=len(votes.prompts),
        score=score,
        length_diff=diff,
        rng=np.random.default_rng([seed, 2]),
        n_boot=n_boot,
        confidence=confidence,
    )


def analyze(
    frame: pd.DataFrame,
    *,
    baseline: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: str = "bca",
    confidence: float = 0.95,
    both_bad: str = "tie",
    exclude_flagged: bool = False,
    min_seconds: float | None = None,
    exclude_identity_reports: bool = False,
    categories: bool = True,
    first_line: int | None = None,
) -> dict:
    """Analyse a vote table (see ``table`` for its columns); raises VoteTableError on bad input or settings.

    Keys: ``pairs`` (one entry per pair of models that met, or per model against ``baseline``; win
    rates and CI bounds in percent), ``ranking`` (Bradley–Terry, Elo-like scale, per connected
    component of the comparison graph), ``ranking_components`` (the models of each component: models
    in different components cannot be compared), ``win_rate_matrix``,
    ``agreement``, ``position_bias``, ``length_bias``, ``categories``, ``votes`` and ``settings``.
    When the table has ``routing_probability`` values (an adaptively routed campaign), each pair also gets
    ``weighted_win_rate``, ``weighted_ci_low`` and ``weighted_ci_high`` and the result ``weighted_ranking``:
    the estimates weighted by the inverse of each vote's routing probability (``weighting``).
    """
    _check_settings(n_boot, seed, ci, confidence, both_bad, min_seconds)
    votes = votes_prepare(
        frame,
        exclude_flagged=exclude_flagged,
        min_seconds=min_seconds,
        exclude_identity_reports=exclude_identity_reports,
        first_line=first_line,
    )
    if baseline is not None and baseline not in votes.models:
        raise VoteTableError(
            f"The baseline {baseline!r} is not one of the models in the votes ({', '.join(votes.models)})."
        )
    # The per-category breakdown needs nothing else computed here: it runs beside the rest, in its own thread
    # (numpy lets go of the interpreter in its loops, so both progress; 0.2-0.3 s of a million-vote analysis).
    with ThreadPoolExecutor(max_workers=1) as pool:
        by_category = pool.submit(
            _categories, votes, baseline=baseline, n_boot=n_boot, seed=seed, ci=ci, confidence=confidence,
            both_bad=both_bad,
        ) if categories else None  # fmt: skip
        result = _analysis(
            votes, baseline=baseline, n_boot=n_boot, seed=seed, ci=ci, confidence=confidence, both_bad=both_bad,
            exclude_flagged=exclude_flagged, min_seconds=min_seconds,
            exclude_identity_reports=exclude_identity_reports,
        )  # fmt: skip
        result["categories"] = by_category.result() if by_category is not None else []
    return result


def _analysis(
    votes: Votes,
    *,
    baseline: str | None,
    n_boot: int,
    seed: int,
    ci: str,
    confidence: float,
    both_bad: str,
    exclude_flagged: bool,
    min_seconds: float | None,
    exclude_identity_reports: bool,
) -> dict:
    """Everything `analyze` returns but the per-category breakdown, on prepared votes."""
    n_models, n_prompts = len(votes.models), len(votes.prompts)
    cells = cells_build(
        first=votes.first,
        second=votes.second,
        outcome=votes.outcome,
        prompt=votes.prompt,
        n_models=n_models,
        n_prompts=n_prompts,
        both_bad=both_bad,
    )
    n_pairs = cells.n_pairs
    # One set of replicate studies serves every pair and the ranking, so they stay mutually consistent.
    replicates = replicate_sums(np.random.default_rng(seed), _pair_columns_with_second(cells), n_boot)
    stats = pair_stats(cells, replicates=replicates[:, : 2 * n_pairs], method=ci, confidence=confidence)
    second_score = cells.totals(cells.losses + 0.5 * cells.ties)
    ranking = ranking_compute(
        models=votes.models,
        pair_first=cells.pair_first,
        pair_second=cells.pair_second,
        first_score=cells.totals(cells.score),
        second_score=second_score,
        replicate_first=replicates[:, :n_pairs],
        replicate_second=replicates[:, 2 * n_pairs :],
        confidence=confidence,
    )

    unit = np.unique((votes.first * n_models + votes.second) * n_prompts + votes.prompt, return_inverse=True)[1]
    rater = votes.frame["rater"].array if "rater" in votes.frame.columns else None
    agreement = agreement_summary(unit=unit.astype(np.int64), value=votes.outcome.astype(np.int64), rater=rater)

    lc = _length_controlled(votes, cells, both_bad=both_bad, n_boot=n_boot, seed=seed, confidence=confidence)
    probability = routing_probabilities(votes)
    weighted = None
    if probability is not None:
        weighted = weighted_estimates(
            votes,
            cells,
            probability,
            both_bad=both_bad,
            n_boot=n_boot,
            rng=np.random.default_rng([seed, 3]),
            confidence=confidence,
        )
    result = {
        "pairs": _pair_entries(stats, votes.models, baseline, lc, weighted),
        "ranking": ranking.entries(),
        "ranking_components": ranking.components(),
        "win_rate_matrix": {
            "models": votes.models,
            "values": winrate_matrix(votes.models, stats.pair_first, stats.pair_second, stats.win_rate),
        },
        "agreement": agreement,
        "position_bias": position_bias(votes, confidence=confidence),
        "length_bias": length_bias(
            votes,
            both_bad=both_bad,
            n_boot=n_boot,
            seed=seed,
            method=ci,
            confidence=confidence,
        ),
        "categories": [],
        "votes": {
            "input": votes.n_input,
            "excluded": votes.n_excluded,
            "used": votes.n,
            "prompts": n_prompts,
            "models": votes.models,
        },
        "settings": {
            "baseline": baseline,
            "bootstrap": n_boot,
            "seed": seed,
            "ci": ci,
            "confidence": confidence,
            "both_bad": both_bad,
            "exclude_flagged": exclude_flagged,
            "min_seconds": min_seconds,
            "exclude_identity_reports": exclude_identity_reports,
            "ranking_scale": (
                f"Bradley-Terry, Elo-like: {ELO_BASE:g} + 400*log10(strength), "
                "mean log-strength 0 in each group of connected models"
            ),
            "ranking_prior": ranking.prior,
            "ranking_regularized": ranking.regularized,
            "ranking_replicates_regularized": ranking.replicates_regularized,
            "ranking_connected": ranking.connected,
        },
    }
    if weighted is not None:
        # Only for routed votes, so that analyses of other campaigns (and their published snapshots) keep
        # exactly the keys they always had.
        result["weighted_ranking"] = [] if weighted.ranking is None else weighted.ranking.entries()
    return result


def format_p(p: float | None) -> str:
    if p is None:
        return "p n/a"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}"


def _pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


CI_METHOD_WORDS = {
    "bca": "BCa bootstrap",
    "percentile": "percentile bootstrap",
    "clopper_pearson": "exact Clopper–Pearson over prompts",
    "too_few_prompts": "too few prompts for an interval",
}


def interval_words(entry: dict, *, level: str, digits: int = 1, method: bool = False) -> str:
    """An entry's interval as "23.4–29.5", or why there is none; with ``method``, how it was made.

    A Clopper–Pearson interval (bootstrap degenerate or fewer than 10 prompts) always says "exact".
    """
    how = entry.get("ci_method")
    if how == "too_few_prompts":
        return "too few prompts"
    if entry["ci_low"] is None or entry["ci_high"] is None:
        return "n/a"
    bounds = f"{_pct(entry['ci_low'], digits)}–{_pct(entry['ci_high'], digits)}"
    if method and how:
        return f"{bounds} ({CI_METHOD_WORDS.get(how, how)})"
    return f"{bounds} (exact)" if how == "clopper_pearson" else bounds


def headline(entry: dict, *, confidence: float = 0.95) -> str:
    """One pair in plain words.

    E.g. "Model X wins 26.5% of comparisons against Y (95% CI 23.4–29.5%, p < 0.001; 205 wins, 16 ties, 584 losses)".
    """
    level = f"{100 * confidence:g}%"
    how = entry.get("ci_method")
    if how == "too_few_prompts":
        ci = f"{level} CI n/a: too few prompts"
    elif entry["ci_low"] is None or entry["ci_high"] is None:
        ci = f"{level} CI n/a"
    else:
        ci = f"{level} CI {_pct(entry['ci_low'])}–{_pct(entry['ci_high'])}%"
        if how == "clopper_pearson":
            ci += f" exact over {entry['prompts']} prompts"
    return (
        f"Model {entry['model']} wins {_pct(entry['win_rate'])}% of comparisons against {entry['baseline']} "
        f"({ci}, {format_p(entry['p_value'])}; {entry['wins']} wins, {entry['ties']} ties, {entry['losses']} losses)"
    )


def components_words(components: list[list[str]]) -> str | None:
    """Which models cannot be compared, in one sentence; None when every model can be."""
    if len(components) <= 1:
        return None
    groups = "; ".join(f"group {i} ({', '.join(models)})" for i, models in enumerate(components, start=1))
    return (
        f"The models form {len(components)} groups that never met, directly or through other models, so a "
        f"model cannot be compared with one of another group: {groups}. Each group is ranked on its own, "
        "with its own mean score of 1000."
    )


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _ranking_table(ranking: list[dict], components: list[list[str]], *, level: str) -> str:
    headers = ["rank", "model", "score", f"{level} CI"] + (["group"] if len(components) > 1 else [])
    return _table(
        headers,
        [
            [str(r["rank"]), r["model"], _pct(r["score"], 0), f"{_pct(r['ci_low'], 0)}–{_pct(r['ci_high'], 0)}"]
            + ([str(r["component"])] if len(components) > 1 else [])
            for r in ranking
        ],
    )


def format_text(result: dict) -> str:
    """The analysis as readable plain-text tables."""
    settings = result["settings"]
    level = f"{100 * settings['confidence']:g}%"
    out = [
        f"{result['votes']['used']} votes on {result['votes']['prompts']} prompts "
        f"({result['votes']['excluded']} excluded); {settings['bootstrap']} bootstrap rounds over prompts, "
        f"{settings['ci']} CI, seed {settings['seed']}; both_bad counted as {settings['both_bad']}"
        + ("; pairs reported as revealing who wrote them left out." if settings["exclude_identity_reports"] else "."),
        "p: sign-flip test over prompts (wins minus losses, whole prompts flipped).",
        "",
    ]
    out += [headline(e, confidence=settings["confidence"]) for e in result["pairs"]]
    out += ["", "Win rates (percent, ties count half):"]
    controlled = any(e.get("lc_win_rate") is not None for e in result["pairs"])
    routed = any(e.get("weighted_win_rate") is not None for e in result["pairs"])
    out.append(
        _table(
            ["model", "baseline", "n", "prompts", "wins", "ties", "losses", "win rate", f"{level} CI"]
            + (["length-controlled", f"{level} CI"] if controlled else [])
            + (["routing-weighted", f"{level} CI"] if routed else [])
            + ["no ties", "se", "p"],
            [
                [
                    e["model"],
                    e["baseline"],
                    str(e["n"]),
                    str(e["prompts"]),
                    str(e["wins"]),
                    str(e["ties"]),
                    str(e["losses"]),
                    _pct(e["win_rate"], 2),
                    interval_words(e, level=level, digits=2),
                ]
                + (
                    [_pct(e["lc_win_rate"], 2), f"{_pct(e['lc_ci_low'], 2)}–{_pct(e['lc_ci_high'], 2)}"]
                    if controlled
                    else []
                )
                + (
                    [
                        _pct(e["weighted_win_rate"], 2),
                        f"{_pct(e['weighted_ci_low'], 2)}–{_pct(e['weighted_ci_high'], 2)}",
                    ]
                    if routed
                    else []
                )
                + [_pct(e["win_rate_no_ties"], 2), _pct(e["se"], 2), f"{e['p_value']:.3g}"]
                for e in result["pairs"]
            ],
        )
    )
    components = result["ranking_components"]
    out += ["", f"Ranking ({settings['ranking_scale']}):"]
    warning = components_words(components)
    if warning:
        out.append(warning)
    out.append("rank: 1 + the number of models whose interval lies entirely above this one's (in the same group).")
    out.append(_ranking_table(result["ranking"], components, level=level))
    if result.get("weighted_ranking"):
        out += ["", "Ranking weighted by routing probability (adaptive routing; unbiased where the plain one drifts):"]
        out.append(_ranking_table(result["weighted_ranking"], components, level=level))
    elif "weighted_ranking" in result:
        out += ["", "No weighted ranking: some votes were served without adaptive routing (no routing probability)."]
    agreement = result["agreement"]
    alpha, kappa = agreement["krippendorff_alpha"], agreement["fleiss_kappa"]
    out += [
        "",
        f"Agreement: Krippendorff's alpha {'n/a' if alpha is None else f'{alpha:.3f}'}, "
        f"Fleiss' kappa {'n/a' if kappa is None else f'{kappa:.3f}'} "
        f"({agreement['units_multi_rated']} of {agreement['units']} comparisons rated more than once).",
    ]
    position = result["position_bias"]
    if position["available"]:
        out.append(
            f"Position bias: left response picked in {_pct(position['left_share'])}% of {position['decisive']} "
            f"decisive votes ({level} CI {_pct(position['ci_low'])}–{_pct(position['ci_high'])}%, "
            f"{format_p(position['p_value'])} against 50%)."
        )
    else:
        out.append("Position bias: not available (no left_model column).")
    length = result["length_bias"]
    if length["available"]:
        out.append(
            f"Length bias: the longer response wins {_pct(length['longer_win_rate'])}% of {length['votes']} votes "
            f"({level} CI: {interval_words(length, level=level, method=True)})."
        )
    if result["categories"]:
        out += ["", "Per category:"]
        out.append(
            _table(
                ["category", "model", "baseline", "n", "prompts", "win rate", f"{level} CI"],
                [
                    [
                        c["category"],
                        c["model"],
                        c["baseline"],
                        str(c["n"]),
                        str(c["prompts"]),
                        _pct(c["win_rate"]),
                        interval_words(c, level=level),
                    ]
                    for c in result["categories"]
                ],
            )
        )
    return "\n".join(out)


def summary_rows(result: dict) -> list[list]:
    """The pairs table (SUMMARY_COLUMNS), one row per pair entry; missing values are empty cells."""
    return [["" if entry.get(col) is None else entry[col] for col in SUMMARY_COLUMNS] for entry in result["pairs"]]
