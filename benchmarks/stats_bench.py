"""Benchmark of the statistics (run by hand, not a test).

    .venv/bin/python benchmarks/stats_bench.py [--votes 1000000] [--models 10] [--prompts 800]
        [--bootstrap 1000] [--naive-rounds 5]
    .venv/bin/python benchmarks/stats_bench.py --shape star|pairs [--models 300] [--votes 1000000]

1. Generates a synthetic study (Bradley–Terry strengths, 10% ties, 2% both bad, random raters and
   sides, 20 categories).
2. Times the full analysis (``comparisons.stats.analyze``: every pair with BCa CIs, Bradley–Terry with
   CIs, agreement, biases; with and without the per-category breakdown), from a DataFrame and from a
   CSV file (what ``manage.py analyze`` does, minus Django's start-up).
3. Times a naive bootstrap that resamples vote rows and refits each round with pandas, on a few
   rounds, and extrapolates to the same number of rounds (labelled as extrapolated).
4. Streams the votes as CSV through ``comparisons.stats.csv_lines`` (the generator the exports use)
   and reports peak traced memory and RSS, against building the same CSV in memory at once.

With ``--shape star`` (every model but one meets only that baseline, analysed with ``--baseline``) or
``--shape pairs`` (models in separate pairs: as many components as pairs) it measures a leaderboard
of many models instead: ``manage.py analyze`` on the study's CSV in a child process (wall time and
the child's peak RSS, Django start-up and CSV reading included), then ``analyze`` in this process.

With ``--campaign SLUG`` it instead measures a campaign in the configured database (DATABASE_URL):
the streamed votes export (the results page's and ``export_results``'s code path) with its time and
peak RSS, then the campaign's full analysis (``comparisons.results.campaign_analysis``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from comparisons.stats import EXPORT_COLUMNS, analyze, csv_lines, read_votes_csv  # noqa: E402
from comparisons.stats.ranking import bt_fit  # noqa: E402


def make_votes(n_votes: int, n_models: int, n_prompts: int, seed: int = 1, shape: str = "all-pairs") -> pd.DataFrame:
    """``all-pairs``: each vote on a random pair; ``star``: model 0 against a random other; ``pairs``:
    models 2i and 2i+1 only (n_models / 2 separate pairs)."""
    rng = np.random.default_rng(seed)
    models = np.array([f"model-{i:0{len(str(n_models - 1))}d}" for i in range(n_models)], dtype=object)
    strength = np.linspace(-1.0, 1.0, n_models)
    if shape == "star":
        a, b = rng.integers(1, n_models, n_votes), np.zeros(n_votes, dtype=np.int64)
    elif shape == "pairs":
        a = 2 * rng.integers(0, n_models // 2, n_votes)
        b = a + 1
    else:
        a = rng.integers(0, n_models, n_votes)
        b = (a + rng.integers(1, n_models, n_votes)) % n_models
    swap = rng.random(n_votes) < 0.5
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    p_a = 1.0 / (1.0 + np.exp(strength[b] - strength[a]))
    u = rng.random(n_votes)
    winner = np.where(u < 0.1, "tie", np.where(u < 0.1 + 0.9 * p_a, models[a], models[b])).astype(object)
    winner[rng.random(n_votes) < 0.02] = "both_bad"
    prompt = rng.integers(0, n_prompts, n_votes)
    return pd.DataFrame(
        {
            "campaign": "bench",
            "prompt_id": np.char.add("task_", prompt.astype(str)).astype(object),
            "category": np.char.add("app_", (prompt % 20).astype(str)).astype(object),
            "model_a": models[a],
            "model_b": models[b],
            "left_model": np.where(rng.random(n_votes) < 0.5, models[a], models[b]),
            "winner": winner,
            "rater": np.char.add("rater_", rng.integers(0, 2000, n_votes).astype(str)).astype(object),
            "attention_failed": np.where(rng.random(n_votes) < 0.01, "true", "false").astype(object),
            "submitted_at": "2026-01-01T00:00:00+00:00",
            "seconds": np.round(rng.gamma(4.0, 8.0, n_votes), 1),
            "length_a": rng.integers(20, 2000, n_votes),
            "length_b": rng.integers(20, 2000, n_votes),
            "rationale": "",
        },
        columns=list(EXPORT_COLUMNS),
    )


def naive_round(frame: pd.DataFrame, rng: np.random.Generator, models: list[str]) -> np.ndarray:
    """One round of the naive bootstrap: resample vote rows, recount every pair with pandas, refit BT."""
    sample = frame.iloc[rng.integers(0, len(frame), len(frame))]
    counts = sample.groupby(["model_a", "model_b", "winner"], sort=False).size().reset_index(name="n")
    index = {m: i for i, m in enumerate(models)}
    wins = np.zeros((len(models), len(models)))
    rates = {}
    for (ma, mb), group in counts.groupby(["model_a", "model_b"]):
        i, j = index[ma], index[mb]
        won = group.loc[group["winner"] == ma, "n"].sum()
        lost = group.loc[group["winner"] == mb, "n"].sum()
        tied = group["n"].sum() - won - lost
        wins[i, j] += won + tied / 2
        wins[j, i] += lost + tied / 2
        rates[(ma, mb)] = (won + tied / 2) / group["n"].sum()
    return bt_fit(wins)


def rss_mib() -> float:
    """Current resident set size (Linux), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def database_campaign(slug: str, n_boot: int) -> None:
    import resource

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "evalsite.settings")
    django.setup()
    from django.db import connection

    from comparisons.models import Campaign, Vote
    from comparisons.results import campaign_analysis, export_stream

    campaign = Campaign.objects.get(slug=slug)
    n_votes = Vote.objects.filter(comparison__campaign=campaign).count()
    print(f"command: {' '.join([os.path.relpath(sys.executable), *sys.argv])}")
    print(f"campaign {slug!r}: {n_votes:,} votes in {connection.vendor}")
    rss_start = rss_mib()
    peak_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    size = 0
    with open(os.devnull, "w", encoding="utf-8") as sink:
        for piece in export_stream(campaign=campaign, kind="votes"):
            sink.write(piece)
            size += len(piece)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"streamed votes export: {size / 2**20:.0f} MiB in {seconds:.1f} s ({n_votes / seconds:,.0f} votes/s); "
        f"RSS {rss_start:.0f} MiB before, process peak {peak_start:.0f} -> {peak:.0f} MiB"
    )
    started = time.perf_counter()
    result = campaign_analysis(campaign=campaign, n_boot=n_boot, use_cache=False)
    pair = result["pairs"][0]
    print(
        f"campaign_analysis (load {n_votes:,} votes from the database + analyze, {n_boot} rounds): "
        f"{time.perf_counter() - started:.1f} s; {pair['model']} vs {pair['baseline']} "
        f"{pair['win_rate']:.2f}% [{pair['ci_low']:.2f}, {pair['ci_high']:.2f}]"
    )
    # The results page's path: the first view computes and caches, later views check the votes and flags.
    seed = int(time.time())  # a key no earlier run cached
    started = time.perf_counter()
    campaign_analysis(campaign=campaign, n_boot=n_boot, seed=seed)
    filled = time.perf_counter() - started
    started = time.perf_counter()
    campaign_analysis(campaign=campaign, n_boot=n_boot, seed=seed)
    again = time.perf_counter() - started
    print(f"results page analysis: first view {filled:.1f} s (computes, caches), next views {again:.2f} s")


