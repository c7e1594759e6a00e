"""Rater agreement: Krippendorff's alpha (nominal), Fleiss' kappa, and each rater against the others' majority.

A unit is one comparison (a prompt and a pair of models); its value from one rater is the verdict
(first model better, second model better, tie, both bad). The functions on count matrices take a
(units, categories) matrix of how many raters gave each value to each unit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .bootstrap import num


def krippendorff_alpha_nominal(counts: np.ndarray) -> float | None:
    """Krippendorff's alpha for nominal data from a (units, categories) count matrix.

    Units with fewer than two values are not pairable and are left out (Krippendorff 2011). Returns
    None when it is undefined (no pairable unit, or every value is the same).
    """
    counts = np.asarray(counts, dtype=float)
    per_unit = counts.sum(axis=1)
    pairable = counts[per_unit >= 2]
    if pairable.size == 0:
        return None
    m = pairable.sum(axis=1)
    n_total = m.sum()
    # Observed: disagreeing ordered pairs within units, each unit weighted 1 / (m_u - 1).
    observed = ((m**2 - (pairable**2).sum(axis=1)) / (m - 1)).sum()
    totals = pairable.sum(axis=0)
    expected = (n_total**2 - (totals**2).sum()) / (n_total - 1)
    if expected <= 0:
        return None
    return float(1.0 - observed / expected)


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa from a (units, categories) count matrix.

    None unless every unit has the same number (at least 2) of ratings, or when it is undefined.
    """
    counts = np.asarray(counts, dtype=float)
    if counts.shape[0] == 0:
        return None
    per_unit = counts.sum(axis=1)
    m = per_unit[0]
    if m < 2 or not np.all(per_unit == m):
        return None
    p_unit = ((counts**2).sum(axis=1) - m) / (m * (m - 1))
    p_bar = p_unit.mean()
    p_cat = counts.sum(axis=0) / counts.sum()
    p_expected = (p_cat**2).sum()
    if p_expected >= 1.0:
        return None
    return float((p_bar - p_expected) / (1.0 - p_expected))


def rater_majority_agreement(
    unit: np.ndarray, value: np.ndarray, rater: np.ndarray | pd.Categorical, n_categories: int
) -> pd.DataFrame:
    """For each rater, how often their verdict matches the majority of the *other* raters of the same unit.

    Only units where the others have a strict majority count (a split among the others says nothing).
    Returns columns rater, units (how many such units), agreement (share in percent, None without any), one
    row per rater who voted, in the order of their names. ``rater`` may be a categorical (the vote table's):
    its codes are counted as they are, instead of hashing a million names.
    """
    counts = unit_counts(unit, value, n_categories)
    others = counts[unit].copy()
    others[np.arange(len(value)), value] -= 1
    top = others.max(axis=1)
    strict = (others == top[:, None]).sum(axis=1) == 1
    usable = strict & (top > 0)
    agree = usable & (others[np.arange(len(value)), value] == top)
    if isinstance(rater, pd.Categorical):
        codes, names = rater.codes, np.asarray(rater.categories, dtype=object)
    else:
        codes, names = pd.factorize(np.asarray(rater, dtype=object))
    votes = np.bincount(codes, minlength=len(names))
    units = np.bincount(codes, weights=usable, minlength=len(names)).astype(np.int64)
    agreed = np.bincount(codes, weights=agree, minlength=len(names)).astype(np.int64)
    voted = sorted(np.flatnonzero(votes).tolist(), key=lambda i: str(names[i]))
    units, agreed = units[voted], agreed[voted]
    return pd.DataFrame(
        {
            "rater": names[voted],
            "votes": votes[voted],
            "units": units,
            "agreement": np.where(units > 0, 100.0 * agreed / np.maximum(units, 1), np.nan),
        }
    )


def unit_counts(unit: np.ndarray, value: np.ndarray, n_categories: int) -> np.ndarray:
    n_units = int(unit.max()) + 1 if unit.size else 0
    return np.bincount(unit * n_categories + value, minlength=n_units * n_categories).reshape(n_units, n_categories)


def agreement_summary(
    *, unit: np.ndarray, value: np.ndarray, rater: np.ndarray | pd.Categorical | None, n_categories: int = 4
) -> dict:
    """Alpha, kappa and per-rater agreement for votes given as (unit, value[, rater]) arrays."""
    counts = unit_counts(unit, value, n_categories)
    per_unit = counts.sum(axis=1)
    rated = per_unit[per_unit > 0]
    raters: list[dict] = []
    if rater is not None:
        table = rater_majority_agreement(unit, value, rater, n_categories)
        raters = [
            {
                "rater": str(row.rater),
                "votes": int(row.votes),
                "units": int(row.units),
                "agreement": num(row.agreement),
            }
            for row in table.itertuples(index=False)
        ]
    return {
        "krippendorff_alpha": krippendorff_alpha_nominal(counts),
        "fleiss_kappa": fleiss_kappa(counts[per_unit > 0]),
        "units": int(rated.size),
        "units_multi_rated": int((rated >= 2).sum()),
        "ratings_per_unit_min": int(rated.min()) if rated.size else 0,
        "ratings_per_unit_max": int(rated.max()) if rated.size else 0,
        "raters": raters,
    }
