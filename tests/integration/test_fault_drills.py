"""Fault drills: Redis restarting under a generation run, the database connection dropping during a vote,
and a lease expiring while a rater still holds the page. (SIGKILL of a worker: tests/generation/test_worker.py.)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, connections
from django.db.models import Count

from comparisons import services as rating
from comparisons.models import Assignment, Comparison, Vote
from generation.models import GenerationRun, Response
from tests.comparisons.conftest import RaterClient
from tests.comparisons.factories import build_campaign, invite_rater
from tests.worker import database_url_for_tests, wait_for

ROOT = Path(__file__).resolve().parents[2]
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
on_postgres = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")),
    reason="needs PostgreSQL (CI sets DATABASE_URL=postgres://…)",
)
with_redis = pytest.mark.skipif(
    not os.environ.get("CELERY_BROKER_URL", "").startswith("redis://") or not Path(REDIS_SERVER).exists(),
    reason="needs Redis (CI sets CELERY_BROKER_URL=redis://…) and a redis-server binary",
)


# ---------------------------------------------------------------- Redis restarting mid-run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A private redis-server on a free loopback port, killed and restarted by the drill."""

    def __init__(self, workdir: Path, *, durable: bool) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.durable = durable
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence,
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(self._answers, timeout=20, message=f"redis-server on port {self.port}")
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