# `manage.py` run so that it writes its own peak memory (VmHWM) to stderr as it ends. Not RUSAGE_CHILDREN's
# ru_maxrss: that survives exec, so a child spawned from this process (which holds the generated votes) would
# report this process's peak whenever it is the larger.
_WITH_PEAK = (
    "import runpy, sys\n"
    "sys.argv = ['manage.py', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_path('manage.py', run_name='__main__')\n"
    "finally:\n"
    "    sys.stderr.write(next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')))\n"
)


def scale_case(args: argparse.Namespace) -> None:
    """A leaderboard of many models: the whole ``manage.py analyze`` in a child process, then in-process."""
    import resource
    import subprocess

    print(f"command: {' '.join([os.path.relpath(sys.executable), *sys.argv])}")
    print(f"machine: {os.cpu_count()} CPUs; numpy {np.__version__}, pandas {pd.__version__}")
    frame = make_votes(args.votes, args.models, args.prompts, shape=args.shape)
    baseline = "model-" + "0" * len(str(args.models - 1)) if args.shape == "star" else None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "votes.csv"
        frame.to_csv(path, index=False)
        command = [sys.executable, "-c", _WITH_PEAK, "analyze", str(path), "--json", "--bootstrap", str(args.bootstrap)]
        if baseline is not None:
            command += ["--baseline", baseline]
        root = Path(__file__).resolve().parent.parent
        env = {**os.environ, "BLINDEVAL_VAR_DIR": str(Path(tmp) / "var")}
        started = time.perf_counter()
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - started
        child_peak = int(done.stderr.rsplit("VmHWM:", 1)[1].split()[0]) / 1024
    result = json.loads(done.stdout)
    print(
        f"{args.shape}: {args.votes:,} votes, {args.models} models, {len(result['pairs'])} pairs, "
        f"{len(result['ranking_components'])} separate group(s), {args.prompts} prompts, {args.bootstrap} rounds"
    )
    print(
        f"manage.py analyze --json{' --baseline ' + baseline if baseline else ''} (start-up, CSV, analysis with "
        f"categories): {wall:.1f} s, peak RSS {child_peak:.0f} MiB"
    )
    rss_before = rss_mib()
    started = time.perf_counter()
    analyze(frame, baseline=baseline, n_boot=args.bootstrap, seed=0)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"analyze in process: {seconds:.1f} s (RSS {rss_before:.0f} MiB before, process peak {peak:.0f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--prompts", type=int, default=800)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--naive-rounds", type=int, default=5)
    parser.add_argument("--campaign", help="measure this campaign's export and analysis in the database instead")
    parser.add_argument(
        "--shape",
        choices=("all-pairs", "star", "pairs"),
        default="all-pairs",
        help="who meets whom (star and pairs: the many-models leaderboard case, 300 models unless --models)",
    )
    args = parser.parse_args()
    if args.shape != "all-pairs":
        if "--models" not in " ".join(sys.argv):
            args.models = 300
        scale_case(args)
        return
    if args.campaign:
        database_campaign(args.campaign, args.bootstrap)
        return

    print(f"command: {' '.join([os.path.relpath(sys.executable), *sys.argv])}")
    print(f"machine: {os.cpu_count()} CPUs; numpy {np.__version__}, pandas {pd.__version__}")
    started = time.perf_counter()
    frame = make_votes(args.votes, args.models, args.prompts)
    print(
        f"generated {len(frame):,} votes, {args.models} models, {args.prompts} prompts "
        f"in {time.perf_counter() - started:.1f} s"
    )

    timings = {}
    for label, categories in (("all pairs + Bradley-Terry + agreement + biases", False), ("... + per category", True)):
        started = time.perf_counter()
        result = analyze(frame, n_boot=args.bootstrap, seed=0, categories=categories)
        timings[categories] = time.perf_counter() - started
        print(f"analyze ({label}), {args.bootstrap} bootstrap rounds: {timings[categories]:.2f} s")
    top = result["ranking"][0]
    print(
        f"  {len(result['pairs'])} pairs; top model {top['model']} score {top['score']:.0f} "
        f"[{top['ci_low']:.0f}, {top['ci_high']:.0f}]; {len(result['categories'])} category rows"
    )

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "votes.csv"
        frame.to_csv(path, index=False)
        size = path.stat().st_size
        started = time.perf_counter()
        loaded = read_votes_csv(path)
        read_seconds = time.perf_counter() - started
        analyze(loaded, n_boot=args.bootstrap, seed=0, first_line=2)
        total = time.perf_counter() - started
        print(
            f"from CSV ({size / 2**20:.0f} MiB), as manage.py analyze does (with categories): "
            f"read {read_seconds:.2f} s, read + analyze {total:.2f} s"
        )
        del loaded

    models = sorted(set(frame["model_a"]) | set(frame["model_b"]))
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for _ in range(args.naive_rounds):
        naive_round(frame, rng, models)
    per_round = (time.perf_counter() - started) / args.naive_rounds
    naive_total = per_round * args.bootstrap
    print(
        f"naive bootstrap (resample vote rows, recount with pandas, refit BT): {per_round:.2f} s per round, "
        f"measured on {args.naive_rounds} rounds; {args.bootstrap} rounds EXTRAPOLATED: {naive_total:.0f} s"
    )
    print(
        f"speed ratio, naive (extrapolated) / vectorized full analysis: {naive_total / timings[False]:.0f}x "
        "(and the naive one is also wrong: it treats votes on one prompt as independent)"
    )

    # Streaming export: rows come from a generator of plain tuples (as a database cursor gives them).
    columns = list(EXPORT_COLUMNS)
    values = frame[columns].to_numpy(dtype=object)
    del frame, result
    gc.collect()

    def rows():
        for start in range(0, len(values), 2000):
            yield from values[start : start + 2000].tolist()

    tracemalloc.start()
    rss_before = rss_mib()
    rss_max = rss_before
    started = time.perf_counter()
    written = 0
    with open(os.devnull, "w", encoding="utf-8") as sink:
        for piece_number, piece in enumerate(csv_lines(columns, rows())):
            sink.write(piece)
            written += len(piece)
            if piece_number % 100 == 0:
                rss_max = max(rss_max, rss_mib())
    stream_seconds = time.perf_counter() - started
    _, stream_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"streamed CSV of {len(values):,} votes ({written / 2**20:.0f} MiB) in {stream_seconds:.1f} s: "
        f"peak traced memory {stream_peak / 2**20:.2f} MiB; RSS {rss_before:.0f} MiB before, at most "
        f"{rss_max:.0f} MiB while streaming"
    )
    tracemalloc.start()
    text = "".join(csv_lines(columns, rows()))
    _, whole_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"for comparison, the same CSV built in memory at once: peak traced memory {whole_peak / 2**20:.0f} MiB")
    del text


if __name__ == "__main__":
    main()
