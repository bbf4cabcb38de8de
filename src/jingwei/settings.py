"""Settings, every one from the environment (12-factor), with defaults that run locally.

With nothing set, Jingwei runs on SQLite in ``var/`` (WAL mode) with local-memory cache.
Set ``DATABASE_URL=postgres://…`` for PostgreSQL and ``CACHE_URL=redis://…`` for Redis.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import environ

BASE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BASE_DIR.parent.parent

env = environ.Env()
DATA_DIR = Path(env.str("JINGWEI_DATA_DIR", default=str(PROJECT_DIR / "var")))
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """The key from the environment, else one generated once and kept in the data directory."""
    if key := env.str("SECRET_KEY", default=""):
        return key
    path = DATA_DIR / "secret-key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_tasks",
    "django_tasks_db",
    "ninja",
    "jingwei.core",
    "jingwei.org",
    "jingwei.audit",
    "jingwei.notify",
    "jingwei.flows",
    "jingwei.customers",
    "jingwei.tickets",
    "jingwei.catalog",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "jingwei.core.middleware.ApiErrorsMiddleware",
    "jingwei.core.idempotency.IdempotencyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "jingwei.org.middleware.FrozenAccountMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "jingwei.urls"
WSGI_APPLICATION = "jingwei.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# --- database -------------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'jingwei.sqlite3'}"),
}
_db: dict[str, Any] = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    _db.setdefault("OPTIONS", {}).update(
        {
            # IMMEDIATE: a transaction takes the write lock when it starts, so two processes
            # never both read and then fail to upgrade to a writer (SQLITE_BUSY_SNAPSHOT).
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # A file, not memory, so that the worker and timer processes started by tests share it.
    _db["TEST"] = {"NAME": env.str("JINGWEI_TEST_SQLITE", default=str(DATA_DIR / "test.sqlite3"))}
else:
    _db.setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=0))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# A file cache by default, so the web workers, the worker and the timer loop share login throttling;
# Redis (CACHE_URL=redis://…) in production.
CACHES = {"default": env.cache("CACHE_URL", default=f"filecache://{DATA_DIR / 'cache'}")}

# --- background work ------------------------------------------------------------------------
TASKS = {
    "default": {
        # The job is a row written in the caller's transaction: a rollback takes it away.
        "BACKEND": "django_tasks_db.DatabaseBackend",
    }
}
TIMER_BATCH = env.int("TIMER_BATCH", default=100)
TIMER_INTERVAL = env.float("TIMER_INTERVAL", default=1.0)
TIMER_MAX_ATTEMPTS = env.int("TIMER_MAX_ATTEMPTS", default=5)
# Notification delivery: batch per loop turn, attempts before a delivery is dead, the first retry
# delay (doubling each time, capped at an hour) and how long a sender owns a claimed delivery.
NOTIFY_BATCH = env.int("NOTIFY_BATCH", default=100)
NOTIFY_MAX_ATTEMPTS = env.int("NOTIFY_MAX_ATTEMPTS", default=5)
NOTIFY_RETRY_BASE_SECONDS = env.int("NOTIFY_RETRY_BASE_SECONDS", default=30)
NOTIFY_LEASE_SECONDS = env.int("NOTIFY_LEASE_SECONDS", default=120)

# --- auth -----------------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = ["jingwei.org.auth.ThrottledModelBackend"]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_MAX_FAILURES = env.int("LOGIN_MAX_FAILURES", default=5)
LOGIN_LOCKOUT_SECONDS = env.int("LOGIN_LOCKOUT_SECONDS", default=900)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# --- export guard (audit) -------------------------------------------------------------------
EXPORT_GUARD_MAX_ROWS = env.int("EXPORT_GUARD_MAX_ROWS", default=5000)
EXPORT_GUARD_WINDOW_SECONDS = env.int("EXPORT_GUARD_WINDOW_SECONDS", default=3600)

# --- API ------------------------------------------------------------------------------------
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=1024 * 1024)
API_MAX_UPLOAD_BYTES = env.int("API_MAX_UPLOAD_BYTES", default=25 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
IDEMPOTENCY_TTL_SECONDS = env.int("IDEMPOTENCY_TTL_SECONDS", default=24 * 3600)
IDEMPOTENCY_STALE_SECONDS = env.int("IDEMPOTENCY_STALE_SECONDS", default=60)
NINJA_PAGINATION_PER_PAGE = 50
NINJA_PAGINATION_MAX_LIMIT = 500

# --- i18n and time --------------------------------------------------------------------------
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
TIME_ZONE = env.str("TIME_ZONE", default="Asia/Shanghai")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(PROJECT_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
MEDIA_ROOT = DATA_DIR / "media"
# Attachments go to an S3-compatible bucket (django-storages) when a bucket is named.
if env.str("STORAGE_S3_BUCKET", default=""):
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env.str("STORAGE_S3_BUCKET"),
            "endpoint_url": env.str("STORAGE_S3_ENDPOINT", default="") or None,
            "access_key": env.str("STORAGE_S3_ACCESS_KEY", default="") or None,
            "secret_key": env.str("STORAGE_S3_SECRET_KEY", default="") or None,
            "region_name": env.str("STORAGE_S3_REGION", default="") or None,
            "querystring_auth": True,
        },
    }

# --- tickets --------------------------------------------------------------------------------
# Where customers open progress pages and public forms (links in mails and QR codes).
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000")
PUBLIC_FORM_RATE_LIMIT = env.int("PUBLIC_FORM_RATE_LIMIT", default=10)
PUBLIC_FORM_RATE_WINDOW = env.int("PUBLIC_FORM_RATE_WINDOW", default=60)
TICKET_ATTACHMENT_MAX_BYTES = env.int("TICKET_ATTACHMENT_MAX_BYTES", default=20 * 1024 * 1024)

# --- mail -----------------------------------------------------------------------------------
# Outgoing mail (ticket replies): EMAIL_URL=smtp://user:pass@host:587 (django-environ form).
vars().update(env.email_url("EMAIL_URL", default="smtp://127.0.0.1:25"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="service@jingwei.local")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
