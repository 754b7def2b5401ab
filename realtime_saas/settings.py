"""Settings for realtime_saas, read from environment variables (and `.env` when present).

Every variable is listed, with a comment, in `.env.example`. Bad values fail at start-up.
"""

import os
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
ENV_FILE = env.str("ENV_FILE", default=str(BASE_DIR / ".env"))
if Path(ENV_FILE).is_file():
    env.read_env(ENV_FILE)

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    """A boolean variable; anything but the usual spellings is an error, not a silent False."""
    raw = env.str(name, default=str(default)).strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}.")


DEV_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env.str("SECRET_KEY", default=DEV_SECRET_KEY)
if not DEBUG and (SECRET_KEY == DEV_SECRET_KEY or len(SECRET_KEY) < 32):
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a random value of at least 32 characters when DEBUG is off "
        "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))')."
    )

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
# Where pages open the live WebSocket (daphne). Empty: this site's own /ws/live/, a proxy routing
# /ws/ to daphne; `make run` and the browser tests give daphne a port of its own (the page's origin
# must then be in CSRF_TRUSTED_ORIGINS, which the socket's origin check also reads).
LIVE_WEBSOCKET_URL = env.str("LIVE_WEBSOCKET_URL", default="").strip()
if LIVE_WEBSOCKET_URL and not LIVE_WEBSOCKET_URL.startswith(("ws://", "wss://")):
    raise ImproperlyConfigured("LIVE_WEBSOCKET_URL must start with ws:// or wss:// (or be empty).")

INSTALLED_APPS = [
    "daphne",  # first: its runserver serves ASGI (HTTP and WebSockets)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served by us, not a CDN
    "allauth",
    "allauth.account",
    "channels",
    "django_celery_beat",
    "accounts",
    "billing",
    "sessions.apps.RealtimeSessionsConfig",
]

MIDDLEWARE = [
    # First: the request id and the web metrics cover everything below (realtime_saas/middleware.py).
    "realtime_saas.middleware.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    # Last on purpose: it is sync-only, so under ASGI everything above it runs in one thread hop
    # (a sync-only middleware in the middle makes the async-capable ones below it hop per call).
    "accounts.middleware.SuspendedUserMiddleware",
]

ROOT_URLCONF = "realtime_saas.urls"
ASGI_APPLICATION = "realtime_saas.asgi.application"
WSGI_APPLICATION = "realtime_saas.wsgi.application"

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
                "realtime_saas.context_processors.site",
                "billing.context_processors.wallet",
            ],
        },
    },
]

# Database: a SQLite file by default (the embedded `make run`), PostgreSQL in production and CI.
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several local processes (web, worker, supervisor) share the file: WAL lets readers run
    # beside a writer, IMMEDIATE takes the write lock up front so two writers queue instead of
    # failing with "database is locked" half-way through a transaction.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    # Under daphne every request runs its sync code in a thread of its own, so a persistent
    # connection (CONN_MAX_AGE > 0) is never reused and leaks until PostgreSQL refuses new
    # clients. Connections are either opened per request (0) or taken from psycopg's pool.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
    # The pool also saves each request the connection set-up (measured: 78 → 49 ms for a call start).
    if env_bool("DATABASE_POOL", True):
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps them; Django must not
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=2),
            "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=20),
            "timeout": 10,
        }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "accounts.backends.ActiveAccountBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "home"

# django-allauth: email is the login, and it must be verified before the account is usable.
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
# The link in the email confirms and signs in at once (in the browser that signed up: allauth
# signs in only the session that made the account), without a second click.
ACCOUNT_CONFIRM_EMAIL_ON_GET = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
# An unverified address added to someone else's account neither blocks its owner's sign-up nor gets
# that account's password reset; a taken address costs sign-up the same work as a new one.
ACCOUNT_FORMS = {"signup": "accounts.signup.SignupForm", "reset_password": "accounts.signup.ResetPasswordForm"}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Redis is optional: Celery broker and Channels layer when set, embedded replacements otherwise.
REDIS_URL = env.str("REDIS_URL", default="")

if REDIS_URL:
    CHANNEL_LAYERS: dict[str, dict[str, Any]] = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": env.str("CHANNELS_PREFIX", default="asgi")},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# The cache holds DRF throttle counters and sessions: it must be shared by every web process, so
