"""Project-level checks: migrations complete, system checks clean, the compose
file valid, and the Celery app wired to a broker that really carries messages."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"

# CI installs docker-compose (.ci/run); a developer machine may not have it.
needs_docker_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None and not IN_CI,
    reason="docker-compose is not installed (CI installs it: apt-get install docker-compose)",
)
needs_redis_broker = pytest.mark.skipif(
    not os.environ.get("CELERY_BROKER_URL", "").startswith("redis://"),
    reason="needs Redis: set CELERY_BROKER_URL=redis://... (CI does)",
)


def manage(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_migrations_are_complete() -> None:
    result = manage("makemigrations", "--check", "--dry-run")

    assert result.returncode == 0, f"models changed without a migration:\n{result.stdout}{result.stderr}"


def test_system_checks_are_clean() -> None:
    result = manage("check", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def compose(
    *args: str,
    env_file: Path = ROOT / ".env.example",
    overrides: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    # Variables the compose file needs are read from the committed example (`env` wins over it).
    files = [arg for name in ("docker-compose.yml", *overrides) for arg in ("-f", str(ROOT / name))]
    return subprocess.run(
        ["docker-compose", "--env-file", str(env_file), *files, *args],
        cwd=ROOT,
        env={**os.environ, "COMPOSE_PROJECT_NAME": "blindeval-check", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@needs_docker_compose
def test_docker_compose_file_is_valid() -> None:
    assert compose("config", "-q").returncode == 0, compose("config", "-q").stderr

    result = compose("config")
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert {"postgres", "redis", "web", "worker", "worker-gpu"} <= set(services)
    for name in ("postgres", "redis", "web", "worker"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
        assert "profiles" not in services[name]
    assert "gunicorn" in " ".join(services["web"]["command"])
    assert "migrate" in " ".join(services["web"]["command"])
    # Uploaded checkpoints live on one volume that the web process and the workers share.
    for name in ("web", "worker", "worker-gpu"):
        assert any(volume.startswith("media:") for volume in services[name]["volumes"]), name
        environment = services[name]["environment"]
        assert environment["DATABASE_URL"].startswith("postgres://")
        assert environment["CELERY_BROKER_URL"].startswith("redis://")
        assert environment["SECRET_KEY"] == "change-me-to-a-long-random-string"
        assert environment["DEBUG"] == "0"
    assert {"pgdata", "redisdata", "media"} <= set(config["volumes"])


@needs_docker_compose
def test_docker_compose_gpu_profile_is_valid() -> None:
    result = compose("--profile", "gpu", "config")
    assert result.returncode == 0, result.stderr

    gpu_worker = yaml.safe_load(result.stdout)["services"]["worker-gpu"]
    assert gpu_worker["profiles"] == ["gpu"]
    (device,) = gpu_worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert device["capabilities"] == ["gpu"]
    assert gpu_worker["command"][gpu_worker["command"].index("-Q") + 1] == "generation"


@needs_docker_compose
def test_docker_compose_scale_override_runs_n_web_and_m_workers_behind_one_proxy() -> None:
    scaled = {
        "WEB_PORT": "127.0.0.1:8001-8016",
        "WEB_REPLICAS": "3",
        "WORKER_REPLICAS": "5",
        "WORKER_QUEUES": "default",
    }
    result = compose("config", overrides=("docker-compose.scale.yml",), env=scaled)
    assert result.returncode == 0, result.stderr

    services = yaml.safe_load(result.stdout)["services"]
    web, worker, proxy, postgres = (services[name] for name in ("web", "worker", "proxy", "postgres"))
    assert (web["scale"], worker["scale"]) == (3, 5)
    # Each web replica is the single-node web service (gunicorn, migrations, healthcheck, settings), reachable
    # on loopback only; the proxy is the one entrance, and it balances over `web` on the compose network.
    assert "gunicorn" in " ".join(web["command"]) and "healthcheck" in web
    assert web["environment"]["DATABASE_URL"].startswith("postgres://")
    assert [port.split(":")[0] for port in web["ports"]] == ["127.0.0.1"]
    assert [port["target"] for port in proxy["ports"]] == [8080] and "healthcheck" in proxy
    (mount,) = proxy["volumes"]
    config_file = ROOT / mount.split(":")[0]
    assert config_file == ROOT / "docker" / "nginx-scale.conf"
    assert "server web:8000" in config_file.read_text()
    assert proxy["depends_on"]["web"]["condition"] == "service_healthy"
    # CPU workers take the queues they are told (here: leave generation to the GPU workers).
    assert worker["environment"]["WORKER_QUEUES"] == "default"
    assert "-Q $${WORKER_QUEUES:-default,generation}" in " ".join(worker["command"])  # read in the container
    # PostgreSQL accepts a connection per gunicorn thread and per Celery process of every replica.
    web_env = services["web"]["environment"]
    connections = 3 * int(web_env["WEB_CONCURRENCY"]) * int(web_env["WEB_THREADS"])
    connections += 5 * int(worker["environment"]["WORKER_CONCURRENCY"])
    settings = dict(arg.split("=", 1) for arg in postgres["command"] if "=" in arg)
    assert int(settings["max_connections"]) >= connections + 10

    defaults = compose("config", overrides=("docker-compose.scale.yml",), env={"WEB_PORT": "127.0.0.1:8001-8016"})
    assert defaults.returncode == 0, defaults.stderr
    services = yaml.safe_load(defaults.stdout)["services"]
    assert (services["web"]["scale"], services["worker"]["scale"]) == (2, 2)
    assert services["worker"]["environment"]["WORKER_QUEUES"] == "default,generation"


@needs_docker_compose
def test_docker_compose_refuses_to_run_without_secret_key(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "\n".join(
            line for line in (ROOT / ".env.example").read_text().splitlines() if not line.startswith("SECRET_KEY=")
        )
    )

    result = compose("config", "-q", env_file=env_file)

    assert result.returncode != 0
    assert "set SECRET_KEY in .env" in result.stderr


def test_celery_app_routes_generation_to_its_own_queue() -> None:
    from evalsite.celery import app

    def queue_of(task_name: str) -> str:
        return app.amqp.router.route({}, task_name, (), {})["queue"].name

    assert queue_of("generation.run_chunk") == "generation"
    assert queue_of("comparisons.anything_else") == "default"
    assert app.conf.task_acks_late is True
    assert app.conf.task_serializer == "json"


def ping_through_broker(env: dict[str, str], timeout: float = 120) -> None:
    """Start a real worker process, then reach it from another process through the broker."""
    node = f"ping-{uuid.uuid4().hex[:8]}@localhost"
    queue = f"ping-{uuid.uuid4().hex[:8]}"  # its own queue: it must take no one else's tasks
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "evalsite", "worker", "-n", node, "-Q", queue]
        + ["--pool", "solo", "--without-mingle", "--without-gossip", "--loglevel", "INFO"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    replies: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and worker.poll() is None:
            result = subprocess.run(
                [sys.executable, "-m", "celery", "-A", "evalsite", "inspect", "ping", "-d", node, "-t", "3", "--json"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if result.returncode == 0 and result.stdout.strip():
                replies = [line for line in result.stdout.splitlines() if line.strip().startswith(("{", "["))]
                if replies and node in json.loads(replies[-1]):
                    break
            replies = []
        assert worker.poll() is None, "the worker exited before answering"
        assert replies, f"no pong from {node} within {timeout:.0f} s"
        assert json.loads(replies[-1])[node] == {"ok": "pong"}
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
        try:
            output, _ = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            output, _ = worker.communicate()
    assert "ready" in output, output


@pytest.mark.slow
@pytest.mark.integration
def test_filesystem_broker_carries_messages_between_processes(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key not in {"CELERY_BROKER_URL", "CELERY_BROKER_DIR"}}
    env["BLINDEVAL_VAR_DIR"] = str(tmp_path)

    ping_through_broker(env)

    # The broadcast went through the shared folder, not through anything in memory.
    assert (tmp_path / "broker" / "control" / "celery.pidbox.exchange").exists()


@pytest.mark.slow
@pytest.mark.integration
@needs_redis_broker
def test_redis_broker_carries_messages_between_processes() -> None:
    ping_through_broker(dict(os.environ))


def _listening_sockets(port: int) -> int:
    """How many sockets listen on this TCP port of 127.0.0.1 (Linux /proc/net/tcp; state 0A is LISTEN)."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for row in rows if row.split()[1] == f"0100007F:{port:04X}" and row.split()[3] == "0A")


