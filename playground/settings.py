"""Settings for the playground project.

Every value comes from the environment (or an optional ``.env`` file at the repository root);
``.env.example`` documents each variable. The defaults are the embedded ones: a SQLite file under
``data/``, the in-memory channel layer, and no external service, so ``make run`` works on a bare
machine. Production is ``DJANGO_DEBUG=0`` and then a real ``DJANGO_SECRET_KEY`` is required.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

from playground.layers import redis_channel_layer
from providers.config import openai_compatible_from_env, providers_from_file

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DATA_DIR = Path(env.str("DATA_DIR", default=str(BASE_DIR / "data")))
DATA_DIR.mkdir(parents=True, exist_ok=True)

# --- Core -------------------------------------------------------------------------------------
DEBUG: bool = env.bool("DJANGO_DEBUG", default=True)


def _secret_key() -> str:
    """The configured secret key; in DEBUG a random one kept in the data directory."""
    key = env.str("DJANGO_SECRET_KEY", default="")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Production (DJANGO_DEBUG=0) needs a long random "
            'secret key, e.g. python -c "import secrets; print(secrets.token_urlsafe(50))".'
        )
    path = DATA_DIR / "dev-secret-key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()

ALLOWED_HOSTS: list[str] = env.list(
    "ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"]
)
HOST: str = env.str("HOST", default="127.0.0.1")
PORT: int = env.int("PORT", default=3001)

INSTALLED_APPS = [
    "playground.apps.DaphneConfig",  # daphne (runserver) without importing its server
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "corsheaders",
    "channels",
    # Serves Swagger UI's assets for /docs from our static files, not from a CDN.
    "ninja",
    "accounts",
    "providers",
    "comparisons",
    "arena",
    "axes",  # admin login throttling
    "web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before WhiteNoise's: streams its files to the ASGI server in blocks read off the loop.
    "playground.static_files.AsyncFileResponses",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its 429 response.
    "axes.middleware.AxesMiddleware",
]

# django-axes first: it refuses a locked-out client before the password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Admin login throttling: after this many failed logins from one client address, that address is
# refused (429) for the cool-off, even with the right password. REMOTE_ADDR is the client's own
# address (or X-Forwarded-For's with `serve --proxy-headers`).
AXES_FAILURE_LIMIT: int = env.int("ADMIN_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("ADMIN_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False  # no banner on every manage.py command; lockouts are still logged

ROOT_URLCONF = "playground.urls"
ASGI_APPLICATION = "playground.asgi.application"
WSGI_APPLICATION = None

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

# --- Database ---------------------------------------------------------------------------------
DATABASE_URL: str = (
    env.str("DATABASE_URL", default="") or f"sqlite:///{DATA_DIR / 'playground.sqlite3'}"
)
DATABASES: dict[str, dict[str, Any]] = {"default": environ.Env.db_url_config(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + IMMEDIATE transactions: concurrent writers wait instead of failing "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
# Persistent connections: a new PostgreSQL connection per unit of work costs ~10-20 ms, which the
# benchmark saw as time-to-first-token (the comparison row is written before streams start).
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channel layer ----------------------------------------------------------------------------
REDIS_URL: str = env.str("REDIS_URL", default="")
CHANNEL_LAYERS: dict[str, dict[str, Any]]
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": redis_channel_layer(
            REDIS_URL,
            capacity=env.int("CHANNEL_LAYER_CAPACITY", default=10_000),
            expiry=env.int("CHANNEL_LAYER_EXPIRY", default=120),
            prefix=env.str("CHANNEL_LAYER_PREFIX", default="playground"),
        )
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": env.int("CHANNEL_LAYER_CAPACITY", default=10_000)},
        }
    }

# --- HTTP: CORS, security ---------------------------------------------------------------------
CORS_ORIGIN: list[str] = env.list("CORS_ORIGIN", default=["http://localhost:3000"])
CORS_ALLOW_ALL_ORIGINS = "*" in CORS_ORIGIN
CORS_ALLOWED_ORIGINS = [origin for origin in CORS_ORIGIN if origin != "*"]
CORS_ALLOW_CREDENTIALS = True
CORS_EXPOSE_HEADERS = ["Link"]
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Behind a proxy that sets X-Forwarded-Proto and X-Forwarded-For (replacing what clients send):
# Django takes https from the first, `manage.py serve` (daphne) the client address from both.
# Off, any client could claim https or another address with these headers.
TRUST_X_FORWARDED_PROTO: bool = env.bool("TRUST_X_FORWARDED_PROTO", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUST_X_FORWARDED_PROTO else None
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
# Load balancers probe the health endpoints over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^$", r"^health/"]
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG

# --- Static files (the admin, the playground page) -----------------------------------------------------------------
STATIC_URL = "static/"
# Outside DEBUG, collected (hashed, compressed) files: the Docker build collects them, `manage.py
# serve` whenever they are missing or older than their sources.
STATIC_ROOT = Path(env.str("STATIC_ROOT", default="") or BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Logging ----------------------------------------------------------------------------------
LOG_LEVEL: str = env.str("LOG_LEVEL", default="INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"level": LOG_LEVEL, "propagate": True},
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

# --- Clerk authentication (accounts) ----------------------------------------------------------
CLERK_PUBLISHABLE_KEY: str = env.str("CLERK_PUBLISHABLE_KEY", default="")
CLERK_SECRET_KEY: str = env.str("CLERK_SECRET_KEY", default="")
CLERK_JWT_KEY: str = env.str("CLERK_JWT_KEY", default="")
CLERK_ISSUER: str = env.str("CLERK_ISSUER", default="")
CLERK_AUTHORIZED_PARTIES: list[str] = env.list("CLERK_AUTHORIZED_PARTIES", default=[])
CLERK_API_URL: str = env.str("CLERK_API_URL", default="https://api.clerk.com")
CLERK_JWKS_CACHE_SECONDS: int = env.int("CLERK_JWKS_CACHE_SECONDS", default=300)
CLERK_CLOCK_SKEW_SECONDS: int = env.int("CLERK_CLOCK_SKEW_SECONDS", default=5)
WS_AUTH_TIMEOUT_SECONDS: float = env.float("WS_AUTH_TIMEOUT_SECONDS", default=10.0)
# Open-socket caps per server process (accounts/limits.py; over a limit: error + close 4429).
WS_MAX_UNAUTHENTICATED_PER_CLIENT: int = env.int("WS_MAX_UNAUTHENTICATED_PER_CLIENT", default=10)
WS_MAX_UNAUTHENTICATED: int = env.int("WS_MAX_UNAUTHENTICATED", default=100)
WS_MAX_SOCKETS_PER_USER: int = env.int("WS_MAX_SOCKETS_PER_USER", default=20)
# Lifetime of the development tokens the playground page fetches (DEBUG, no Clerk key); the page
# replaces each one well before it expires.
PLAYGROUND_DEV_TOKEN_TTL_SECONDS: int = env.int("PLAYGROUND_DEV_TOKEN_TTL_SECONDS", default=300)

# --- AI providers -----------------------------------------------------------------------------
# Configured like CACHES: alias -> {"BACKEND": dotted path, "OPTIONS": {...}}.
AI_PROVIDERS: dict[str, dict[str, Any]] = {
    "anthropic": {
        "BACKEND": "providers.backends.anthropic.AnthropicProvider",
        "OPTIONS": {
            "api_key": env.str("ANTHROPIC_API_KEY", default=""),
            "base_url": env.str("ANTHROPIC_BASE_URL", default="") or None,
            "default_model": env.str("ANTHROPIC_MODEL", default="claude-sonnet-4-6"),
            "timeout": env.float("ANTHROPIC_TIMEOUT", default=60.0),
            "max_retries": env.int("ANTHROPIC_MAX_RETRIES", default=2),
            "allowed_models": env.list("ANTHROPIC_ALLOWED_MODELS", default=[]),
        },
    },
    "google": {
        "BACKEND": "providers.backends.google.GeminiProvider",
        "OPTIONS": {
            "api_key": env.str("GOOGLE_GEMINI_API_KEY", default=""),
            "base_url": env.str("GOOGLE_GEMINI_BASE_URL", default="") or None,
            "default_model": env.str("GOOGLE_GEMINI_MODEL", default="gemini-2.5-flash"),
            "timeout": env.float("GOOGLE_GEMINI_TIMEOUT", default=60.0),
            "max_retries": env.int("GOOGLE_GEMINI_MAX_RETRIES", default=2),
            "allowed_models": env.list("GOOGLE_GEMINI_ALLOWED_MODELS", default=[]),
        },
    },
    "openai": {
        "BACKEND": "providers.backends.openai.OpenAIProvider",
        "OPTIONS": {
            "api_key": env.str("OPENAI_API_KEY", default=""),
            "base_url": env.str("OPENAI_BASE_URL", default="") or None,
            "default_model": env.str("OPENAI_MODEL", default="gpt-4.1-mini"),
            "timeout": env.float("OPENAI_TIMEOUT", default=60.0),
            "max_retries": env.int("OPENAI_MAX_RETRIES", default=2),
            "allowed_models": env.list("OPENAI_ALLOWED_MODELS", default=[]),
        },
    },
    "demo": {
        "BACKEND": "providers.backends.demo.DemoProvider",
        "OPTIONS": {
            "tokens_per_second": env.float("DEMO_TOKENS_PER_SECOND", default=40.0),
            "first_token_delay": env.float("DEMO_FIRST_TOKEN_DELAY", default=0.35),
        },
    },
}
# Operators' own aliases (OpenAI-compatible servers: Ollama, vLLM, OpenRouter…), see
# providers/config.py: OPENAI_COMPATIBLE=<alias,…> with <ALIAS>_BASE_URL etc., and/or a TOML file.
AI_PROVIDERS.update(openai_compatible_from_env(os.environ, taken=AI_PROVIDERS))
AI_PROVIDERS_FILE: str = env.str("AI_PROVIDERS_FILE", default="")
if AI_PROVIDERS_FILE:
    AI_PROVIDERS.update(providers_from_file(AI_PROVIDERS_FILE, os.environ, taken=AI_PROVIDERS))
# Optional JSON file of model prices that overrides/extends the shipped providers/prices.json.
AI_MODEL_PRICES_FILE: str = env.str("AI_MODEL_PRICES_FILE", default="")
# How long each provider's live models list (its vendor's models API) is cached, in seconds.
AI_MODELS_CACHE_SECONDS: float = env.float("AI_MODELS_CACHE_SECONDS", default=600.0)
PROVIDER_FIRST_TOKEN_TIMEOUT: float = env.float("PROVIDER_FIRST_TOKEN_TIMEOUT", default=60.0)
PROVIDER_IDLE_TIMEOUT: float = env.float("PROVIDER_IDLE_TIMEOUT", default=30.0)
# Whether a serving process imports every provider's SDK (and numpy, for the leaderboard) at start
# (in a thread, ~2 s of CPU) so that no first use imports one on the event loop. Off, each SDK
# loads on its provider's first use, numpy on the first leaderboard fit.
PROVIDER_PRELOAD: bool = env.bool("PROVIDER_PRELOAD", default=True)

# --- Comparisons ------------------------------------------------------------------------------
PLAYGROUND_MAX_PROMPT_CHARS: int = env.int("PLAYGROUND_MAX_PROMPT_CHARS", default=32_000)
PLAYGROUND_MAX_MODELS: int = env.int("PLAYGROUND_MAX_MODELS", default=6)
PLAYGROUND_MAX_RUNNING_PER_USER: int = env.int("PLAYGROUND_MAX_RUNNING_PER_USER", default=3)
PLAYGROUND_MAX_STARTS_PER_MINUTE: int = env.int("PLAYGROUND_MAX_STARTS_PER_MINUTE", default=20)
PLAYGROUND_FLUSH_INTERVAL: float = env.float("PLAYGROUND_FLUSH_INTERVAL", default=1.0)
PLAYGROUND_HEARTBEAT_STALE_SECONDS: float = env.float(
    "PLAYGROUND_HEARTBEAT_STALE_SECONDS", default=15.0
)
WS_MAX_FRAME_BYTES: int = env.int("WS_MAX_FRAME_BYTES", default=256 * 1024)
# Bytes a WebSocket may have queued but unsent before it is closed (4008): a client that does
# not read must not grow the server's memory.
WS_MAX_OUTBOUND_BUFFER_BYTES: int = env.int("WS_MAX_OUTBOUND_BUFFER_BYTES", default=8 * 1024 * 1024)
PLAYGROUND_MAX_WATCHES_PER_10_SECONDS: int = env.int(
    "PLAYGROUND_MAX_WATCHES_PER_10_SECONDS", default=20
)
# Open model streams one server process admits; a start beyond it gets "Server busy".
PLAYGROUND_MAX_STREAMS_PER_PROCESS: int = env.int("PLAYGROUND_MAX_STREAMS_PER_PROCESS", default=300)
# Seconds the event loop may run late (smoothed, comparisons/live/lag.py) before a start gets
# "Server busy"; 0 turns the check off.
PLAYGROUND_MAX_LOOP_LAG_SECONDS: float = env.float("PLAYGROUND_MAX_LOOP_LAG_SECONDS", default=0.25)
# With the lag bound on: new model streams a process admits per second at most (or as many as it
# already serves, if more). 200 at once stream on time on an idle 2-core machine.
PLAYGROUND_MAX_NEW_STREAMS_PER_SECOND: int = env.int(
    "PLAYGROUND_MAX_NEW_STREAMS_PER_SECOND", default=200
)