def generate(model: str, broker: str, *extra: str) -> subprocess.CompletedProcess:
    """`manage.py generate` in its own process: a producer talking to the drill's Redis."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_tests(),
        "CELERY_BROKER_URL": broker,
        "DJANGO_SETTINGS_MODULE": "evalsite.settings",
    }
    return subprocess.run(
        [sys.executable, "manage.py", "generate", model, "--evalset", "self-instruct", *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@with_redis
@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("durable", [True, False], ids=["append-only-redis", "volatile-redis"])
def test_redis_restart_mid_run_still_completes_once_per_prompt(
    durable, celery_worker, ready_model, eval_set, tmp_path, settings
):
    """Kill Redis (SIGKILL) while a worker is generating, start it again on the same port.

    With the production setting (append-only file) the queued chunks survive and the run finishes by
    itself. With a Redis that kept nothing, running `generate` again re-queues what was lost (the
    documented recovery). Either way: exactly one response per prompt.
    """
    total = 24
    model = ready_model("gpt2", name=f"drill-{'aof' if durable else 'volatile'}", max_new_tokens=32)
    redis = RedisServer(tmp_path, durable=durable).start()
    try:
        env = {"CELERY_BROKER_URL": redis.url, "GENERATION_HEARTBEAT_SECONDS": "1", "GENERATION_STALE_SECONDS": "4"}
        worker = celery_worker(env=env)
        started = generate(model.name, redis.url, "--limit", str(total), "--chunk-size", "4", "--batch-size", "2")
        assert started.returncode == 0, started.stdout + started.stderr
        wait_for(lambda: Response.objects.filter(model=model).exists(), timeout=120, message="a first response")

        redis.kill()
        time.sleep(1.5)
        redis.start()
        done_at_restart = Response.objects.filter(model=model).count()
        assert done_at_restart < total, "the restart must fall in the middle of the run"

        run = GenerationRun.objects.get(model=model)
        if not durable:
            # The queue went with the old Redis: `generate` again re-queues every chunk not done.
            again = generate(model.name, redis.url)
            assert again.returncode == 0, again.stdout + again.stderr

        def finished() -> bool:
            run.refresh_from_db()
            return run.status != GenerationRun.Status.RUNNING and run.status != GenerationRun.Status.QUEUED

        wait_for(finished, timeout=240, message=f"the run to end (worker log: {worker.log_path})")
        assert run.status == GenerationRun.Status.SUCCEEDED, worker.log()[-3000:]
        per_prompt = Response.objects.filter(model=model).values("prompt").annotate(n=Count("id"))
        assert len(per_prompt) == total
        assert {row["n"] for row in per_prompt} == {1}
        assert "Connection to broker lost" in worker.log() or "Cannot connect" in worker.log()
    finally:
        redis.kill()


# ---------------------------------------------------------------- the database connection dropping


@on_postgres
@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_database_connection_dropped_during_a_vote_is_retryable_and_counted_once(rater_client):
    """The vote's connection is terminated (pg_terminate_backend) while the vote holds its row lock.

    The client gets a 503 with Retry-After; the vote was rolled back with the connection, and the retry
    records exactly one vote.
    """
    import psycopg

    campaign = build_campaign(slug="dbdrop", n_prompts=2, k=2)
    client: RaterClient = rater_client(campaign)
    client.raise_request_exception = False
    token = client.next(campaign.slug).json()["assignment"]
    assignment = Assignment.objects.get(token=token)
    settings_dict = connection.settings_dict
    dsn = (
        f"host={settings_dict['HOST'] or 'localhost'} port={settings_dict['PORT'] or 5432} "
        f"dbname={settings_dict['NAME']} user={settings_dict['USER']} password={settings_dict['PASSWORD']}"
    )
    # Another session holds the assignment's row: the vote's SELECT … FOR UPDATE waits on it, and
    # while it waits we terminate the vote's backend.
    blocker = psycopg.connect(dsn)
    blocker.execute("BEGIN")
    blocker.execute("SELECT id FROM comparisons_assignment WHERE id = %s FOR UPDATE", [assignment.pk])
    result: dict = {}

    def vote() -> None:
        try:
            result["response"] = client.vote(token, "B")
        finally:
            connections.close_all()  # this thread's own connection

    voter = threading.Thread(target=vote)
    voter.start()
    try:
        with psycopg.connect(dsn, autocommit=True) as admin:

            def waiting_backend():
                # The backend the blocker holds up (its statement's text may be longer than what
                # pg_stat_activity keeps of it).
                row = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                    [blocker.info.backend_pid],
                ).fetchone()
                return row[0] if row else None

            pid = wait_for(waiting_backend, timeout=20, message="the vote to wait on the row lock")
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        voter.join(timeout=30)
    finally:  # a failure above must not leave the vote waiting on the lock (the test's teardown would hang)
        blocker.rollback()
        blocker.close()
    first = result["response"]
    assert first.status_code == 503, first.content[:300]
    assert first.json()["retry"] is True and "retry" in first.json()["error"]
    assert int(first["Retry-After"]) >= 1
    assert not Vote.objects.filter(assignment=assignment).exists()  # nothing half-written
    # The retry (same token, same choice) is recorded once; a second retry is the idempotent 200.
    retry = client.vote(token, "B")
    assert retry.status_code == 201, retry.content
    assert client.vote(token, "B").status_code == 200
    assert Vote.objects.filter(assignment=assignment).count() == 1
    assert Comparison.objects.get(pk=assignment.comparison_id).votes_count == 1


# ---------------------------------------------------------------- a lease expiring under a rater


@pytest.mark.django_db
@pytest.mark.parametrize("same_order", [False, True])
def test_expired_lease_is_accepted_while_under_quota_without_double_count(rater_client, same_order):
    """D's rule: a vote after the lease ran out is accepted while the comparison is under its quota, and, as
    the sides are counterbalanced (k = 2: one vote in each left/right order), while its order has room."""
    campaign = build_campaign(slug="lease-ok", n_prompts=1, k=2, lease_seconds=60)
    client: RaterClient = rater_client(campaign)
    token = client.next(campaign.slug).json()["assignment"]
    Assignment.objects.filter(token=token).update(leased_until=Assignment.objects.get(token=token).created_at)
    # Meanwhile another rater takes the pair (the expired lease no longer holds a place).
    other = invite_rater(campaign)
    other_assignment = rating.assignment_next(rater=other, campaign=campaign)
    assert other_assignment is not None
    # Both orders were free, so the new lease's order was a coin: set the late vote's order for each case.
    late_order = other_assignment.left_is_a if same_order else not other_assignment.left_is_a
    Assignment.objects.filter(token=token).update(left_is_a=late_order)
    late = client.vote(token, "A")
    if same_order:
        assert late.status_code == 410 and "ran out" in late.json()["error"]
    else:
        assert late.status_code == 201
        assert client.vote(token, "A").status_code == 200  # a resubmission is not a second vote
    rating.vote_cast(rater=other, token=other_assignment.token, choice="B")
    comparison = Comparison.objects.get(campaign=campaign)
    votes = 1 if same_order else 2
    assert comparison.votes_count == votes == Vote.objects.filter(assignment__comparison=comparison).count()


@pytest.mark.django_db
def test_expired_lease_on_a_filled_pair_answers_410_and_counts_nothing(rater_client):
    campaign = build_campaign(slug="lease-gone", n_prompts=1, k=1, lease_seconds=60)
    client: RaterClient = rater_client(campaign)
    token = client.next(campaign.slug).json()["assignment"]
    past = Assignment.objects.get(token=token).created_at - timedelta(seconds=1)
    Assignment.objects.filter(token=token).update(leased_until=past)
    other = invite_rater(campaign)
    taken = rating.assignment_next(rater=other, campaign=campaign)
    rating.vote_cast(rater=other, token=taken.token, choice="A")  # the pair is now full (k = 1)
    late = client.vote(token, "B")
    assert late.status_code == 410
    assert "ran out" in late.json()["error"]
    comparison = Comparison.objects.get(campaign=campaign)
    assert comparison.votes_count == 1 == Vote.objects.filter(assignment__comparison=comparison).count()
    # The rater's page then moves on: nothing left for them here.
    assert client.next(campaign.slug).status_code == 204
