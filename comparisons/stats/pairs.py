"""Win rates per model pair: counts, AlpacaEval win rate (ties count half), bootstrap CIs, prompt-level test.

Everything is computed per *cell*, one (pair, prompt) combination that has votes, from the point of
view of the pair's first model (alphabetical order); a pair asked the other way round is the mirror
image (100 − win rate, wins and losses swapped, CI mirrored).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from .bootstrap import num, ratio_intervals, replicate_sums
from .signflip import sign_flip_p_values
from .table import BOTH_BAD_CODE, BOTH_BAD_MODES, FIRST_WINS, SECOND_WINS, TIED


@dataclass(frozen=True)
class Cells:
    """Vote counts per (pair, prompt) cell; pairs are (pair_first[k], pair_second[k]) model indices."""

    n_prompts: int
    pair_first: np.ndarray
    pair_second: np.ndarray
    cell_pair: np.ndarray
    cell_prompt: np.ndarray
    wins: np.ndarray
    losses: np.ndarray
    ties: np.ndarray
    both_bad: np.ndarray

    @property
    def n_pairs(self) -> int:
        return len(self.pair_first)

    @property
    def votes(self) -> np.ndarray:
        return self.wins + self.losses + self.ties

    @property
    def score(self) -> np.ndarray:
        """Wins of the first model with ties as half a win."""
        return self.wins + 0.5 * self.ties

    def per_prompt(self, values: np.ndarray) -> sparse.csr_matrix:
        """A (n_prompts, n_pairs) matrix with ``values`` (one per cell) at each cell's place."""
        return sparse.csr_matrix(
            (values, (self.cell_prompt, self.cell_pair)), shape=(self.n_prompts, self.n_pairs), dtype=float
        )

    def totals(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.cell_pair, weights=values, minlength=self.n_pairs)


def cells_build(
    *,
    first: np.ndarray,
    second: np.ndarray,
    outcome: np.ndarray,
    prompt: np.ndarray,
    n_models: int,
    n_prompts: int,
    both_bad: str = "tie",
) -> Cells:
    """Count wins, losses and ties of each pair on each prompt.

    ``both_bad="tie"`` counts a both-bad vote as a tie (the default); ``"exclude"`` leaves it out of the
    win rates (it still appears in the ``both_bad`` count).
    """
    if both_bad not in BOTH_BAD_MODES:
        raise ValueError(f"both_bad must be one of {', '.join(BOTH_BAD_MODES)}, not {both_bad!r}.")
    pair_code = first * n_models + second
    key = pair_code * n_prompts + prompt
    unique_keys, cell_of_vote = np.unique(key, return_inverse=True)
    n_cells = len(unique_keys)
    cell_pair_code = unique_keys // n_prompts
    pair_codes, cell_pair = np.unique(cell_pair_code, return_inverse=True)

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(cell_of_vote[mask], minlength=n_cells).astype(float)

    is_both_bad = outcome == BOTH_BAD_CODE
    ties = count(outcome == TIED)
    if both_bad == "tie":
        ties = ties + count(is_both_bad)
    return Cells(
        n_prompts=n_prompts,
        pair_first=pair_codes // n_models,
        pair_second=pair_codes % n_models,
        cell_pair=cell_pair.astype(np.int64),
        cell_prompt=(unique_keys % n_prompts).astype(np.int64),
        wins=count(outcome == FIRST_WINS),
        losses=count(outcome == SECOND_WINS),
        ties=ties,
        both_bad=count(is_both_bad),
    )