# it is Redis when there is one (the in-process cache serves the single-process embedded default).
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "realtime_saas.cache.PrefixedRedisCache",
            "LOCATION": env.str("CACHE_URL", default=REDIS_URL),
            "KEY_PREFIX": env.str("CACHE_PREFIX", default="rs"),
            "TIMEOUT": 300,
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# The beat heartbeat is written by a worker and read by web processes: Redis when there is one,
# else a file cache under var/ (the embedded default runs them as separate processes).
CACHES["heartbeat"] = (
    {**CACHES["default"], "KEY_PREFIX": CACHES["default"].get("KEY_PREFIX", "rs") + "-hb"}
    if REDIS_URL
    else {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(VAR_DIR / "cache")}
)
# Sessions are written to the database and read from the cache: a request does not pay a query
# for its session, and a flushed cache loses nobody's sign-in.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

# Celery. Without Redis the broker is kombu's filesystem transport under var/celery: it needs no
# server, survives restarts and lets the worker and beat run as separate local processes.
CELERY_DATA_DIR = Path(env.str("CELERY_DATA_DIR", default=str(VAR_DIR / "celery")))
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(CELERY_DATA_DIR / "queue"),
        "data_folder_out": str(CELERY_DATA_DIR / "queue"),
        "processed_folder": str(CELERY_DATA_DIR / "processed"),
        "control_folder": str(CELERY_DATA_DIR / "control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem://")
    else {"visibility_timeout": 3600}
)
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
# acks_late is set per task, only on those that are idempotent (each says why): a late ack re-runs
# a task whose worker died half-way. Every task has a time limit: the soft one raises
# SoftTimeLimitExceeded in the task, the hard one kills its process. Tasks that need other limits
# set their own. The Redis visibility timeout (3600 s) stays above every hard limit and retry delay.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_TASK_TIME_LIMIT = 300
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE: dict = {}
# The beat heartbeat (realtime_saas/celery.py): /readyz and the worker's metrics show its age.
BEAT_HEARTBEAT_SECONDS = 30.0
CELERY_BEAT_SCHEDULE["celery-beat-heartbeat"] = {
    "task": "realtime_saas.beat_heartbeat",
    "schedule": BEAT_HEARTBEAT_SECONDS,
    "options": {"expires": BEAT_HEARTBEAT_SECONDS - 5},
}
# billing: re-enqueue Stripe events no task finished; bring pending purchases up to date from Stripe.
CELERY_BEAT_SCHEDULE["billing-sweep-stripe-events"] = {"task": "billing.sweep_stripe_events", "schedule": 300.0}
CELERY_BEAT_SCHEDULE["billing-reconcile-purchases"] = {"task": "billing.reconcile_purchases", "schedule": 600.0}
CELERY_BEAT_SCHEDULE["billing-expire-stale-checkouts"] = {"task": "billing.expire_stale_checkouts", "schedule": 300.0}
# Credit grants past their expiry become EXPIRY ledger entries (docs/billing.md, "Credit grants").
CELERY_BEAT_SCHEDULE["billing-expire-credit-grants"] = {"task": "billing.expire_credit_grants", "schedule": 600.0}
# Auto top-ups whose worker died between the claim and Stripe's answer are re-driven once they have
# been processing this long (docs/billing.md, "Auto top-up"): above billing.auto_top_up's hard time
# limit (90 s), so a run still alive is never charged beside.
AUTO_TOP_UP_STUCK_SECONDS = env.float("AUTO_TOP_UP_STUCK_SECONDS", default=300.0)
if AUTO_TOP_UP_STUCK_SECONDS <= 90:
    raise ImproperlyConfigured("AUTO_TOP_UP_STUCK_SECONDS must be > 90 (billing.auto_top_up's time limit).")
CELERY_BEAT_SCHEDULE["billing-sweep-stuck-top-ups"] = {"task": "billing.sweep_stuck_top_ups", "schedule": 120.0}

