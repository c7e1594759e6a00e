"""Load scenario: N simulated raters against the production stack, then a reconciliation of every vote.

Run by hand (not a test): `.venv/bin/python benchmarks/load/run_load.py [--raters 50] [--k 5]`.

It starts everything itself and only talks to 127.0.0.1: a fresh PostgreSQL database
(`<--db-name>`, dropped at the end unless --keep), Redis (broker + cache) on its own db
number, gunicorn with several workers on a free loopback port, production settings
(DEBUG=0). It imports the Self-Instruct set and two real output files, opens a campaign with
`create_campaign`, reads the invite link from `invite`, and then:

1. bare view: N threads hammer `/healthz` (one indexed read) for --bare-seconds;
2. paced raters: N threads arrive over --ramp-seconds, each joins by the invite link (GET + POST
   with the CSRF token), asks for its first pair (GET /api/rate/next), then loops read
   (--read-seconds) → vote, one request per vote: the vote's answer carries the next pair
   (keep-alive connections, CSRF header) until no pair is left or the time/vote bounds are hit;
3. saturation: N raters of a second campaign (k = --saturation-k, so it never runs dry) join, then
   all loop vote (with its next pair) with no reading time for --saturation-seconds; only the loop
   is timed;
4. the bare view again (the machine is shared: the ratio uses the mean of both bare phases);
5. with --large: a campaign of the 805 AlpacaEval prompts × 9 models, all pairs (28,980
   comparisons; the nine models' answers are the two real AlpacaEval outputs, each with a line of
   its own so no two models' answers are equal): N paced raters vote on it as in 2, then N paced raters
   loop GET /api/rate/next → read → skip, so that every `next` ranks the campaign's pairs anew.

It prints votes/s, p50/p95/p99 latency of next and vote (which includes the next pair), errors, the
loop's throughput as a ratio of the bare view's, and reconciles: votes acknowledged (201) = votes in
the database = rows of `export_votes`; every comparison at or below k; no rater twice on a
comparison. The exit status is non-zero when the reconciliation fails. Rate limits are switched off
for the run (all raters share 127.0.0.1); see README "Load and security".
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import psycopg

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
EVALSET_FILE = "fixtures/self_instruct/user_oriented_instructions.jsonl"
OUTPUTS = [
    ("alpaca-7b", ["fixtures/alpaca_eval/alpaca-7b.json"]),
    (
        "text-davinci-003",
        ["fixtures/self_instruct/predictions/text-davinci-003.jsonl", "fixtures/alpaca_eval/text_davinci_003.json"],
    ),
]
# One campaign for the paced raters (with a reading time), one for the saturation run (no pause).
SLUGS = ("load-paced", "load-saturated")
LARGE_SLUG = "load-large"
LARGE_MODELS = 9
LARGE_SOURCES = ["fixtures/alpaca_eval/alpaca-7b.json", "fixtures/alpaca_eval/text_davinci_003.json"]


# ---------------------------------------------------------------- the stack


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pg_admin(sql: str, admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql)


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


@dataclass
class Stack:
    env: dict[str, str]
    base: str
    proc: subprocess.Popen | None = None
    invites: dict[str, str] = field(default_factory=dict)


def write_large_inputs(var_dir: Path) -> tuple[Path, list[tuple[str, Path]]]:
    """The 805 AlpacaEval prompts as a Self-Instruct eval set, and nine models' answers to them as
    prediction files: model i answers with the real output of source i % 2, followed by a line of its own
    ("(Draft A.)", "(Draft B.)", …) so no two models' answers are equal and none names its model."""
    sources = [json.loads((ROOT / path).read_text(encoding="utf-8")) for path in LARGE_SOURCES]
    prompts = [entry["instruction"] for entry in sources[0]]
    evalset = var_dir / "alpaca-805.jsonl"
    with evalset.open("w", encoding="utf-8") as out:
        for i, instruction in enumerate(prompts):
            task = {"id": f"alpaca_{i}", "motivation_app": "alpaca_eval", "instruction": instruction,
                    "instances": [{"input": "", "output": ""}]}  # fmt: skip
            out.write(json.dumps(task) + "\n")
    models = []
    for m in range(LARGE_MODELS):
        name, path = f"model-{m + 1}", var_dir / f"model-{m + 1}.jsonl"
        with path.open("w", encoding="utf-8") as out:
            for instruction, entry in zip(prompts, sources[m % 2], strict=True):
                line = {"prompt": instruction, "instruction": instruction, "input": "",
                        "response": f"{entry['output']}\n\n(Draft {'ABCDEFGHI'[m]}.)", "target": ""}  # fmt: skip
                out.write(json.dumps(line) + "\n")
        models.append((name, path))
    return evalset, models


