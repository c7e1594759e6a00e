"""Simulation of adaptive pair routing against uniform routing (run by hand, not a test).

    .venv/bin/python benchmarks/routing_sim.py [--seeds 400] [--models 6] [--gap 60] [--batch 10]
        [--explore 0.1] [--ties 0.1] [--max-votes 40000] [--json]

Six simulated models with Bradley–Terry strengths ``--gap`` Elo-like points apart (``--gaps`` gives them one by
one), votes with ``--ties`` ties. Each simulated campaign collects votes in batches of ``--batch`` (the routing
distribution is recomputed between batches, as a live campaign recomputes it every few votes) until the
fitted order is the true order and the 95% intervals of every two neighbours in it are apart (the stopping
point a study designer waits for). Uniform routing spreads votes evenly over all 15 pairs (the campaign's
default: fewest votes first); adaptive routing uses ``comparisons.stats.routing``. Every seed runs both.
Prints the votes needed (median, mean, quartiles) and the saving, for two stopping points: every neighbour
pair's interval (of the difference of their scores, the question "is a above b?") leaves 0 out, and the
stricter one, the models' own intervals are apart.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import expit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from comparisons.stats import routing  # noqa: E402

ELO = 400.0 / np.log(10.0)


def simulate(
    *,
    strengths: np.ndarray,
    seeds: int,
    mode: str,
    batch: int,
    explore: float,
    ties: float,
    max_votes: int,
    seed: int,
) -> np.ndarray:
    """Votes each of ``seeds`` campaigns needed (``max_votes`` + 1 when it never got there), (2, seeds): until
    every neighbour pair's interval (of the difference) leaves 0 out, and until the models' own intervals
    are apart, both with the fitted order the true one."""
    rng = np.random.default_rng(seed)
    n_models = len(strengths)
    first, second = routing.all_pairs(n_models)
    n_pairs = len(first)
    p_true = expit(strengths[first] - strengths[second])
    true_order = np.argsort(-strengths)
    score = np.zeros((seeds, n_pairs))
    games = np.zeros((seeds, n_pairs))
    needed = np.full((2, seeds), max_votes + 1)
    active = np.ones((2, seeds), dtype=bool)
    theta = np.zeros((seeds, n_models))
    fit = routing.bt_fit_pairs(n_models=n_models, pair_first=first, pair_second=second, first_score=score, games=games)
    round_robin = np.empty((seeds, 0), dtype=np.int64)
    votes = 0
    while votes < max_votes and active.any():
        if mode == "uniform":
            while round_robin.shape[1] < batch:  # every pair once per round, in a fresh random order
                rounds = rng.random((seeds, n_pairs)).argsort(axis=1)
                round_robin = np.concatenate([round_robin, rounds], axis=1)
            picks, round_robin = round_robin[:, :batch], round_robin[:, batch:]
        else:
            probs = routing.probabilities(fit, pair_first=first, pair_second=second, explore=explore)
            cumulative = np.cumsum(probs, axis=1)
            draws = rng.random((seeds, batch)) * cumulative[:, -1:]
            picks = np.minimum((cumulative[:, None, :] <= draws[..., None]).sum(axis=2), n_pairs - 1)
        u = rng.random((seeds, batch))
        outcome = np.where(u < ties, 0.5, (u < ties + (1 - ties) * p_true[picks]).astype(float))
        rows = np.repeat(np.arange(seeds), batch)
        running = active.any(axis=0)
        np.add.at(score, (rows, picks.ravel()), (outcome * running[:, None]).ravel())
        np.add.at(games, (rows, picks.ravel()), np.repeat(running.astype(float), batch))
        votes += batch
        fit = routing.bt_fit_pairs(
            n_models=n_models, pair_first=first, pair_second=second, first_score=score, games=games, theta0=theta
        )
        theta = fit.theta
        right = (np.argsort(-fit.theta, axis=1) == true_order).all(axis=1)
        done = active & right & np.stack([routing.separated(fit), routing.models_apart(fit)])
        needed[done] = votes
        active &= ~done
    return needed


def summary(needed: np.ndarray, max_votes: int) -> dict:
    return {
        "median": float(np.median(needed)),
        "mean": float(np.mean(needed)),
        "q25": float(np.percentile(needed, 25)),
        "q75": float(np.percentile(needed, 75)),
        "not_reached": int((needed > max_votes).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=400)
    parser.add_argument("--models", type=int, default=6)
    parser.add_argument("--gap", type=float, default=60.0, help="Elo-like points between neighbours")
    parser.add_argument("--gaps", type=str, default="", help="comma-separated gaps between neighbours (Elo)")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--explore", type=float, default=routing.DEFAULT_EXPLORE)
    parser.add_argument("--ties", type=float, default=0.1)
    parser.add_argument("--max-votes", type=int, default=40000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    gaps = [float(g) for g in args.gaps.split(",")] if args.gaps else [args.gap] * (args.models - 1)
    elo = np.concatenate([[0.0], np.cumsum(gaps)])
    strengths = (elo - elo.mean()) / ELO
    criteria = ("pair_intervals", "model_intervals")
    results: dict = {criterion: {} for criterion in criteria}
    for mode in ("uniform", "adaptive"):
        start = time.perf_counter()
        needed = simulate(
            strengths=strengths, seeds=args.seeds, mode=mode, batch=args.batch, explore=args.explore,
            ties=args.ties, max_votes=args.max_votes, seed=args.seed,
        )  # fmt: skip
        seconds = round(time.perf_counter() - start, 1)
        for criterion, row in zip(criteria, needed, strict=True):
            results[criterion][mode] = {**summary(row, args.max_votes), "seconds": seconds}
    for criterion in criteria:
        uniform, adaptive = results[criterion]["uniform"], results[criterion]["adaptive"]
        results[criterion]["saving_median"] = round(1.0 - adaptive["median"] / uniform["median"], 3)
        results[criterion]["saving_mean"] = round(1.0 - adaptive["mean"] / uniform["mean"], 3)
    report = {
        "models": len(elo),
        "elo": [round(float(x), 1) for x in elo],
        "seeds": args.seeds,
        "batch": args.batch,
        "explore": args.explore,
        "ties": args.ties,
        **results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['models']} models, Elo {report['elo']}, {args.seeds} seeds, batches of {args.batch}, "
          f"explore {args.explore}, ties {args.ties}")  # fmt: skip
    titles = {
        "pair_intervals": "every neighbour pair's interval (of the difference) leaves 0 out",
        "model_intervals": "the models' own intervals apart for every two neighbours",
    }
    for criterion in criteria:
        print(f"Votes until the true order is recovered and {titles[criterion]}:")
        for mode in ("uniform", "adaptive"):
            r = results[criterion][mode]
            print(f"  {mode:>8}: median {r['median']:.0f} (mean {r['mean']:.0f}, quartiles {r['q25']:.0f}-"
                  f"{r['q75']:.0f}, not reached {r['not_reached']})")  # fmt: skip
        saving, saving_mean = results[criterion]["saving_median"], results[criterion]["saving_mean"]
        print(f"  adaptive needs {100 * saving:.0f}% fewer votes (median), {100 * saving_mean:.0f}% fewer (mean)")
    print(f"[{results['pair_intervals']['uniform']['seconds']} s uniform, "
          f"{results['pair_intervals']['adaptive']['seconds']} s adaptive]")  # fmt: skip


if __name__ == "__main__":
    main()
