"""Joulepoint Edge settings: one file, configured by environment variables only.

With no environment at all this runs the embedded default (SQLite, in-memory channel
layer, in-process Celery); `DATABASE_URL` and `REDIS_URL` switch to the production-like
layout (PostgreSQL, Redis broker/cache/channel layer, real Celery workers).
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from redis.asyncio.retry import Retry as AsyncRedisRetry
from redis.backoff import NoBackoff

from joulepoint.platform.environ import env, envbool, envfloat, envint

BASE_DIR = Path(__file__).resolve().parent.parent


DEBUG = envbool("DEBUG", False)
PRODUCTION = envbool("PRODUCTION", False)
SECRET_KEY = env("SECRET_KEY", "embedded-default-insecure-key-change-me")
if PRODUCTION and SECRET_KEY.startswith("embedded-default"):
    raise ImproperlyConfigured("PRODUCTION=1 needs a real SECRET_KEY")
# Uploaded and built files (MLOps datasets and models) through Django's storage API.
MEDIA_ROOT = env("MEDIA_ROOT", str(BASE_DIR / "var" / "media"))
ALLOWED_HOSTS = env("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver,[::1]").split(",")

# Production runs behind a TLS-terminating proxy (deploy/nginx.conf sets X-Forwarded-Proto, and
# gunicorn listens on 127.0.0.1 only, so the header cannot come from anyone else): HTTPS only,
# HSTS, cookies that never travel over plain HTTP. Each can be turned off for a plain-HTTP
# test deployment on 127.0.0.1 (docs/deploy.md, "Hardening"); `manage.py check --deploy` is clean
# with the defaults.
if envbool("SECURE_PROXY_SSL_HEADER", PRODUCTION):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", PRODUCTION)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", PRODUCTION)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = envbool("SECURE_COOKIES", PRODUCTION)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "oauth2_provider",
    "joulepoint.tenancy",
    "joulepoint.integrations",
    "joulepoint.events",
    # django-auditlog with our entry model (joulepoint.audit, after it: its admin replaces auditlog's).
    "auditlog",
    "joulepoint.audit",
    "energy",
    "automations",
    "billing",
    "mlops",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves /static/ (admin, API docs) from STATIC_ROOT under any server, uvicorn included.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Who, from where, through which door, for the audit trail (docs/audit.md).
    "joulepoint.audit.middleware.AuditMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Seed paths answer with and without a trailing slash; a redirect would lose a POST body.
APPEND_SLASH = False

ROOT_URLCONF = "joulepoint.urls"
WSGI_APPLICATION = "joulepoint.wsgi.application"
ASGI_APPLICATION = "joulepoint.asgi.application"

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
                # The per-site status on the admin's landing page (templates/admin/index.html).
                "energy.admin.admin_index_status",
            ],
        },
    },
]

DATABASE_URL = env("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'joulepoint.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=envint("DB_CONN_MAX_AGE", 60))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    (BASE_DIR / "var").mkdir(exist_ok=True)
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # WAL lets the simulator, the server and a worker write side by side.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
    # Tests that start real servers need a file the subprocesses can open.
    DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME", str(BASE_DIR / "var" / "test.sqlite3"))}
elif env("TEST_DATABASE_NAME"):
    DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Statements prepared by joulepoint.platform.db.prepared_cursor (the ingest INSERT and quiet check)
    # keep one generic plan; Django's own statements are never prepared, so this is all it changes.
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c plan_cache_mode=force_generic_plan"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL")
if REDIS_URL:
    # Bounded waits: an unreachable Redis (a host gone, not just a refused port) must fail a
    # cache call in seconds, so the device path's database fallback answers (docs/deploy.md).
    CACHES = {
        "default": {
            "BACKEND": "joulepoint.platform.cache.PooledClientRedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 5},
        }
    }
    # capacity: messages a channel may hold before sends to it are dropped (a relay channel carries
    # every live message of its server process; energy/live/relay.py).
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 reads with a 5 s socket timeout by default, the same 5 s that
                # channels_redis blocks in BZPOPMIN/BRPOP for a message: an idle socket's receive
                # then fails with TimeoutError and the consumer is closed (channels_redis #422,
                # redis-py #4091). No read timeout (the pop itself bounds an idle wait) with TCP
                # keepalive to notice a dead connection. A finite read timeout longer than the pop
                # was tried: a consumer's pending receive then sometimes never finished cancelling
                # (a test's event loop hung at teardown).
                # One retry on a fresh connection: after a Redis restart the pool still holds
                # connections to the old server, and the first command on each would otherwise fail
                # (redis-py's asyncio connections retry nothing unless told to).
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": None,
                        "socket_keepalive": True,
                        "retry": AsyncRedisRetry(NoBackoff(), 1),
                    }
                ],
                "capacity": 1000,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# The graph endpoint keeps site structures per process, invalidated through the shared cache
# (docs/topology.md): only where the cache is shared between processes, i.e. Redis. The embedded
# default's local-memory cache is not (a demo command or a test process writing a node would
# not reach the server's copy).
TOPOLOGY_STRUCTURE_CACHE = bool(REDIS_URL)

# Celery: a real broker when REDIS_URL (or CELERY_BROKER_URL) is set, otherwise tasks run
# in-process so the embedded default needs no other service.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
# In-process tasks run inside the request that committed their cause: a failing subscriber
# must not turn a stored write into an error response (the outbox row keeps the error).
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# A worker keeps its database connection for this many tasks (and CONN_MAX_AGE), instead of
# Celery's default of one connection per task; joulepoint/celery.py checks it between tasks.
# 0 opens one per task again.
CELERY_DB_REUSE_MAX = envint("CELERY_DB_REUSE_MAX", 1000) or None
CELERY_ACCEPT_CONTENT = ["json", "orjson"]
CELERY_BEAT_SCHEDULE = {
    "outbox-dispatch": {"task": "joulepoint.events.tasks.outbox_dispatch", "schedule": 10.0},
    # Rollups are refreshed after each ingest commit; this catches windows whose task was lost.
    "analytics-rollups": {"task": "energy.analytics.rollups_refresh_pending", "schedule": 30.0},
    "analytics-retention": {"task": "energy.analytics.retention_enforce", "schedule": 3600.0},
    "automations-sweep": {"task": "automations.tasks.deliveries_sweep", "schedule": 5.0},
}
CELERY_IMPORTS = ["energy.analytics.tasks", "energy.devices.tasks", "energy.downlink.tasks", "energy.load.tasks"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
# WhiteNoise serves STATIC_ROOT (filled by `collectstatic`, which `make run` runs) under any
# server, uvicorn included; the finders cover a tree where collectstatic has not run yet.
WHITENOISE_USE_FINDERS = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "oauth2_provider.contrib.rest_framework.OAuth2Authentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["joulepoint.tenancy.permissions.OrganizationTokenHasScope"],
    "DEFAULT_PAGINATION_CLASS": "joulepoint.platform.api.Pagination",
    "PAGE_SIZE": 100,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["joulepoint.platform.parsers.StrictJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "joulepoint.platform.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Joulepoint Edge API",
    # What is served today; an app adds itself here when its routes land.
    "DESCRIPTION": "Telemetry ingest, live streams, analytics, power quality, the site energy graph, load management "
    "(constraints, schedules, demand response, setpoints, headroom forecast), automations, "
    "billing with prepaid wallets, and MLOps (datasets, training, model registry, anomaly inference). Integrators "
    "authenticate with OAuth2 (`/o/token/`); devices with their key in X-Device-Key, optionally signing the "
    "body in X-Signature.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "OAUTH2_FLOWS": ["clientCredentials", "authorizationCode"],
    "OAUTH2_TOKEN_URL": "/o/token/",
    "OAUTH2_AUTHORIZATION_URL": "/o/authorize/",
    # Several models have a `kind`; name each choice set after its model.
    "ENUM_NAME_OVERRIDES": {
        "MeterKindEnum": "energy.models.Meter.Kind",
        "PQEventKindEnum": "energy.power_quality.models.PQEvent.Kind",
        "ProtectionEventKindEnum": "energy.power_quality.models.ProtectionEvent.Kind",
        "TopologyNodeKindEnum": "energy.topology.models.Node.Kind",
        "AutomationActionTypeEnum": "automations.models.ActionType",
        "AlertSeverityEnum": "automations.models.Severity",
        "WalletTransactionKindEnum": "billing.models.WalletTransaction.Kind",
        "LoadScheduleSourceEnum": "energy.load.models.LoadSchedule.Source",
        "ChargingSessionSourceEnum": "energy.load.models.ChargingSession.Source",
    },
}

OAUTH2_PROVIDER_APPLICATION_MODEL = "tenancy.Application"
# Grants RFC 9700 says must not be used: off unless enabled here; credentials of these types
# can then neither be saved nor get tokens (joulepoint.tenancy.models.Application).
OAUTH2_ALLOW_PASSWORD_GRANT = envbool("OAUTH2_ALLOW_PASSWORD_GRANT", False)
OAUTH2_ALLOW_IMPLICIT_GRANT = envbool("OAUTH2_ALLOW_IMPLICIT_GRANT", False)
OAUTH2_PROVIDER = {
    "SCOPES": {
        "energy:read": "Read sites, meters, groups and readings",
        "energy:write": "Manage sites, meters, groups and gateways",
        "automations:read": "Read rules, actions and deliveries",
        "automations:write": "Manage rules and actions",
        "ml:read": "Read datasets, models and jobs",
        "ml:write": "Manage datasets, models and jobs",
        "billing:read": "Read tariffs, accounts, statements and wallets",
        "billing:write": "Manage tariffs, accounts and wallets",
        "relay:approve": "Approve or reject relay commands",
        "audit:read": "Read the organization's audit trail",
    },
    "SCOPES_BACKEND_CLASS": "joulepoint.tenancy.scopes.ApplicationScopes",
    "ACCESS_TOKEN_EXPIRE_SECONDS": envint("OAUTH2_ACCESS_TOKEN_EXPIRE_SECONDS", 3600),
    "PKCE_REQUIRED": True,
    # RFC 9700 (OAuth 2.0 Security BCP) through django-oauth-toolkit's own gates (docs/deploy.md,
    # "Hardening"): bearer tokens only in the Authorization header (the one query-string token,
    # /ws/live/'s `?token=`, is read by the socket itself, not here), PKCE S256 only, `iss` in
    # authorization responses, tokens stored as checksums, refresh-token replay revokes the family.
    # The password and implicit grants stay off unless an operator turns them on.
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": not OAUTH2_ALLOW_PASSWORD_GRANT,
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": not OAUTH2_ALLOW_IMPLICIT_GRANT,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    # Production redirect URIs are https; the embedded default keeps http for local callbacks.
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https"] if PRODUCTION else ["http", "https"],
}
LOGIN_URL = "/admin/login/"

# The audit trail (docs/audit.md): django-auditlog writing joulepoint.audit's entries, secrets
# recorded as changed but never with their values.
AUDITLOG_LOGENTRY_MODEL = "audit.AuditEntry"
AUDITLOG_MASK_CALLABLE = "joulepoint.audit.masking.mask_secret"
AUDITLOG_STORE_JSON_CHANGES = True

# Device ingest limits (documented in README "Ingest").
INGEST_MAX_BODY_BYTES = envint("INGEST_MAX_BODY_BYTES", 4 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = INGEST_MAX_BODY_BYTES
INGEST_MAX_BATCH = envint("INGEST_MAX_BATCH", 5000)
INGEST_MAX_FUTURE_SECONDS = envint("INGEST_MAX_FUTURE_SECONDS", 300)
# Readings stamped before 1 January of this year are refused (a device clock never set).
INGEST_EARLIEST_YEAR = envint("INGEST_EARLIEST_YEAR", 2000)
# A register increase across a longer silence is reported as gap energy, never poured into the
# interval of the reading that ends the gap (docs/analytics.md, KPI definitions, "Gaps").
ANALYTICS_MAX_GAP_SECONDS = envint("ANALYTICS_MAX_GAP_SECONDS", 3600)
DEVICE_RATE_LIMIT_PER_MINUTE = envint("DEVICE_RATE_LIMIT_PER_MINUTE", 600)
# Power quality and protection detection in the ingest path (docs/power-quality.md). On by
# default; off only to measure its cost (bench/pq.py) or to shed load in an emergency.
PQ_DETECTION_ENABLED = envbool("PQ_DETECTION_ENABLED", True)

# Live streams (docs/live.md): WebSocket ingest and dashboards, the MQTT bridge, device downlink.
MQTT_URL = env("MQTT_URL")  # e.g. mqtt://127.0.0.1:1883; unset = no MQTT bridge, no MQTT downlink
MQTT_TOPIC_PREFIX = env("MQTT_TOPIC_PREFIX", "joulepoint")
# Deprecated, removed in the next release: also accept and serve `<prefix>/<device_key>/…` topics.
MQTT_LEGACY_KEY_TOPICS = envbool("MQTT_LEGACY_KEY_TOPICS", False)
# Where the platform keeps Mosquitto's password and ACL files (`manage.py mosquitto_auth`);
# set, every device created, changed, rotated or deleted rewrites them and reloads the broker
# whose pid is in MQTT_BROKER_PID_FILE (default <dir>/mosquitto.pid). Unset: not managed here.
MQTT_AUTH_DIR = env("MQTT_AUTH_DIR")
MQTT_BROKER_PID_FILE = env("MQTT_BROKER_PID_FILE")
MQTT_BRIDGE_USERNAME = env("MQTT_BRIDGE_USERNAME", "joulepoint-bridge")
WS_MAX_FRAME_BYTES = envint("WS_MAX_FRAME_BYTES", 1024 * 1024)
WS_INGEST_FRAMES_PER_SECOND = envint("WS_INGEST_FRAMES_PER_SECOND", 20)
WS_INGEST_BURST = envint("WS_INGEST_BURST", 40)
WS_INGEST_FLOOD_WINDOW_SECONDS = envint("WS_INGEST_FLOOD_WINDOW_SECONDS", 10)
WS_AUTH_TIMEOUT_SECONDS = envint("WS_AUTH_TIMEOUT_SECONDS", 10)
WS_LIVE_MAX_SUBSCRIPTIONS = envint("WS_LIVE_MAX_SUBSCRIPTIONS", 500)
# A dashboard socket opened with a token checks it again this often (expiry, lost scope); a
# revocation closes it at once (docs/live.md).
WS_LIVE_TOKEN_RECHECK_SECONDS = envfloat("WS_LIVE_TOKEN_RECHECK_SECONDS", 30.0)
DEVICE_COMMAND_TTL_SECONDS = envint("DEVICE_COMMAND_TTL_SECONDS", 300)
CELERY_BEAT_SCHEDULE["device-commands-expire"] = {"task": "energy.tasks.device_commands_expire", "schedule": 30.0}
# Billing (docs/billing.md): prepaid debits of completed 15-minute intervals, statements at cycle end.
CELERY_BEAT_SCHEDULE["billing-prepaid-debits"] = {"task": "billing.tasks.prepaid_debits", "schedule": 60.0}
# Load management (docs/load.md): allocations every few seconds, demand response starts and ends.
CELERY_BEAT_SCHEDULE["load-allocate"] = {"task": "energy.load.tasks.sites_allocate", "schedule": 5.0}
CELERY_BEAT_SCHEDULE["load-demand-response"] = {"task": "energy.load.tasks.demand_responses_announce", "schedule": 10.0}
# Allocation and setpoint history kept this many days (0: forever); pruned hourly.
LOAD_HISTORY_RETENTION_DAYS = envint("LOAD_HISTORY_RETENTION_DAYS", 30)
CELERY_BEAT_SCHEDULE["load-history-prune"] = {"task": "energy.load.tasks.allocation_history_prune", "schedule": 3600.0}
CELERY_BEAT_SCHEDULE["billing-statements"] = {"task": "billing.tasks.statements_due", "schedule": 900.0}

# Analytics (docs/analytics.md). Retention defaults apply to organizations without their own
# settings row; 0 keeps data forever.
ANALYTICS_MAX_RANGE_DAYS = envint("ANALYTICS_MAX_RANGE_DAYS", 366)
ANALYTICS_RAW_MAX_DAYS = envint("ANALYTICS_RAW_MAX_DAYS", 31)
ANALYTICS_RAW_RETENTION_DAYS = envint("ANALYTICS_RAW_RETENTION_DAYS", 0)
ANALYTICS_ROLLUP_RETENTION_DAYS = envint("ANALYTICS_ROLLUP_RETENTION_DAYS", 0)
ANALYTICS_EXPECTED_INTERVAL_SECONDS = envint("ANALYTICS_EXPECTED_INTERVAL_SECONDS", 60)

# Automations (docs/automations.md). Retry n (n >= 1) waits BASE * FACTOR**(n-1) seconds, capped
# at MAX_DELAY, times a random factor in [1 - JITTER, 1 + JITTER]; after MAX_ATTEMPTS the
# delivery is dead. Defaults: 5 s, 20 s, 80 s, 5.3 min, 21 min, 85 min, 5.7 h → dead after 8.
AUTOMATIONS_RETRY_BASE_SECONDS = envfloat("AUTOMATIONS_RETRY_BASE_SECONDS", 5)
AUTOMATIONS_RETRY_FACTOR = envfloat("AUTOMATIONS_RETRY_FACTOR", 4)
AUTOMATIONS_RETRY_MAX_DELAY_SECONDS = envfloat("AUTOMATIONS_RETRY_MAX_DELAY_SECONDS", 6 * 3600)
AUTOMATIONS_RETRY_JITTER = envfloat("AUTOMATIONS_RETRY_JITTER", 0.2)
AUTOMATIONS_MAX_ATTEMPTS = envint("AUTOMATIONS_MAX_ATTEMPTS", 8)
# With a broker, the sweeper re-queues a due delivery only once it has waited this long (its first
# message was lost), and then at most once per this period (docs/automations.md).
AUTOMATIONS_SWEEP_GRACE_SECONDS = envfloat("AUTOMATIONS_SWEEP_GRACE_SECONDS", 60)
# Circuit breaker per endpoint: opens after N consecutive failures, half-opens after COOLDOWN.
AUTOMATIONS_BREAKER_FAILURES = envint("AUTOMATIONS_BREAKER_FAILURES", 5)
AUTOMATIONS_BREAKER_COOLDOWN_SECONDS = envfloat("AUTOMATIONS_BREAKER_COOLDOWN_SECONDS", 60)
AUTOMATIONS_WEBHOOK_TIMEOUT_SECONDS = envfloat("AUTOMATIONS_WEBHOOK_TIMEOUT_SECONDS", 10)
AUTOMATIONS_WEBHOOK_MAX_RESPONSE_BYTES = envint("AUTOMATIONS_WEBHOOK_MAX_RESPONSE_BYTES", 64 * 1024)
# A task sends its webhooks one by one until they have taken this long in all, then the rest
# concurrently on threads (docs/automations.md, "Throughput").
AUTOMATIONS_WEBHOOK_SEQUENTIAL_MS = envfloat("AUTOMATIONS_WEBHOOK_SEQUENTIAL_MS", 100)
# Off in production: webhooks may not target private, loopback or link-local addresses.
AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE = envbool("AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE", False)
# The port of the demo's webhook receiver on 127.0.0.1 (make run; automations.demo).
DEMO_WEBHOOK_PORT = envint("DEMO_WEBHOOK_PORT", 8765)
AUTOMATIONS_RELAY_COMMAND_EXPIRY_SECONDS = envint("AUTOMATIONS_RELAY_COMMAND_EXPIRY_SECONDS", 900)
# alert.triggered chains: a rule fired by an alert may raise another alert up to this depth.
AUTOMATIONS_MAX_CHAIN_DEPTH = envint("AUTOMATIONS_MAX_CHAIN_DEPTH", 3)
# Plugins: dotted paths here plus the `joulepoint.automations.plugins` entry-point group.
AUTOMATIONS_PLUGINS = [
    p for p in env("AUTOMATIONS_PLUGINS", "automations.plugins.example.LogEventPlugin").split(",") if p
]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "WARNING")},
}

# MLOps (docs/mlops.md): external trainers get a job spec signed like webhooks (Standard
# Webhooks, MLOPS_EXTERNAL_TRAINER_SECRET "whsec_…") at MLOPS_EXTERNAL_TRAINER_URL, with URLs
# under MLOPS_PUBLIC_URL and tokens valid MLOPS_EXTERNAL_TOKEN_TTL_SECONDS; uploaded ONNX models
# over MLOPS_MAX_MODEL_BYTES are refused (413).
MLOPS_EXTERNAL_TRAINER_URL = env("MLOPS_EXTERNAL_TRAINER_URL")
MLOPS_EXTERNAL_TRAINER_SECRET = env("MLOPS_EXTERNAL_TRAINER_SECRET")
MLOPS_PUBLIC_URL = env("MLOPS_PUBLIC_URL", "http://127.0.0.1:8000")
MLOPS_EXTERNAL_TOKEN_TTL_SECONDS = envint("MLOPS_EXTERNAL_TOKEN_TTL_SECONDS", 3600)
MLOPS_MAX_MODEL_BYTES = envint("MLOPS_MAX_MODEL_BYTES", 50 * 1024 * 1024)
# Running training jobs whose trainer stopped reporting become `expired` (docs/mlops.md). Beat
# sends by name, so the entry names the `ml` queue itself.
CELERY_BEAT_SCHEDULE["mlops-training-jobs-expire"] = {
    "task": "mlops.training_jobs_expire",
    "schedule": 60.0,
    "options": {"queue": "ml"},
}