def start_stack(args: argparse.Namespace, var_dir: Path) -> Stack:
    db_url = f"postgres://{args.pg}/{args.db_name}"
    admin_url = f"postgresql://{args.pg}/postgres"
    pg_admin(f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)', admin_url)
    pg_admin(f'CREATE DATABASE "{args.db_name}"', admin_url)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE", "CELERY", "CACHE"))}
    env.update(
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1",
        SITE_URL=f"http://127.0.0.1:{port}",
        SECURE_SSL_REDIRECT="0",  # plain HTTP on loopback: no TLS proxy in front
        DATABASE_URL=db_url,
        DATABASE_CONN_MAX_AGE=str(args.conn_max_age),
        CELERY_BROKER_URL=args.redis_url,
        CACHE_URL=args.redis_url,
        BLINDEVAL_VAR_DIR=str(var_dir),
        RATE_LIMIT_JOIN="0/1",  # every simulated rater comes from 127.0.0.1
        RATE_LIMIT_VOTE="0/1",
        LOG_LEVEL="WARNING",
    )
    print(f"[setup] database {args.db_name}, redis {args.redis_url}, var dir {var_dir}", flush=True)
    manage(env, "migrate", "--no-input")
    manage(env, "collectstatic", "--no-input")
    manage(env, "import_evalset", EVALSET_FILE, "--name", "self-instruct")
    for model, candidates in OUTPUTS:
        path = next((p for p in candidates if (ROOT / p).exists()), None)
        if path is None:
            raise SystemExit(f"None of {candidates} exists: the fixtures are missing.")
        manage(env, "import_outputs", path, "--model", model, "--evalset", "self-instruct")
    invites = {}
    for slug, k in zip(SLUGS, (args.k, args.saturation_k), strict=True):
        print(
            manage(
                env,
                "create_campaign",
                slug,
                "--evalset",
                "self-instruct",
                "--models",
                "alpaca-7b",
                "text-davinci-003",
                "--votes-per-pair",
                str(k),
            ).strip(),
            flush=True,
        )
        invites[slug] = manage(env, "invite", slug).strip().splitlines()[-1]
    if args.large:
        started = time.perf_counter()
        evalset, models = write_large_inputs(var_dir)
        manage(env, "import_evalset", str(evalset), "--name", "alpaca-805")
        for name, path in models:
            manage(env, "import_outputs", str(path), "--model", name, "--evalset", "alpaca-805")
        names = [name for name, _ in models]
        print(
            manage(
                env, "create_campaign", LARGE_SLUG, "--evalset", "alpaca-805", "--models", *names,
                "--votes-per-pair", str(args.k), "--keep-identity-leaks",
            ).strip().splitlines()[-1],
            f"({time.perf_counter() - started:.0f} s to import and open)",
            flush=True,
        )  # fmt: skip
        invites[LARGE_SLUG] = manage(env, "invite", LARGE_SLUG).strip().splitlines()[-1]
    # The imports leave PostgreSQL work to do (autovacuum on the new tables, dirty pages for the checkpointer):
    # done now, it stays out of the first bare phase, which otherwise ran at about half the speed of the second.
    started = time.perf_counter()
    pg_admin("VACUUM (ANALYZE)", f"postgresql://{args.pg}/{args.db_name}")
    try:
        pg_admin("CHECKPOINT", admin_url)
        settled = "VACUUM (ANALYZE) and CHECKPOINT"
    except psycopg.errors.InsufficientPrivilege:  # a role without pg_checkpoint: the checkpointer's own pace
        settled = "VACUUM (ANALYZE), no CHECKPOINT (the role may not)"
    print(f"[setup] {settled}: {time.perf_counter() - started:.1f} s", flush=True)
    cmd = [
        PYTHON,
        "-m",
        "gunicorn",
        "evalsite.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(args.workers),
        "--worker-class",
        args.worker_class,
        "--threads",
        str(args.threads),
        "--backlog",
        "512",
        "--keep-alive",
        "30",
        "--access-logfile",
        "-" if args.access_log else "/dev/null",
    ]
    log = open(var_dir / "gunicorn.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    stack = Stack(env=env, base=f"http://127.0.0.1:{port}", proc=proc)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                break
        except OSError:
            time.sleep(0.3)
    else:
        stop_stack(stack)
        raise SystemExit(f"gunicorn did not answer on port {port}; see {var_dir / 'gunicorn.log'}")
    stack.invites = invites
    print(
        f"[setup] gunicorn pid {proc.pid} on {stack.base}: {args.workers} workers × {args.threads} threads "
        f"({args.worker_class})",
        flush=True,
    )
    return stack


def stop_stack(stack: Stack) -> None:
    if stack.proc is not None and stack.proc.poll() is None:
        os.killpg(stack.proc.pid, signal.SIGTERM)
        try:
            stack.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(stack.proc.pid, signal.SIGKILL)


# ---------------------------------------------------------------- a keep-alive HTTP client with cookies


class Browser:
    """One rater's browser: one keep-alive connection, a cookie jar (Secure cookies sent anyway: loopback)."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.cookies: dict[str, str] = {}
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        all_headers = {"Host": f"{self.host}:{self.port}", **(headers or {})}
        if self.cookies:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=all_headers)
                response = self.conn.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed an idle keep-alive connection: reconnect once (the request was not sent).
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                if attempt:
                    raise
        for header in response.headers.get_all("Set-Cookie") or []:
            jar = SimpleCookie()
            jar.load(header)
            for key, morsel in jar.items():
                self.cookies[key] = morsel.value
        if response.getheader("Connection", "").lower() == "close":
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        return response.status, data, response

    def close(self) -> None:
        self.conn.close()


# ---------------------------------------------------------------- the two workloads


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    acked: list[tuple[str, str]] = field(default_factory=list)  # (assignment token, choice)
    finished: int = 0

    def time(self, kind: str, seconds: float) -> None:
        with self.lock:
            self.latencies.setdefault(kind, []).append(seconds)

    def error(self, message: str) -> None:
        with self.lock:
            self.errors.append(message)


def bare_worker(base: str, stop_at: float, stats: Stats) -> None:
    browser = Browser(base)
    try:
        while time.time() < stop_at:
            started = time.perf_counter()
            status, _, _ = browser.request("GET", "/healthz")
            stats.time("healthz", time.perf_counter() - started)
            if status != 200:
                stats.error(f"healthz {status}")
    except Exception as exc:  # noqa: BLE001 - every failure is a counted error
        stats.error(f"healthz {type(exc).__name__}: {exc}")
    finally:
        browser.close()


def rater_worker(
    base: str,
    invite_path: str,
    slug: str,
    read: float,
    stop_at: float,
    max_votes: int,
    stats: Stats,
    seed: int,
    arrive_after: float = 0.0,
    joined: threading.Barrier | None = None,
    skip_only: bool = False,
) -> None:
    rng = random.Random(seed)
    time.sleep(arrive_after)  # raters arrive over the ramp-up, not all in the same millisecond
    browser = Browser(base)
    try:
        started = time.perf_counter()
        status, body, _ = browser.request("GET", invite_path)
        if status != 200:
            stats.error(f"join page {status}")
            return
        token = browser.cookies["csrftoken"]
        form = urlencode({"csrfmiddlewaretoken": token, "participant": f"load-{seed}"}).encode()
        status, _, _ = browser.request("POST", invite_path, form, {"Content-Type": "application/x-www-form-urlencoded"})
        stats.time("join", time.perf_counter() - started)
        if status != 302 or "sessionid" not in browser.cookies:
            stats.error(f"join {status}")
            return
        csrf = browser.cookies["csrftoken"]
        if joined is not None:
            # Saturation measures the loop itself: every rater has joined before the clock starts.
            joined.wait()
            stop_at = time.time() + stop_at
        votes = 0

        def ask_next() -> dict | None:
            started = time.perf_counter()
            status, body, _ = browser.request("GET", f"/api/rate/next?campaign={slug}")
            stats.time("next", time.perf_counter() - started)
            if status not in (200, 204):
                stats.error(f"next {status}: {body[:200]!r}")
            return json.loads(body) if status == 200 else None

        pair = ask_next()  # the first pair; every later one comes with the vote before it
        while pair is not None and time.time() < stop_at and votes < max_votes:
            # "read" the pair
            if not (pair["responses"]["A"] and pair["responses"]["B"]):
                stats.error("next: empty response text")
            if read:
                time.sleep(rng.uniform(0.5 * read, 1.5 * read))
            if skip_only:  # every `next` ranks the campaign anew: skip the pair, then ask for another
                started = time.perf_counter()
                status, body, _ = browser.request(
                    "POST", f"/api/rate/{pair['assignment']}/skip", b"{}",
                    {"Content-Type": "application/json", "X-CSRFToken": csrf},
                )  # fmt: skip
                stats.time("skip", time.perf_counter() - started)
                if status != 200:
                    stats.error(f"skip {status}: {body[:200]!r}")
                    break
                pair = ask_next()
                continue
            choice = rng.choice(["A", "B", "tie", "both_bad"])
            payload = json.dumps({"choice": choice}).encode()
            started = time.perf_counter()
            status, body, _ = browser.request(
                "POST",
                f"/api/rate/{pair['assignment']}/vote",
                payload,
                {"Content-Type": "application/json", "X-CSRFToken": csrf},
            )
            stats.time("vote", time.perf_counter() - started)
            if status == 201:
                votes += 1
                with stats.lock:
                    stats.acked.append((pair["assignment"], choice))
                pair = json.loads(body)["next"]
            else:
                stats.error(f"vote {status}: {body[:200]!r}")
                break
        with stats.lock:
            stats.finished += 1
    except Exception as exc:  # noqa: BLE001 - every failure is a counted error
        stats.error(f"rater {type(exc).__name__}: {exc}")
        if joined is not None:
            joined.abort()  # the others must not wait for a rater that never joins
    finally:
        browser.close()


def run_threads(targets: list[threading.Thread]) -> float:
    started = time.perf_counter()
    for thread in targets:
        thread.start()
    for thread in targets:
        thread.join()
    return time.perf_counter() - started


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index] * 1000


def describe(kind: str, values: list[float]) -> str:
    return (
        f"{kind:8s} n={len(values):6d}  p50={pct(values, 50):7.1f} ms  p95={pct(values, 95):7.1f} ms  "
        f"p99={pct(values, 99):7.1f} ms  max={max(values) * 1000 if values else float('nan'):7.1f} ms"
    )


# ---------------------------------------------------------------- reconciliation


def reconcile(args: argparse.Namespace, stack: Stack, stats: Stats, var_dir: Path, slug: str) -> list[str]:
    import psycopg

    problems: list[str] = []
    with psycopg.connect(f"postgresql://{args.pg}/{args.db_name}") as conn:
        (db_votes,) = conn.execute(
            "SELECT count(*) FROM comparisons_vote v JOIN comparisons_assignment a ON a.id = v.assignment_id "
            "JOIN comparisons_comparison c ON c.id = a.comparison_id "
            "JOIN comparisons_campaign g ON g.id = c.campaign_id "
            "WHERE g.slug = %s",
            [slug],
        ).fetchone()
        acked_tokens = {token for token, _ in stats.acked}
        stored = dict(
            conn.execute(
                "SELECT a.token, v.choice FROM comparisons_vote v "
                "JOIN comparisons_assignment a ON a.id = v.assignment_id "
                "JOIN comparisons_comparison c ON c.id = a.comparison_id JOIN comparisons_campaign g "
                "ON g.id = c.campaign_id WHERE g.slug = %s",
                [slug],
            ).fetchall()
        )
        over_quota = conn.execute(
            "SELECT c.id, count(v.id) FROM comparisons_comparison c "
            "JOIN comparisons_campaign g ON g.id = c.campaign_id "
            "LEFT JOIN comparisons_assignment a ON a.comparison_id = c.id LEFT JOIN comparisons_vote v "
            "ON v.assignment_id = a.id WHERE g.slug = %s GROUP BY c.id, g.votes_per_comparison "
            "HAVING count(v.id) > g.votes_per_comparison "
            "OR count(v.id) <> c.votes_count",
            [slug],
        ).fetchall()
        twice = conn.execute(
            "SELECT a.rater_id, a.comparison_id FROM comparisons_assignment a GROUP BY 1, 2 HAVING count(*) > 1"
        ).fetchall()
        (comparisons, full) = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE votes_count = g.votes_per_comparison) "
            "FROM comparisons_comparison c JOIN comparisons_campaign g ON g.id = c.campaign_id WHERE g.slug = %s",
            [slug],
        ).fetchone()
    out = var_dir / f"votes-{slug}.csv"
    manage(stack.env, "export_votes", slug, str(out))
    with out.open(newline="", encoding="utf-8") as handle:
        exported = sum(1 for _ in csv.DictReader(handle))
    screen = {"A": "left", "B": "right", "tie": "tie", "both_bad": "both_bad"}
    wrong = [t for t, choice in stats.acked if stored.get(t) != screen[choice]]
    print(
        f"[reconcile {slug}] acknowledged={len(stats.acked)} database={db_votes} export_votes={exported}; "
        f"comparisons={comparisons} (full: {full}); over quota or miscounted: {len(over_quota)}; "
        f"rater twice on a comparison: {len(twice)}; acked votes stored with another choice: {len(wrong)}",
        flush=True,
    )
    if not (len(stats.acked) == db_votes == exported == len(acked_tokens)):
        problems.append("acknowledged, stored and exported vote counts differ")
    if over_quota:
        problems.append(f"{len(over_quota)} comparisons over quota or with a wrong count")
    if twice:
        problems.append(f"{len(twice)} (rater, comparison) pairs assigned twice")
    if wrong:
        problems.append(f"{len(wrong)} acknowledged votes stored differently")
    return problems


# ---------------------------------------------------------------- main


RATER_REQUESTS = ("next", "vote", "skip")


def rater_requests(stats: Stats) -> list[float]:
    return [t for kind in RATER_REQUESTS for t in stats.latencies.get(kind, [])]


def rater_phase(
    args: argparse.Namespace,
    stack: Stack,
    slug: str,
    read: float,
    label: str,
    seconds: float,
    skip_only: bool = False,
) -> tuple[Stats, float]:
    """Paced raters (read > 0) arrive over the ramp and are timed from the first arrival; saturating
    raters (read = 0) all join first, then loop for `seconds`, and only the loop is timed. With
    `skip_only` the raters skip every pair instead of voting."""
    stats = Stats()
    invite_path = urlsplit(stack.invites[slug]).path
    joined = None if read else threading.Barrier(args.raters + 1)
    stop_at = seconds if joined else time.time() + seconds
    threads = [
        threading.Thread(
            target=rater_worker,
            args=(stack.base, invite_path, slug, read, stop_at, args.max_votes_per_rater, stats, seed),
            kwargs={
                "arrive_after": seed * args.ramp_seconds / args.raters if read else 0.0,
                "joined": joined,
                "skip_only": skip_only,
            },
        )
        for seed in range(args.raters)
    ]
    for thread in threads:
        thread.start()
    if joined is not None:
        with contextlib.suppress(threading.BrokenBarrierError):  # a failed join is counted by its thread
            joined.wait(timeout=120)
    cpu_before = cpu_seconds(stack)
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    cpu_after = cpu_seconds(stack)
    cpu = cpu_report(cpu_before, cpu_after, elapsed)
    votes = len(stats.acked)
    requests = len(rater_requests(stats))
    print(
        f"[{label}] {args.raters} raters, reading {read:g} s (±50%) per pair"
        f"{f', arriving over {args.ramp_seconds:g} s' if read else ', all joined before the clock starts'}, "
        f"{elapsed:.1f} s: {votes} votes acknowledged = {votes / elapsed:.1f} votes/s "
        f"({requests / elapsed:.0f} rater requests/s), raters finished {stats.finished}/{args.raters}, "
        f"errors {len(stats.errors)}"
    )
    # A vote's request also serves the next pair: per vote is per loop. Skipping raters cast none.
    per = cpu_per(cpu_before, cpu_after, *((votes, "vote") if votes else (requests, "request")))
    print(f"  CPU: {cpu}; {per}")
    for kind in ("join", *RATER_REQUESTS):
        if kind in stats.latencies:
            print("  " + describe(kind, stats.latencies[kind]))
    print("  " + describe("all", rater_requests(stats)) + "  (next, vote with its next pair, skip)", flush=True)
    for message in stats.errors[:10]:
        print(f"  error: {message}")
    return stats, elapsed


_COMPONENTS = ("gunicorn", "postgres", "redis", "client")


def cpu_seconds(stack: Stack) -> dict[str, dict[int, float]]:
    """CPU seconds used so far by each process of gunicorn (its process group), PostgreSQL, Redis and this client,
    by pid (Linux /proc); under "machine" and "stolen" (pid 0) the whole machine's busy time and the time the
    hypervisor gave to other guests, from /proc/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, dict[int, float]] = {name: {} for name in _COMPONENTS}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the process ended
        pid = int(stat.parent.name)
        comm = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        if stack.proc is not None and int(fields[2]) == stack.proc.pid:  # pgrp
            used["gunicorn"][pid] = seconds
        elif comm.startswith("postgres"):
            used["postgres"][pid] = seconds
        elif comm.startswith("redis"):
            used["redis"][pid] = seconds
        elif pid == os.getpid():
            used["client"][pid] = seconds
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    used["machine"] = {0: (user + nice + system + irq + softirq) / tick}
    used["stolen"] = {0: steal / tick}
    return used