# Django REST framework and the OpenAPI schema.
REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only (views that take SDP say so): daphne's Twisted parses multipart bodies itself and
    # answers a malformed one with a bare 400 before Django sees it, outside the error envelope.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    # drf-spectacular's, plus every error status (with the envelope) an operation can answer.
    "DEFAULT_SCHEMA_CLASS": "realtime_saas.api.ErrorEnvelopeAutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 25,
    "DEFAULT_THROTTLE_RATES": {},
    # One error envelope for every API error, 404 and throttling included (realtime_saas/api.py).
    "EXCEPTION_HANDLER": "realtime_saas.api.exception_handler",
}
SPECTACULAR_SETTINGS: dict[str, Any] = {
    "TITLE": "realtime_saas API",
    "DESCRIPTION": "Start OpenAI Realtime voice calls behind prepaid credits, and read what they cost.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Email: the console by default (confirmation links appear in the terminal), SMTP when configured.
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="realtime_saas <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
STAFF_NOTIFY_EMAILS = env.list("STAFF_NOTIFY_EMAILS", default=[])
# Where users write for help: linked wherever a page says "contact us" and in every email.
SUPPORT_EMAIL = env.str("SUPPORT_EMAIL", default="support@localhost")

# Upstream services. With no keys, `make run` points these at the offline fakes it starts.
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_ADMIN_KEY = env.str("OPENAI_ADMIN_KEY", default="")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="https://api.openai.com/v1")
OPENAI_TIMEOUT_SECONDS = env.float("OPENAI_TIMEOUT_SECONDS", default=10.0)
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")  # empty: Stripe itself
STRIPE_TIMEOUT_SECONDS = env.float("STRIPE_TIMEOUT_SECONDS", default=10.0)
# A webhook event that failed this many times is dead: nothing retries it until staff do (admin).
STRIPE_EVENT_MAX_ATTEMPTS = env.int("STRIPE_EVENT_MAX_ATTEMPTS", default=10)
if STRIPE_EVENT_MAX_ATTEMPTS < 1:
    raise ImproperlyConfigured("STRIPE_EVENT_MAX_ATTEMPTS must be ≥ 1.")
# Stripe Tax on checkouts and auto top-ups: pack prices are then before tax and the tax is added on
# the invoice
# (docs/billing.md, "Invoices and tax"; needs Stripe Tax set up in the Dashboard).
STRIPE_AUTOMATIC_TAX = env_bool("STRIPE_AUTOMATIC_TAX", False)
# Checkout shows a promotion code field (codes are made in the Stripe Dashboard).
STRIPE_ALLOW_PROMOTION_CODES = env_bool("STRIPE_ALLOW_PROMOTION_CODES", False)

# Security. Behind TLS in production; `DEBUG=true` for local development only.
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the Talk page's JS sends it as X-CSRFToken
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Content-Security-Policy (django-csp): scripts and <style> only from our origin or carrying the
# request's nonce (templates: nonce="{{ request.csp_nonce }}"). On unless DEBUG, whose error
# pages are inline; CSP_ENABLED=true turns it on in development too (empty: that default).
CSP_ENABLED = env_bool("CSP_ENABLED", not DEBUG) if env.str("CSP_ENABLED", default="").strip() else not DEBUG
if CSP_ENABLED:
    from urllib.parse import urlsplit

    from csp.constants import NONCE, NONE, SELF

    MIDDLEWARE.insert(MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1, "csp.middleware.CSPMiddleware")
    _live_socket = urlsplit(globals().get("LIVE_WEBSOCKET_URL") or "")
    _live_socket_origin = [f"{_live_socket.scheme}://{_live_socket.netloc}"] if _live_socket.netloc else []
    CONTENT_SECURITY_POLICY = {
        "DIRECTIVES": {
            "default-src": [SELF],
            "script-src": [SELF, NONCE],
            "style-src": [SELF, NONCE],
            "img-src": [SELF, "data:"],
            # The API, and the live WebSocket: this origin, or its own (LIVE_WEBSOCKET_URL).
            "connect-src": [SELF, *_live_socket_origin],
            "object-src": [NONE],
            "base-uri": [SELF],
            "frame-ancestors": [NONE],
        }
    }
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)

DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
# Secrets (sensitive_variables, secret-looking settings) are hidden on the DEBUG page too.
DEFAULT_EXCEPTION_REPORTER_FILTER = "realtime_saas.error_reports.AlwaysSafeExceptionReporterFilter"

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_secrets": {"()": "realtime_saas.logging.RedactSecretsFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
# LOG_FORMAT=json: one JSON object per line, with the request id, user id, call and Stripe event
# where they apply (realtime_saas/logging.py); "plain" for people reading a terminal.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}.")
LOGGING["filters"]["log_context"] = {"()": "realtime_saas.logging.ContextFilter"}
LOGGING["formatters"]["json"] = {"()": "realtime_saas.logging.JsonFormatter"}
LOGGING["handlers"]["console"]["formatter"] = LOG_FORMAT
LOGGING["handlers"]["console"]["filters"] = ["redact_secrets", "log_context"]

# Metrics (realtime_saas/metrics.py, docs/operations.md): a scrape needs the bearer token or an
# address in the allowed networks; with neither, the endpoints answer 403.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=[])
# The supervisor's and the worker's own listeners (0: none); the web serves /metrics itself.
METRICS_LISTEN_HOST = env.str("METRICS_LISTEN_HOST", default="127.0.0.1")
SUPERVISOR_METRICS_PORT = env.int("SUPERVISOR_METRICS_PORT", default=0)
WORKER_METRICS_PORT = env.int("WORKER_METRICS_PORT", default=0)
try:
    import ipaddress as _ipaddress

    for _network in METRICS_ALLOWED_NETWORKS:
        _ipaddress.ip_network(_network, strict=False)
except ValueError as _exc:
    raise ImproperlyConfigured(f"METRICS_ALLOWED_NETWORKS: {_exc}") from None
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 16 characters (or empty).")
# prometheus_client's multiprocess mode reads it when it is imported (before this file, and before
# .env is read): it must be in the process's own environment. Checked here so a typo fails loudly.
PROMETHEUS_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
if PROMETHEUS_MULTIPROC_DIR and not Path(PROMETHEUS_MULTIPROC_DIR).is_dir():
    raise ImproperlyConfigured(f"PROMETHEUS_MULTIPROC_DIR={PROMETHEUS_MULTIPROC_DIR!r} is not a directory.")

# Realtime calls (sessions app, label `realtime`).
# What one credit is worth at OpenAI's cost; an assistant's markup is added on top.
REALTIME_CREDITS_PER_USD = env.int("REALTIME_CREDITS_PER_USD", default=100)
# A call nobody meters is settled at its full hold this long after its expected end.
REALTIME_SWEEP_GRACE_SECONDS = env.int("REALTIME_SWEEP_GRACE_SECONDS", default=60)
# A hung-up call that no supervisor settles is settled (full hold) this long after the hangup.
REALTIME_ENDING_GRACE_SECONDS = env.int("REALTIME_ENDING_GRACE_SECONDS", default=30)
# A call running at OpenAI that no supervisor has watched for this long (they all stopped or died)
# is hung up and settled at its full hold: longer than a lease plus an attach grace, so a
# surviving or restarted supervisor takes it over first.
REALTIME_UNWATCHED_GRACE_SECONDS = env.int("REALTIME_UNWATCHED_GRACE_SECONDS", default=120)
# A call whose partial hold runs out while an auto top-up is on its way waits this long for the
# credits (its responses kept to what the hold still covers), then goes on or is cut (docs/billing.md).
REALTIME_TOPUP_GRACE_SECONDS = env.float("REALTIME_TOPUP_GRACE_SECONDS", default=20.0)
if REALTIME_TOPUP_GRACE_SECONDS < 0:
    raise ImproperlyConfigured("REALTIME_TOPUP_GRACE_SECONDS must be ≥ 0.")
REALTIME_MAX_SDP_BYTES = 64 * 1024
# How long each web process keeps the assistants and prices a call start reads (sessions/caches.py):
# an admin edit reaches every process within this time. 0: read them on every start.
REALTIME_CACHE_SECONDS = env.float("REALTIME_CACHE_SECONDS", default=5.0)
if REALTIME_CACHE_SECONDS < 0:
    raise ImproperlyConfigured("REALTIME_CACHE_SECONDS must be ≥ 0.")
