"""A real Celery worker process against the test database, for integration tests.

Use the ``celery_worker`` fixture (tests/conftest.py) from a test marked
``@pytest.mark.django_db(transaction=True)``: rows the test commits are seen
by the worker, and what the worker writes is seen by the test. The worker is a
separate ``celery -A evalsite worker`` process given the test database's
connection settings (``DATABASE_URL`` built from
``django.db.connection.settings_dict``; for SQLite that is the test database
file under ``BLINDEVAL_VAR_DIR``) and the same ``CELERY_BROKER_URL`` and
``BLINDEVAL_VAR_DIR`` as the test process, so ``task.delay()`` /
``delay_on_commit()`` in the test reaches it through the real broker (the
filesystem transport by default, Redis when ``CELERY_BROKER_URL`` says so).

    def test_something(celery_worker):
        worker = celery_worker(queues="generation,default", env={"GENERATION_HEARTBEAT_SECONDS": "1"})
        ...                      # queue work, poll the database
        worker.kill()            # SIGKILL the whole process group, like a machine dying
        celery_worker()          # a fresh worker

Every worker started by the fixture is killed at teardown; its log is in
``worker.log_path`` (printed by ``worker.log()``) to explain a failure. The
queues are purged when the fixture starts so messages left by an earlier test
cannot leak into this one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def database_url_for_tests() -> str:
    """A DATABASE_URL that points a subprocess at the database this test process uses now."""
    db = connection.settings_dict
    engine = db["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        name = str(db["NAME"])
        if name == ":memory:" or "mode=memory" in name:
            raise RuntimeError("A worker process cannot share an in-memory SQLite database; use a file.")
        return f"sqlite:///{Path(name).resolve()}"
    if engine in ("django.db.backends.postgresql", "django.db.backends.postgresql_psycopg2"):
        user = quote(db.get("USER") or "", safe="")
        password = quote(db.get("PASSWORD") or "", safe="")
        auth = f"{user}:{password}@" if user else ""
        host = db.get("HOST") or "localhost"
        port = f":{db['PORT']}" if db.get("PORT") else ""
        return f"postgres://{auth}{host}{port}/{db['NAME']}"
    raise RuntimeError(f"No DATABASE_URL for the engine {engine}.")


def purge_queues(*queues: str) -> None:
    """Drop messages waiting in ``queues`` on the configured broker."""
    from evalsite.celery import app

    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for queue in queues:
            try:
                channel.queue_purge(queue)
            except Exception:  # noqa: S112 - a queue that never existed has nothing to purge
                continue


class CeleryWorker:
    """One ``celery worker`` subprocess in its own process group."""

    def __init__(self, *, queues: str, log_dir: Path, env: dict[str, str] | None = None, pool: str = "solo") -> None:
        self.queues = queues
        self.name = f"test-{uuid.uuid4().hex[:8]}@%h"
        self.log_path = log_dir / f"worker-{uuid.uuid4().hex[:8]}.log"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "evalsite.settings",
            "DATABASE_URL": database_url_for_tests(),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "BLINDEVAL_VAR_DIR": str(settings.VAR_DIR),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "CELERY_TASK_ALWAYS_EAGER": "0",
            **(env or {}),
        }
        self.pool = pool
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, ready_timeout: float = 90) -> CeleryWorker:
        command = [
            sys.executable, "-m", "celery", "-A", "evalsite", "worker", "-Q", self.queues, "-c", "1",
            f"--pool={self.pool}", "-n", self.name, "--without-gossip", "--without-mingle", "--loglevel=INFO",
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"The Celery worker exited with {self.process.returncode}:\n{self.log()}")
            if " ready." in self.log():
                return self
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"The Celery worker was not ready after {ready_timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the worker's whole process group (prefork children too) and wait for it."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM): the task in flight finishes first."""
        self.kill(signal.SIGTERM)


def wait_for(predicate, *, timeout: float, interval: float = 0.25, message: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"Timed out after {timeout} s waiting for {message}.")


def wait_while_progressing(predicate, *, progress, stall: float, limit: float, interval: float = 0.25, message: str):
    """Poll ``predicate`` until it returns something truthy, for as long as the work moves on.

    ``progress()`` returns anything comparable that changes while the work advances (rows stored, a
    heartbeat); the test fails when it has not changed for ``stall`` seconds (the work is stuck), or after
    ``limit`` seconds in all. A slow, loaded machine therefore only makes the wait longer, never fails it."""
    start = time.monotonic()
    last_seen, last_change = progress(), start
    while True:
        value = predicate()
        if value:
            return value
        now = time.monotonic()
        seen = progress()
        if seen != last_seen:
            last_seen, last_change = seen, now
        if now - last_change > stall:
            raise AssertionError(f"No progress for {stall} s (at {last_seen!r}) while waiting for {message}.")
        if now - start > limit:
            raise AssertionError(f"Still waiting for {message} after {limit} s, although the work progressed.")
        time.sleep(interval)
