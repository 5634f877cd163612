"""Mockup Studio settings: one file, read from the environment.

With nothing configured the site runs in its embedded default: SQLite, an in-process
Dramatiq worker, the in-memory channel layer and the tiny engine, all under ``DATA_DIR``.
Production sets ``DATABASE_URL`` (PostgreSQL) and ``REDIS_URL`` (broker and channel layer).
Every value that is a secret may also be read from a file named by ``<NAME>_FILE``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


# -- typed helpers that fail loudly on bad values ------------------------------------------


def env_str(name: str, default: str = "") -> str:
    """A string from ``NAME``, or from the file named by ``NAME_FILE``."""
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        try:
            return Path(file_path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_path!r} cannot be read: {exc}") from exc
    return os.environ.get(name) or default  # set-but-empty counts as unset


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from exc
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def database_from_url(url: str) -> dict[str, object]:
    """``sqlite:///path`` or ``postgres://user:pass@host:port/name?sslmode=...``."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path[1:] if parsed.path.startswith("//") else parsed.path) or ":memory:"
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": path}
    if parsed.scheme in {"postgres", "postgresql", "pgsql"}:
        options = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")),
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            "OPTIONS": options,
            # 0 under ASGI: Django's async views run in a pool of threads, and persistent
            # connections would pile up per thread; put PgBouncer in front for pooling.
            "CONN_MAX_AGE": env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0),
            "CONN_HEALTH_CHECKS": True,
        }
    raise ImproperlyConfigured(f"DATABASE_URL scheme {parsed.scheme!r} is not supported (sqlite or postgres)")


# -- where things live ---------------------------------------------------------------------

DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        return key
    # Embedded default: a key made once and kept beside the data, so sessions survive restarts.
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# -- apps ----------------------------------------------------------------------------------

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "mockups.accounts",
    "mockups.catalog",
    "mockups.jobs",
    "mockups.fleet",
    "mockups.api",
    "mockups.web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "mockups.web.middleware.DomainErrorPages",
]

ROOT_URLCONF = "mockups.urls"
ASGI_APPLICATION = "mockups.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "mockups.web.context_processors.engine",
            ],
        },
    },
]

# -- database ------------------------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'mockups.sqlite3'}")
DATABASES = {"default": database_from_url(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several threads (web, in-process worker) write to one file: wait for the lock, never fail.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL;",
    }
DATABASES["default"]["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME") or None}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# -- queues and channels -------------------------------------------------------------------

REDIS_URL = env_str("REDIS_URL")
# The broker may be Redis (default when REDIS_URL is set) or RabbitMQ (amqp://...).
BROKER_URL = env_str("BROKER_URL", REDIS_URL)
# In the embedded default the web process runs the Dramatiq worker itself.
EMBEDDED_WORKER = env_bool("EMBEDDED_WORKER", not BROKER_URL)
CHANNEL_REDIS_URL = env_str("CHANNEL_REDIS_URL", REDIS_URL)

if CHANNEL_REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # A read timeout longer than the layer's 5 s blocking receive (redis-py 8 defaults to 5 s).
                "hosts": [{"address": CHANNEL_REDIS_URL, "socket_timeout": 30}],
                "prefix": env_str("CHANNEL_PREFIX", "mockups"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

QUEUE_NAMESPACE = env_str("QUEUE_NAMESPACE", "mockups")  # Redis key namespace, so tests can share a Redis
# How long a worker may go silent before Redis hands its unfinished messages to another worker.
BROKER_HEARTBEAT_TIMEOUT_MS = env_int("BROKER_HEARTBEAT_TIMEOUT_MS", 60_000, minimum=1000)
BROKER_MAINTENANCE_CHANCE = env_int("BROKER_MAINTENANCE_CHANCE", 1000, minimum=0)

# -- auth ----------------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "web:login"
LOGIN_REDIRECT_URL = "web:studio"
LOGOUT_REDIRECT_URL = "web:login"

# -- i18n ----------------------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# -- static and media ----------------------------------------------------------------------

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(DATA_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(DATA_DIR / "media")))
MEDIA_URL = "/media/"
STORAGES = {
    "default": {
        "BACKEND": env_str("STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"),
    },
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG and env_bool("STATIC_COLLECTED", False)
        else "django.contrib.staticfiles.storage.StaticFilesStorage",
    },
}
WHITENOISE_USE_FINDERS = True
# Signed media URLs stay valid this long (seconds).
MEDIA_URL_MAX_AGE = env_int("MEDIA_URL_MAX_AGE", 24 * 3600, minimum=60)

# -- uploads -------------------------------------------------------------------------------

UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 25 * 1024 * 1024, minimum=1024)
UPLOAD_MAX_PIXELS = env_int("UPLOAD_MAX_PIXELS", 50_000_000, minimum=10_000)
UPLOAD_MAX_SIDE = env_int("UPLOAD_MAX_SIDE", 12_000, minimum=64)
UPLOAD_MIN_SIDE = env_int("UPLOAD_MIN_SIDE", 64, minimum=1)
# Django spools larger request bodies to disk; keep the request cap just above the image cap.
DATA_UPLOAD_MAX_MEMORY_SIZE = UPLOAD_MAX_BYTES + 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# -- engine and models ---------------------------------------------------------------------