def cpu_spent(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]], name: str) -> float:
    """CPU seconds a component used between two readings: each process's growth, a process started in between
    counted whole. A process that ended in between takes its share with it (a lower bound), but no longer the
    time it had used before the phase (database connections closed by CONN_MAX_AGE made the sum shrink)."""
    return sum(max(0.0, seconds - before[name].get(pid, 0.0)) for pid, seconds in after[name].items())


def cpu_report(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]], elapsed: float) -> str:
    """Share of the machine's CPU per component over a phase; then what the rest of the machine used, and what
    the hypervisor took for other guests (a shared machine's noise)."""
    cores = os.cpu_count() or 1

    def share(name: str) -> float:
        return 100 * cpu_spent(before, after, name) / (elapsed * cores)

    others = share("machine") - sum(share(name) for name in _COMPONENTS)
    return (
        ", ".join(f"{name} {share(name):.0f}%" for name in _COMPONENTS)
        + f" of {cores} cores; the rest of the machine {max(0.0, others):.0f}%, stolen {share('stolen'):.0f}%"
    )


def cpu_per(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]], count: int, unit: str) -> str:
    """Milliseconds of CPU that gunicorn and PostgreSQL spent per `unit` over a phase: unlike a throughput, what a
    vote or a request costs barely moves with what else the machine runs."""
    if not count:
        return f"no {unit} to divide by"
    spent = {name: 1000 * cpu_spent(before, after, name) / count for name in ("gunicorn", "postgres")}
    return f"per {unit}: gunicorn {spent['gunicorn']:.2f} ms, postgres {spent['postgres']:.2f} ms"