@dataclass(frozen=True)
class PairStats:
    """Per pair k (first model's point of view): counts, win rates in percent, CI, SE, p-value.

    ``ci_method[k]`` says how interval k was made (see ``bootstrap.RatioIntervals``).
    """

    pair_first: np.ndarray
    pair_second: np.ndarray
    n: np.ndarray
    prompts: np.ndarray
    wins: np.ndarray
    losses: np.ndarray
    ties: np.ndarray
    both_bad: np.ndarray
    win_rate: np.ndarray
    win_rate_no_ties: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    se: np.ndarray
    p_value: np.ndarray
    ci_method: list[str | None]

    def entry(self, k: int, *, flip: bool) -> dict:
        """Pair k as a plain dict, from the second model's point of view when ``flip``."""

        def mirrored(x: float) -> float | None:
            return num(100.0 - x)

        wins, losses = (self.losses[k], self.wins[k]) if flip else (self.wins[k], self.losses[k])
        win_rate = mirrored(self.win_rate[k]) if flip else num(self.win_rate[k])
        no_ties = mirrored(self.win_rate_no_ties[k]) if flip else num(self.win_rate_no_ties[k])
        ci_low = mirrored(self.ci_high[k]) if flip else num(self.ci_low[k])
        ci_high = mirrored(self.ci_low[k]) if flip else num(self.ci_high[k])
        return {
            "n": int(self.n[k]),
            "prompts": int(self.prompts[k]),
            "wins": int(wins),
            "losses": int(losses),
            "ties": int(self.ties[k]),
            "both_bad": int(self.both_bad[k]),
            "win_rate": win_rate,
            "win_rate_no_ties": no_ties,
            "ci_low": ci_low,
            "ci_high": ci_high,
            "se": num(self.se[k]),
            "ci_method": self.ci_method[k],
            "p_value": float(self.p_value[k]),
        }


def pair_stats(
    cells: Cells,
    *,
    replicates: np.ndarray,
    method: str = "bca",
    confidence: float = 0.95,
) -> PairStats:
    """Win rates and intervals of every pair in ``cells``.

    ``replicates`` is a (B, 2 * n_pairs) array of bootstrap replicate sums of
    ``[score per pair, votes per pair]`` (see ``pair_columns``), B may be 0 (no CI).
    """
    n_pairs = cells.n_pairs
    wins = cells.totals(cells.wins)
    losses = cells.totals(cells.losses)
    ties = cells.totals(cells.ties)
    rates = ratio_intervals(
        cell_col=cells.cell_pair,
        cell_num=cells.score,
        cell_den=cells.votes,
        n_cols=n_pairs,
        replicates=replicates,
        method=method,
        confidence=confidence,
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        no_ties = 100.0 * wins / (wins + losses)
    return PairStats(
        pair_first=cells.pair_first,
        pair_second=cells.pair_second,
        n=cells.totals(cells.votes),
        prompts=rates.prompts,
        wins=wins,
        losses=losses,
        ties=ties,
        both_bad=cells.totals(cells.both_bad),
        win_rate=rates.estimate,
        win_rate_no_ties=no_ties,
        ci_low=rates.low,
        ci_high=rates.high,
        se=rates.se,
        p_value=sign_flip_p_values(cells.cell_pair, cells.wins - cells.losses, n_pairs),
        ci_method=rates.method,
    )


def pair_columns(cells: Cells) -> sparse.csr_matrix:
    """The per-prompt matrix whose replicate sums ``pair_stats`` needs: [score | votes], (P, 2K)."""
    return sparse.hstack([cells.per_prompt(cells.score), cells.per_prompt(cells.votes)]).tocsr()


def winrate_ci(
    wins: np.ndarray,
    losses: np.ndarray,
    ties: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    method: str = "bca",
    confidence: float = 0.95,
) -> dict:
    """Win rate (percent, ties half) of one pair from per-prompt counts, with its cluster-bootstrap CI.

    ``wins[p]``, ``losses[p]``, ``ties[p]`` are the counts on prompt p. A convenience for studies that
    are already aggregated, and the function the coverage simulation exercises.
    """
    wins, losses, ties = (np.asarray(x, dtype=float) for x in (wins, losses, ties))
    n_prompts = len(wins)
    cells = Cells(
        n_prompts=n_prompts,
        pair_first=np.array([0]),
        pair_second=np.array([1]),
        cell_pair=np.zeros(n_prompts, dtype=np.int64),
        cell_prompt=np.arange(n_prompts),
        wins=wins,
        losses=losses,
        ties=ties,
        both_bad=np.zeros(n_prompts),
    )
    replicates = replicate_sums(np.random.default_rng(seed), pair_columns(cells), n_boot)
    stats = pair_stats(cells, replicates=replicates, method=method, confidence=confidence)
    return stats.entry(0, flip=False)