# "tiny" (random-weight demo models built locally) or "sdxl" (configured weights).
MOCKUP_ENGINE = env_str("MOCKUP_ENGINE", "tiny")
if MOCKUP_ENGINE not in {"tiny", "sdxl"}:
    raise ImproperlyConfigured(f"MOCKUP_ENGINE={MOCKUP_ENGINE!r} must be 'tiny' or 'sdxl'")
MODELS_DIR = Path(env_str("MODELS_DIR", str(DATA_DIR / "models")))
TINY_MODELS_DIR = Path(env_str("TINY_MODELS_DIR", str(MODELS_DIR / "tiny")))
SDXL_BASE_MODEL = env_str("SDXL_BASE_MODEL", "stabilityai/stable-diffusion-xl-base-1.0")
SDXL_CONTROLNET_MODEL = env_str("SDXL_CONTROLNET_MODEL", "diffusers/controlnet-canny-sdxl-1.0")
MODEL_DTYPE = env_str("MODEL_DTYPE", "auto")  # auto, fp16, bf16, fp32
ENGINE_COMPILE = env_bool("ENGINE_COMPILE", False)  # torch.compile the UNet and ControlNet (CUDA)
# Compiled kernels and autotuning results outlive the worker (torch's default is under /tmp), so a
# restarted GPU worker with ENGINE_COMPILE loads them instead of compiling for minutes again.
COMPILE_CACHE_DIR = Path(env_str("TORCHINDUCTOR_CACHE_DIR", str(DATA_DIR / "cache" / "torch-compile")))
os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(COMPILE_CACHE_DIR)
REMBG_MODEL_DIR = Path(env_str("REMBG_MODEL_DIR", str(MODELS_DIR / "rembg")))
REMBG_MODEL = env_str("REMBG_MODEL", "u2net")
GPU_HOURLY_PRICE = env_float("GPU_HOURLY_PRICE", 2.50)
# Weights are loaded from local folders or the local hub cache only, never fetched on a request.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("U2NET_HOME", str(REMBG_MODEL_DIR))

# -- jobs ----------------------------------------------------------------------------------

JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 3, minimum=1)
MERCHANT_MAX_ACTIVE_JOBS = env_int("MERCHANT_MAX_ACTIVE_JOBS", 10, minimum=1)
JOB_TIME_LIMIT_S = env_int("JOB_TIME_LIMIT_S", 15 * 60, minimum=10)
JOB_MAX_AGE_S = env_int("JOB_MAX_AGE_S", 24 * 3600, minimum=60)
# A running job holds a lease it renews while it works; a dead worker's lease runs out after this.
JOB_LEASE_S = env_int("JOB_LEASE_S", 60, minimum=2)
REMBG_ALLOW_FALLBACK = env_bool("REMBG_ALLOW_FALLBACK", True)

# -- security in production ----------------------------------------------------------------

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY", False) else None
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# -- operators -----------------------------------------------------------------------------

# The largest LoRA file an operator may upload (SDXL LoRAs run from ~10 MB to ~1 GB).
LORA_MAX_BYTES = env_int("LORA_MAX_BYTES", 1024 * 1024 * 1024, minimum=1024)
# How often each GPU worker reports itself (and picks up LoRA preload requests), and how long a
# worker may stay silent before the admin's health page counts it as gone.
FLEET_HEARTBEAT_S = env_float("FLEET_HEARTBEAT_S", 5.0)
FLEET_WORKER_STALE_S = env_int("FLEET_WORKER_STALE_S", 30, minimum=2)

# -- API and webhooks --

# The public origin used in absolute URLs the API hands out (outputs, urls.get, next pages), e.g.
# https://mockups.example.com; empty: taken from each request's Host (checked against ALLOWED_HOSTS).
API_BASE_URL = env_str("API_BASE_URL").rstrip("/")
API_PAGE_SIZE = env_int("API_PAGE_SIZE", 20, minimum=1)
# Files uploaded to /v1/files can be used as inputs for this long (seconds).
API_FILE_MAX_AGE_S = env_int("API_FILE_MAX_AGE_S", 24 * 3600, minimum=60)
# Webhook targets on loopback, private, link-local or reserved addresses are refused unless allowed
# here: a webhook must never become a way to reach the operator's internal network.
WEBHOOK_ALLOW_PRIVATE_TARGETS = env_bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", False)
WEBHOOK_TIMEOUT_S = env_float("WEBHOOK_TIMEOUT_S", 10.0)
# Intermediate events (output, logs) go out at most once per this many milliseconds per job.
WEBHOOK_THROTTLE_MS = env_int("WEBHOOK_THROTTLE_MS", 500, minimum=0)
# The final ("completed") event is retried with exponential backoff until a 2xx, this many times in all.
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 10, minimum=1)
WEBHOOK_RETRY_MIN_BACKOFF_MS = env_int("WEBHOOK_RETRY_MIN_BACKOFF_MS", 2000, minimum=1)
WEBHOOK_RETRY_MAX_BACKOFF_MS = env_int("WEBHOOK_RETRY_MAX_BACKOFF_MS", 15 * 60 * 1000, minimum=1)
