"""Settings come from the environment, with defaults that need no server.

Each case loads the settings in a fresh Python process with a crafted
environment, exactly as `manage.py`, gunicorn or a Celery worker would.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_FILE = ROOT / "evalsite" / "settings.py"

_ENV_READ = re.compile(
    r"""(?:os\.environ\.get|os\.getenv|env_bool|env_list|env_int|env_str|env_path)\(\s*["']([A-Z][A-Z0-9_]*)["']"""
)

PROBE = """
import json, django
django.setup()
from django.conf import settings
db = settings.DATABASES["default"]
print(json.dumps({
    "DEBUG": settings.DEBUG,
    "SECRET_KEY": settings.SECRET_KEY,
    "ALLOWED_HOSTS": settings.ALLOWED_HOSTS,
    "MEDIA_ROOT": str(settings.MEDIA_ROOT),
    "STATIC_ROOT": str(settings.STATIC_ROOT),
    "db": {k: db.get(k) for k in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")},
    "db_options": db.get("OPTIONS", {}),
    "session_engine": settings.SESSION_ENGINE,
    "cache_backend": settings.CACHES["default"]["BACKEND"],
    "db_test_name": (db.get("TEST") or {}).get("NAME"),
    "broker": settings.CELERY_BROKER_URL,
    "broker_options": settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    "session_cookie_secure": settings.SESSION_COOKIE_SECURE,
    "staticfiles_backend": settings.STORAGES["staticfiles"]["BACKEND"],
}))
"""


def env_names_read_by_settings() -> set[str]:
    return set(_ENV_READ.findall(SETTINGS_FILE.read_text()))


def clean_env(var_dir: Path, **overrides: str) -> dict[str, str]:
    """The current environment minus everything the settings read, plus overrides."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in env_names_read_by_settings() and not key.startswith(("CELERY_", "BLINDEVAL_", "DJANGO_"))
    }
    env["DJANGO_SETTINGS_MODULE"] = "evalsite.settings"
    env["BLINDEVAL_VAR_DIR"] = str(var_dir)
    env.update(overrides)
    return env


def run_probe(var_dir: Path, **overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=clean_env(var_dir, **overrides),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def load_settings(var_dir: Path, **overrides: str) -> dict[str, Any]:
    result = run_probe(var_dir, **overrides)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_defaults_need_no_server(tmp_path: Path) -> None:
    loaded = load_settings(tmp_path)

    assert loaded["DEBUG"] is True
    assert loaded["SECRET_KEY"]  # a development key, never empty
    assert loaded["db"]["ENGINE"] == "django.db.backends.sqlite3"
    assert loaded["db"]["NAME"] == str(tmp_path / "db.sqlite3")
    assert loaded["db_test_name"] == str(tmp_path / "test-db.sqlite3")
    assert loaded["MEDIA_ROOT"] == str(tmp_path / "media")
    assert set(loaded["ALLOWED_HOSTS"]) >= {"localhost", "127.0.0.1"}
    # The embedded broker: kombu's filesystem transport in the var dir,
    # which the web process and every local worker share.
    assert loaded["broker"] == "filesystem://"
    options = loaded["broker_options"]
    assert options["data_folder_in"] == options["data_folder_out"] == str(tmp_path / "broker" / "queue")
    assert options["control_folder"] == str(tmp_path / "broker" / "control")


def test_database_url_postgres_is_parsed(tmp_path: Path) -> None:
    loaded = load_settings(tmp_path, DATABASE_URL="postgres://rater:s3cret@db.internal:6543/blindeval_prod")

    assert loaded["db"] == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "blindeval_prod",
        "USER": "rater",
        "PASSWORD": "s3cret",
        "HOST": "db.internal",
        "PORT": 6543,
    }


def test_postgres_prepares_statements_unless_told_not_to(tmp_path: Path) -> None:
    url = "postgres://rater:s3cret@db.internal:6543/blindeval_prod"
    prepared = load_settings(tmp_path, DATABASE_URL=url)["db_options"]
    assert prepared == {"server_side_binding": True, "prepare_threshold": 5}
    # Behind a transaction-mode pooler: client-side binding, nothing prepared.
    assert load_settings(tmp_path, DATABASE_URL=url, DATABASE_PREPARED_STATEMENTS="0")["db_options"] == {}


def test_the_cache_uses_redis_when_it_is_configured_and_sessions_stay_in_the_database(tmp_path: Path) -> None:
    embedded = load_settings(tmp_path)
    assert embedded["session_engine"] == "comparisons.sessions"
    assert embedded["cache_backend"] == "django.core.cache.backends.filebased.FileBasedCache"
    served = load_settings(tmp_path, CACHE_URL="redis://cache.internal:6379/1")
    assert served["session_engine"] == "comparisons.sessions"  # read with the user, in one statement
    assert served["cache_backend"] == "evalsite.cache.RedisCache"


def test_database_url_sqlite_path_is_parsed(tmp_path: Path) -> None:
    db_file = tmp_path / "elsewhere" / "study.sqlite3"
    loaded = load_settings(tmp_path, DATABASE_URL=f"sqlite:///{db_file}")

    assert loaded["db"]["ENGINE"] == "django.db.backends.sqlite3"
    assert loaded["db"]["NAME"] == str(db_file)


def test_redis_broker_url(tmp_path: Path) -> None:
    loaded = load_settings(tmp_path, CELERY_BROKER_URL="redis://cache.internal:6379/2", CELERY_VISIBILITY_TIMEOUT="900")

    assert loaded["broker"] == "redis://cache.internal:6379/2"
    assert loaded["broker_options"] == {"visibility_timeout": 900}


def test_production_refuses_to_start_without_secret_key(tmp_path: Path) -> None:
    result = run_probe(tmp_path, DEBUG="0")

    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_manage_py_without_secret_key_in_production_says_why(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=clean_env(tmp_path, DEBUG="false"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode != 0
    assert "Configuration error: SECRET_KEY must be set when DEBUG is off" in result.stderr
    assert "Traceback" not in result.stderr


def test_production_settings_with_secret_key(tmp_path: Path) -> None:
    loaded = load_settings(tmp_path, DEBUG="off", SECRET_KEY="x" * 50, ALLOWED_HOSTS="eval.example.org")

    assert loaded["DEBUG"] is False
    assert loaded["SECRET_KEY"] == "x" * 50
    assert loaded["ALLOWED_HOSTS"] == ["eval.example.org"]
    assert loaded["session_cookie_secure"] is True
    # Static files are hashed and compressed, then served by whitenoise.
    assert loaded["staticfiles_backend"] == "whitenoise.storage.CompressedManifestStaticFilesStorage"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("Yes", True), ("ON", True), ("0", False), ("false", False), ("no", False)],
)
def test_booleans_are_read_in_every_spelling(monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    # The settings' own reader, in this process (a fresh interpreter per spelling cost 4 s each); the test
    # below reads one through a real start-up.
    from evalsite.settings import env_bool

    monkeypatch.setenv("BLINDEVAL_TEST_BOOLEAN", raw)
    assert env_bool("BLINDEVAL_TEST_BOOLEAN", not expected) is expected


def test_debug_is_read_from_the_environment_at_start_up(tmp_path: Path) -> None:
    assert load_settings(tmp_path, DEBUG="Yes", SECRET_KEY="k" * 50)["DEBUG"] is True
    assert load_settings(tmp_path, DEBUG="off", SECRET_KEY="k" * 50)["DEBUG"] is False


def test_bad_boolean_is_refused_with_its_name(tmp_path: Path) -> None:
    result = run_probe(tmp_path, DEBUG="maybe")

    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def test_bad_integer_is_refused_with_its_name(tmp_path: Path) -> None:
    result = run_probe(tmp_path, DATABASE_CONN_MAX_AGE="forever")

    assert result.returncode != 0
    assert "DATABASE_CONN_MAX_AGE='forever' is not an integer" in result.stderr


def test_allowed_hosts_and_media_root(tmp_path: Path) -> None:
    media = tmp_path / "checkpoints-volume"
    loaded = load_settings(tmp_path, ALLOWED_HOSTS=" eval.example.org, localhost ,,", MEDIA_ROOT=str(media))

    assert loaded["ALLOWED_HOSTS"] == ["eval.example.org", "localhost"]
    assert loaded["MEDIA_ROOT"] == str(media)


def test_every_environment_variable_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    names = env_names_read_by_settings()
    assert {"DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "MEDIA_ROOT"} <= names

    undocumented = sorted(name for name in names if f"`{name}`" not in readme)
    assert not undocumented, f"add these settings to the README's configuration table: {undocumented}"


def test_deploy_checks_are_clean_with_production_settings(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=clean_env(tmp_path, DEBUG="0", SECRET_KEY="p" * 20 + "-Xq9!zR2#vL7" * 4, ALLOWED_HOSTS="eval.example.org"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def readme_configuration_table() -> dict[str, tuple[str, str]]:
    """{variable: (default cell, meaning cell)} from the README's configuration table."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \| (.*?) \| (.*) \|$", section, flags=re.MULTILINE)
    return {name: (default, meaning) for name, default, meaning in rows}


def defaults_in_settings_code() -> dict[str, list[str]]:
    """{variable: [its default as the README would write it, per place settings.py reads it]}, for defaults that
    are constants (or arithmetic on them) or another setting's name."""
    found: dict[str, list[str]] = {}
    for node in ast.walk(ast.parse(SETTINGS_FILE.read_text())):
        if not isinstance(node, ast.Call) or len(node.args) < 2 or not isinstance(node.args[0], ast.Constant):
            continue
        name = node.args[0].value
        if not isinstance(name, str) or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            continue
        function = ast.unparse(node.func)
        if function not in {"env_int", "env_bool", "env_list", "os.environ.get"}:
            continue
        expression = node.args[1]
        if isinstance(expression, ast.Name):
            found.setdefault(name, []).append(expression.id)
            continue
        try:
            value = eval(compile(ast.Expression(expression), "settings", "eval"), {"__builtins__": {}})  # noqa: S307
        except Exception:  # noqa: BLE001, S112 - a default computed from the environment (paths, URLs)
            continue
        if isinstance(value, bool):
            written = "1" if value else "0"
        elif isinstance(value, list):
            written = ",".join(value)
        else:
            written = str(value)
        found.setdefault(name, []).append(written)
    return found


def test_the_readme_configuration_table_states_the_real_defaults() -> None:
    documented = readme_configuration_table()
    in_code = defaults_in_settings_code()
    compared = []
    for name, defaults in sorted(in_code.items()):
        assert name in documented, f"{name} is read by the settings but missing from the README's table"
        cell = documented[name][0]
        shown = re.match(r"`([^`]*)`", cell)
        if shown is not None:
            assert set(defaults) == {shown.group(1)}, f"README says {name} defaults to {cell}; settings.py: {defaults}"
        elif cell.startswith("empty"):
            assert set(defaults) == {""}, f"README says {name} defaults to {cell}; settings.py: {defaults}"
        else:
            continue  # described in words (e.g. SECRET_KEY's development key)
        compared.append(name)
    assert {"RATE_LIMIT_JOIN", "RATE_LIMIT_VOTE", "API_MAX_BODY_BYTES", "MIN_SECONDS_PER_VOTE"} <= set(compared)
    # What the rate limits count, as the abuse limits apply them.
    assert "per client IP address" in documented["RATE_LIMIT_JOIN"][1]
    assert "per rater" in documented["RATE_LIMIT_VOTE"][1]


def test_the_readme_names_only_the_browser_tooling_the_tests_use() -> None:
    # The browser tests drive Debian's chromium with Playwright (tests/browser.py): no WebDriver.
    assert "Playwright" in (ROOT / "README.md").read_text()
    for path in (ROOT / "README.md", ROOT / ".ci" / "run"):
        assert "chromium-driver" not in path.read_text(), path