if (REALTIME_CREDITS_PER_USD < 1 or REALTIME_SWEEP_GRACE_SECONDS < 0 or REALTIME_ENDING_GRACE_SECONDS < 0
        or REALTIME_UNWATCHED_GRACE_SECONDS < 0):
    raise ImproperlyConfigured("REALTIME_CREDITS_PER_USD must be ≥ 1 and the grace periods ≥ 0.")
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"].update(
    {
        "call_start": env.str("THROTTLE_CALL_START", default="20/min"),
        "key_mint": env.str("THROTTLE_KEY_MINT", default="20/min"),
        "call_control": env.str("THROTTLE_CALL_CONTROL", default="60/min"),
        "checkout": env.str("THROTTLE_CHECKOUT", default="10/min"),
        # Promo codes redeemed on the wallet page: few tries, so codes cannot be guessed by brute force.
        "promo_code": env.str("THROTTLE_PROMO_CODE", default="10/hour"),
    }
)
CELERY_BEAT_SCHEDULE["realtime-sweep-calls"] = {"task": "sessions.tasks.sweep_calls", "schedule": 60.0}
SPECTACULAR_SETTINGS.setdefault("ENUM_NAME_OVERRIDES", {}).update(
    {"CallModeEnum": "sessions.models.CallMode.choices", "CallCauseEnum": "sessions.models.Cause.choices"}
)
LOGGING["loggers"]["httpx2"] = {"level": "WARNING"}  # the openai SDK's HTTP client logs every request

# --- Reconciliation (issue 7: sessions/reconciliation) ----------------------------------------
# OpenAI's Usage/Costs API is pulled from the last watermark minus this overlap (usage arrives late).
RECONCILIATION_OVERLAP_MINUTES = env.int("RECONCILIATION_OVERLAP_MINUTES", default=60)
# First pull when nothing was imported yet.
RECONCILIATION_INITIAL_LOOKBACK_HOURS = env.int("RECONCILIATION_INITIAL_LOOKBACK_HOURS", default=24)
# Unexplained usage: reported tokens above metered + allowance by more than both tolerances.
RECONCILIATION_TOLERANCE_PERCENT = env.float("RECONCILIATION_TOLERANCE_PERCENT", default=5.0)
RECONCILIATION_TOLERANCE_TOKENS = env.int("RECONCILIATION_TOLERANCE_TOKENS", default=500)
# Cost drift: a day's Costs API total vs our cost of the reported usage.
RECONCILIATION_COST_TOLERANCE_PERCENT = env.float("RECONCILIATION_COST_TOLERANCE_PERCENT", default=2.0)
RECONCILIATION_COST_TOLERANCE_MICROUSD = env.int("RECONCILIATION_COST_TOLERANCE_MICROUSD", default=10_000)
# Clock skew between OpenAI's buckets and our timestamps: a call window is widened by this much.
RECONCILIATION_WINDOW_GRACE_SECONDS = env.int("RECONCILIATION_WINDOW_GRACE_SECONDS", default=60)
# Which usage is ours: OpenAI key ids (`key_…`) and project ids (`proj_…`) of the keys this product
# uses. A bucket whose key id is listed is attributed by key; a bucket without a key id falls back
# to project + minute; a bucket of another key is not ours. Empty lists: everything is ours.
RECONCILIATION_OPENAI_KEY_IDS = env.list("RECONCILIATION_OPENAI_KEY_IDS", default=[])
RECONCILIATION_OPENAI_PROJECT_IDS = env.list("RECONCILIATION_OPENAI_PROJECT_IDS", default=[])
RECONCILIATION_CHUNK_SIZE = env.int("RECONCILIATION_CHUNK_SIZE", default=5000)
if (
    RECONCILIATION_OVERLAP_MINUTES < 0
    or RECONCILIATION_TOLERANCE_PERCENT < 0
    or RECONCILIATION_TOLERANCE_TOKENS < 0
    or RECONCILIATION_COST_TOLERANCE_PERCENT < 0
    or RECONCILIATION_COST_TOLERANCE_MICROUSD < 0
    or RECONCILIATION_CHUNK_SIZE < 100
):
    raise ImproperlyConfigured("RECONCILIATION_* tolerances and overlap must be ≥ 0 and the chunk size ≥ 100.")