def bare_phase(args: argparse.Namespace, stack: Stack, label: str) -> tuple[Stats, float]:
    bare = Stats()
    stop_at = time.time() + args.bare_seconds
    cpu_before = cpu_seconds(stack)
    elapsed = run_threads(
        [threading.Thread(target=bare_worker, args=(stack.base, stop_at, bare)) for _ in range(args.raters)]
    )
    cpu_after = cpu_seconds(stack)
    cpu = cpu_report(cpu_before, cpu_after, elapsed)
    served = len(bare.latencies.get("healthz", []))
    rate = served / elapsed
    print(f"[{label}] {args.raters} clients, {elapsed:.1f} s: {rate:.0f} requests/s, errors {len(bare.errors)}")
    print(f"  CPU: {cpu}; {cpu_per(cpu_before, cpu_after, served, 'request')}")
    print("  " + describe("healthz", bare.latencies.get("healthz", [])), flush=True)
    return bare, rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raters", type=int, default=50, help="concurrent simulated raters (and bare-view clients)")
    parser.add_argument("--k", type=int, default=5, help="votes per comparison of the paced campaign (252 pairs)")
    parser.add_argument(
        "--read-seconds", type=float, default=3.0, help="mean reading time of the paced raters (MIN_SECONDS_PER_VOTE)"
    )
    parser.add_argument("--max-votes-per-rater", type=int, default=1000)
    parser.add_argument("--paced-seconds", type=float, default=45, help="duration of the paced phase")
    parser.add_argument("--ramp-seconds", type=float, default=5, help="paced raters arrive over this many seconds")
    parser.add_argument(
        "--saturation-seconds", type=float, default=20, help="duration of the saturation phase (after all joined)"
    )
    parser.add_argument(
        "--saturation-k", type=int, default=40, help="votes per comparison of the saturation campaign (never runs dry)"
    )
    parser.add_argument("--bare-seconds", type=float, default=15, help="duration of the /healthz phase")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--worker-class", default="gthread")
    parser.add_argument("--conn-max-age", type=int, default=60, help="DATABASE_CONN_MAX_AGE of the web process")
    parser.add_argument("--db-name", default="be_f_load")
    parser.add_argument(
        "--pg", default="blindeval:blindeval@localhost", help="PostgreSQL USER:PASSWORD@HOST (may create databases)"
    )
    parser.add_argument(
        "--large", action="store_true", help="add the 805 prompts × 9 models campaign (28,980 comparisons)"
    )
    parser.add_argument("--large-seconds", type=float, default=30, help="duration of each phase on the large campaign")
    parser.add_argument("--redis-url", default="redis://localhost:6379/6")
    parser.add_argument("--keep", action="store_true", help="keep the database and the var dir afterwards")
    parser.add_argument("--access-log", action="store_true")
    args = parser.parse_args()

    var_dir = Path(tempfile.mkdtemp(prefix="be-load-", dir="/tmp"))
    stack = start_stack(args, var_dir)
    problems: list[str] = []
    try:
        bare_before, bare_rps_before = bare_phase(args, stack, "bare")
        paced, _ = rater_phase(args, stack, SLUGS[0], args.read_seconds, "paced raters", args.paced_seconds)
        saturated, elapsed = rater_phase(args, stack, SLUGS[1], 0.0, "saturation", args.saturation_seconds)
        # The machine is shared: the bare view is measured on both sides of the saturation phase.
        bare_after, bare_rps_after = bare_phase(args, stack, "bare again")
        bare_rps = (bare_rps_before + bare_rps_after) / 2
        votes_per_s = len(saturated.acked) / elapsed
        requests_per_s = len(rater_requests(saturated)) / elapsed
        print(
            f"[ratio] saturated rater loop: {votes_per_s:.1f} votes/s (each answered with the next pair) "
            f"vs bare view {bare_rps:.0f}/s "
            f"(mean of {bare_rps_before:.0f} and {bare_rps_after:.0f}) = {votes_per_s / bare_rps:.2f}; "
            f"by requests {requests_per_s / bare_rps:.2f}",
            flush=True,
        )
        problems = reconcile(args, stack, paced, var_dir, SLUGS[0]) + reconcile(
            args, stack, saturated, var_dir, SLUGS[1]
        )
        errors = len(bare_before.errors) + len(bare_after.errors) + len(paced.errors) + len(saturated.errors)
        if args.large:
            read = args.read_seconds
            large, _ = rater_phase(args, stack, LARGE_SLUG, read, "large campaign, voting", args.large_seconds)
            problems += reconcile(args, stack, large, var_dir, LARGE_SLUG)
            ranking, _ = rater_phase(
                args, stack, LARGE_SLUG, read, "large campaign, next → skip", args.large_seconds, skip_only=True
            )
            errors += len(large.errors) + len(ranking.errors)
            large_p99 = pct(ranking.latencies.get("next", []), 99)
            print(
                f"[goal] large campaign: next p99 {large_p99:.1f} ms (<20): {'met' if large_p99 < 20 else 'NOT met'}; "
                f"vote with its next pair p99 {pct(large.latencies.get('vote', []), 99):.1f} ms",
                flush=True,
            )
        if errors:
            problems.append(f"{errors} errors")
        p99 = pct(rater_requests(paced), 99)
        # Two readings of "the rater loop at >= 0.3 of the bare view's throughput": whole loops (a vote and the
        # next pair, one request) against bare requests, and requests against requests. Both are printed.
        by_loops, by_requests = votes_per_s / bare_rps, requests_per_s / bare_rps
        print(
            f"[goal] paced p99 {p99:.1f} ms (<150): {'met' if p99 < 150 else 'NOT met'}; "
            f"errors {errors} (0): {'met' if not errors else 'NOT met'}; "
            f"loop/bare (>=0.3) by loops {by_loops:.2f}: {'met' if by_loops >= 0.3 else 'NOT met'}, "
            f"by requests {by_requests:.2f}: {'met' if by_requests >= 0.3 else 'NOT met'}"
        )
    finally:
        stop_stack(stack)
        if not args.keep:
            try:
                pg_admin(
                    f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)',
                    f"postgresql://{args.pg}/postgres",
                )
            except Exception as exc:  # noqa: BLE001
                print(f"could not drop {args.db_name}: {exc}")
            shutil.rmtree(var_dir, ignore_errors=True)
        else:
            print(f"kept: database {args.db_name}, var dir {var_dir}")
    if problems:
        print("RECONCILIATION FAILED: " + "; ".join(problems))
        return 1
    print("reconciliation OK: nothing lost, nothing doubled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
