"""A large campaign's results page and votes export over HTTP, from a cold start (run by hand, not a test).

    DATABASE_URL=postgres://... .venv/bin/python benchmarks/results_bench.py --campaign million \\
        [--runs 3] [--cold-command "CMD"] [--evict DIR] [--postgres-pid-file DIR/postmaster.pid]

DATABASE_URL names the database that holds the campaign (`benchmarks/million_votes.sql` builds a
1,000,000-vote one). Each run:

1. runs ``--cold-command`` (for instance a restart of PostgreSQL, which empties its shared buffers), then
   evicts every file under ``--evict`` (PostgreSQL's data folder) from the operating system's page cache
   with ``posix_fadvise(DONTNEED)`` and reports how much of it stayed cached (``fincore``);
2. starts a fresh gunicorn (one worker, one thread, DEBUG=0) with an empty analysis cache and waits for
   ``/healthz`` (so Django is loaded, but no vote has been read);
3. as a signed-in analyst: GET the results page (time to the first byte and to the last), GET the votes
   export (time to the last byte and bytes), GET the results page again (the analysis now cached). With
   ``--export-first`` the export comes first: each request warms what the next reads, so the one measured
   first is the cold one.

Wall times depend on what else the machine runs, so each request's CPU time is reported too: the gunicorn
worker's, and with ``--postgres-pid-file`` (the data folder's ``postmaster.pid``, of a server that serves
nothing else) PostgreSQL's, its finished backends and parallel workers included.
"""

from __future__ import annotations

import argparse
import http.client
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks" / "load"))

from run_load import free_port, manage  # noqa: E402

SESSION_CODE = """
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from importlib import import_module
from django.conf import settings
SessionStore = import_module(settings.SESSION_ENGINE).SessionStore
user, _ = get_user_model().objects.get_or_create(username="bench-analyst", defaults={"is_superuser": True})
session = SessionStore()
session.update({SESSION_KEY: str(user.pk), BACKEND_SESSION_KEY: settings.AUTHENTICATION_BACKENDS[0],
                HASH_SESSION_KEY: user.get_session_auth_hash()})
session.create()
print(session.session_key)
"""


def evict(folder: Path) -> str:
    """Drop every file under `folder` from the page cache; what `fincore` still finds cached."""
    files = [path for path in folder.rglob("*") if path.is_file()]
    for path in files:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    if shutil.which("fincore") is None:
        return "fincore not installed"
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", *map(str, files)], capture_output=True, text=True
    )
    cached = sum(int(line) for line in out.stdout.split() if line.isdigit())
    return f"{cached / 2**20:.1f} MiB of {sum(p.stat().st_size for p in files) / 2**20:.0f} MiB still cached"


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User and system CPU time of a process (with ``children``, plus that of its children it has reaped)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    used = fields[11:13] + (fields[13:15] if children else [])
    return sum(int(value) for value in used) / os.sysconf("SC_CLK_TCK")


def gunicorn_worker(master: int) -> int:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master:
                return int(stat.parent.name)
        except (OSError, ValueError):
            continue
    raise SystemExit("gunicorn has no worker process")


def get(port: int, path: str, cookie: str) -> tuple[int, float, float, int]:
    """Status, seconds to the first byte of the body, seconds to the last, and bytes."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("GET", path, headers={"Cookie": f"sessionid={cookie}"})
    response = conn.getresponse()
    first = response.read(1)
    first_byte = time.perf_counter() - start
    size = len(first)
    while chunk := response.read(1 << 20):
        size += len(chunk)
    conn.close()
    return response.status, first_byte, time.perf_counter() - start, size


def measured(
    port: int, path: str, cookie: str, worker: int, postmaster: int | None
) -> tuple[tuple[int, float, float, int], str]:
    """`get`, and the CPU time the gunicorn worker (and PostgreSQL) spent on it."""
    web, db = cpu_seconds(worker), cpu_seconds(postmaster, children=True) if postmaster else 0.0
    answer = get(port, path, cookie)
    used = f"CPU: web {cpu_seconds(worker) - web:.1f} s"
    if postmaster:
        used += f", PostgreSQL {cpu_seconds(postmaster, children=True) - db:.1f} s"
    return answer, used


def start_gunicorn(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gunicorn", "evalsite.wsgi:application", "--bind", f"127.0.0.1:{port}",
           "--workers", "1", "--threads", "1", "--timeout", "600", "--access-logfile", "/dev/null"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"gunicorn did not answer on port {port}; see {log}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaign", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cold-command", help="shell command run before each run, e.g. a PostgreSQL restart")
    parser.add_argument("--evict", type=Path, help="a folder to drop from the page cache before each run")
    parser.add_argument("--postgres-pid-file", type=Path, help="postmaster.pid, to count PostgreSQL's CPU time")
    parser.add_argument(
        "--export-first",
        action="store_true",
        help="GET the export before the results page, so that the export (not the page) starts cold",
    )
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        raise SystemExit("Set DATABASE_URL to the PostgreSQL database that holds the campaign.")
    var_dir = Path(tempfile.mkdtemp(prefix="results-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY", "CACHE"))}
    env.update(
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="0",
        BLINDEVAL_VAR_DIR=str(var_dir),  # the file cache (analysis cache) lives here: emptied before each run
        LOG_LEVEL="WARNING",
    )
    manage(env, "collectstatic", "--no-input")
    cookie = manage(env, "shell", "-c", SESSION_CODE).strip().splitlines()[-1]
    page, export = f"/campaigns/{args.campaign}/results/", f"/campaigns/{args.campaign}/export/votes"
    print(f"campaign {args.campaign!r}; load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    for run in range(1, args.runs + 1):
        if args.cold_command:
            subprocess.run(args.cold_command, shell=True, check=True)  # noqa: S602 - the operator's own command
        cache_note = evict(args.evict) if args.evict else "page cache not evicted"
        shutil.rmtree(var_dir / "cache", ignore_errors=True)
        port = free_port()
        proc = start_gunicorn(env, port, var_dir / "gunicorn.log")
        worker = gunicorn_worker(proc.pid)
        postmaster = int(args.postgres_pid_file.read_text().split()[0]) if args.postgres_pid_file else None

        try:
            if args.export_first:
                (e_status, _, e_last, e_size), export_cpu = measured(port, export, cookie, worker, postmaster)
            (status, first, last, size), page_cpu = measured(port, page, cookie, worker, postmaster)
            assert status == 200, f"results page answered {status}; see {var_dir / 'gunicorn.log'}"
            if not args.export_first:
                (e_status, _, e_last, e_size), export_cpu = measured(port, export, cookie, worker, postmaster)
            assert e_status == 200, f"export answered {e_status}"
            (_, again, _, _), again_cpu = measured(port, page, cookie, worker, postmaster)
        finally:
            proc.terminate()
            proc.wait(30)
        print(
            f"run {run} ({cache_note}; load {os.getloadavg()[0]:.1f}):\n"
            f"  results page: first byte {first:.2f} s, last byte {last:.2f} s ({size / 1024:.0f} KiB; {page_cpu})\n"
            f"  votes export: {e_last:.2f} s ({e_size / 2**20:.0f} MiB; {export_cpu})\n"
            f"  results page again, analysis cached: {again:.2f} s ({again_cpu})",
            flush=True,
        )
    shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