# Import + reconcile every 15 min; the PeriodicTask row (editable in the admin) is created by a
# data migration, so it is not listed in CELERY_BEAT_SCHEDULE (which would reset edits at start).
# Key mode (issue 11): each key-mode window is reconciled this long after it ended (OpenAI's usage
# buckets arrive late), by a task run every minute; keep it ≤ 180 s for "within 5 minutes".
RECONCILIATION_KEY_WINDOW_DELAY_SECONDS = env.int("RECONCILIATION_KEY_WINDOW_DELAY_SECONDS", default=120)
if RECONCILIATION_KEY_WINDOW_DELAY_SECONDS < 0:
    raise ImproperlyConfigured("RECONCILIATION_KEY_WINDOW_DELAY_SECONDS must be ≥ 0.")
CELERY_BEAT_SCHEDULE["realtime-reconcile-key-windows"] = {
    "task": "sessions.reconciliation.reconcile_key_windows",
    "schedule": 60.0,
    "options": {"expires": 55},  # a run the workers could not start within its minute is skipped
}
# --- end of reconciliation ---------------------------------------------------------------------

# --- Call supervisor (issue 6: sessions/supervisor, `manage.py supervise_calls`) ---------------
# A call's lease expires this long after its supervisor last renewed it (then another takes over).
SUPERVISOR_LEASE_SECONDS = env.float("SUPERVISOR_LEASE_SECONDS", default=15.0)
SUPERVISOR_RENEW_SECONDS = env.float("SUPERVISOR_RENEW_SECONDS", default=3.0)
# New calls are looked for this often (≤ 1 s keeps the "picked up within 1 s" promise).
SUPERVISOR_POLL_SECONDS = env.float("SUPERVISOR_POLL_SECONDS", default=0.5)
# Watched calls are checked this often for staff hangup, suspension and their expected end.
SUPERVISOR_CHECK_SECONDS = env.float("SUPERVISOR_CHECK_SECONDS", default=0.5)
# A call whose sideband has not attached by then is hung up (fail closed).
SUPERVISOR_ATTACH_GRACE_SECONDS = env.float("SUPERVISOR_ATTACH_GRACE_SECONDS", default=20.0)
# After our hangup, settle even if OpenAI keeps the sideband open this long.
SUPERVISOR_ENDING_TIMEOUT_SECONDS = env.float("SUPERVISOR_ENDING_TIMEOUT_SECONDS", default=5.0)
# Warn the browser when this little time, or this fraction of the hold, is left.
SUPERVISOR_WARN_SECONDS = env.float("SUPERVISOR_WARN_SECONDS", default=60.0)
SUPERVISOR_WARN_FRACTION = env.float("SUPERVISOR_WARN_FRACTION", default=0.10)
# If set, told to the model (a system message over the sideband) at the warning.
SUPERVISOR_WRAP_UP_MESSAGE = env.str("SUPERVISOR_WRAP_UP_MESSAGE", default="")
# Database threads per supervisor (PostgreSQL; SQLite always uses one).
SUPERVISOR_DB_THREADS = env.int("SUPERVISOR_DB_THREADS", default=4)
if (
    SUPERVISOR_RENEW_SECONDS <= 0
    or SUPERVISOR_LEASE_SECONDS < 2 * SUPERVISOR_RENEW_SECONDS
    or not 0 < SUPERVISOR_POLL_SECONDS <= 5
    or not 0 < SUPERVISOR_CHECK_SECONDS <= 1
    or SUPERVISOR_ATTACH_GRACE_SECONDS <= 0
    or not 0 <= SUPERVISOR_WARN_FRACTION < 1
    or SUPERVISOR_DB_THREADS < 1
):
    raise ImproperlyConfigured(
        "SUPERVISOR_*: the lease must be ≥ 2 renewals, poll in (0, 5] s, check in (0, 1] s (enforcement "
        "within 2 s), grace > 0, warn fraction in [0, 1), ≥ 1 database thread."
    )
CELERY_BEAT_SCHEDULE["realtime-free-dead-leases"] = {
    "task": "sessions.supervisor.tasks.free_dead_leases",
    "schedule": 60.0,
}
# --- end of call supervisor ----------------------------------------------------------------------
