"""Project-wide pytest fixtures."""

# --- a real Celery worker process (see tests/worker.py) -----------------------
import pytest  # noqa: E402


@pytest.fixture
def celery_worker(transactional_db, tmp_path):
    """Factory starting real ``celery worker`` processes against the test database; all killed at teardown.

    ``celery_worker(queues="generation,default", env={...}, pool="solo")`` returns a started
    :class:`tests.worker.CeleryWorker` (``.kill()`` sends SIGKILL, ``.stop()`` SIGTERM, ``.log()``).
    """
    from tests.worker import CeleryWorker, purge_queues

    purge_queues("generation", "default")
    started: list[CeleryWorker] = []

    def start(*, queues: str = "generation,default", env: dict[str, str] | None = None, pool: str = "solo"):
        worker = CeleryWorker(queues=queues, log_dir=tmp_path, env=env, pool=pool)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.kill()
    purge_queues("generation", "default")


# --- abuse limits (evalsite/ratelimit.py) --------------------------------------
@pytest.fixture(autouse=True)
def _no_rate_limits(settings):
    """Every test's client comes from 127.0.0.1: per-IP rate limits are off unless a test sets RATE_LIMITS."""
    settings.RATE_LIMITS = {}


# --- the one-call lease (comparisons/rating_queries.py) -------------------------
@pytest.fixture(autouse=True)
def _connections_kept_as_deployed(monkeypatch):
    """Deployments keep database connections (DATABASE_CONN_MAX_AGE, docker-compose sets 60), and on PostgreSQL
    the rater path then leases a pair in one round trip: tests run that path, although Django's test settings
    close connections. A test turns it off with ``monkeypatch.setattr(rating_queries, "_connections_kept", …)``."""
    from comparisons import rating_queries

    monkeypatch.setattr(rating_queries, "_connections_kept", lambda: True)