def test_gunicorn_workers_each_listen_on_their_own_socket() -> None:
    """With ./gunicorn.conf.py each worker opens its own listening socket (SO_REUSEPORT), so the kernel spreads
    new connections over the workers; on one shared socket a burst of keep-alive connections piled onto the
    worker that woke first."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable, "-m", "gunicorn", "evalsite.wsgi:application", "--bind", f"127.0.0.1:{port}",
        "--workers", "2", "--worker-class", "gthread", "--threads", "2",
    ]  # fmt: skip
    server = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while _listening_sockets(port) < 2 and time.monotonic() < deadline and server.poll() is None:
            time.sleep(0.1)
        assert _listening_sockets(port) == 2
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_gunicorn_refuses_an_address_another_server_listens_on() -> None:
    """Per-worker sockets (SO_REUSEPORT) would let a second server bind the same port and take half its
    connections: the settings' start hook refuses instead, with a message that says why. The other server here
    listens as a gunicorn with these settings does."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "evalsite.wsgi:application", "--bind", f"127.0.0.1:{port}"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            _, errors = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGTERM)
            server.communicate(timeout=30)
            pytest.fail("gunicorn started beside the other server")
    assert server.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in errors and "Another server" in errors


def test_gunicorn_workers_freeze_what_loading_the_site_created() -> None:
    """gunicorn reads ./gunicorn.conf.py from the folder it starts in (the image's WORKDIR, the repo root); its
    worker hook freezes the objects alive once the site is loaded, so a full garbage collection no longer walks
    the quarter of a million objects Django, pandas, scipy and matplotlib leave (a 120-280 ms stall)."""
    from gunicorn.config import Config

    assert Config().settings["config"].default == "./gunicorn.conf.py" and (ROOT / "gunicorn.conf.py").is_file()
    code = (
        "import gc, runpy, django; django.setup(); "
        "hooks = runpy.run_path('gunicorn.conf.py'); hooks['post_worker_init'](None); "
        "print(gc.get_freeze_count(), len(gc.get_objects()))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "evalsite.settings"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    frozen, tracked = map(int, result.stdout.split())
    assert frozen > 100_000 and tracked < 1_000
