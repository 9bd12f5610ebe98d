"""Townsquare settings, read from the environment (and a local `.env` file, if present).

Environment variables:
    DATABASE_URL   database URL; default a SQLite file `db.sqlite3` (WAL mode) in the checkout.
    REDIS_URL      when set, channels_redis carries publishes between worker processes;
                   otherwise the in-memory channel layer (one process only). Several
                   comma-separated URLs shard the channel layer over them.
    REDIS_SENTINELS, REDIS_SENTINEL_MASTER
                   instead of REDIS_URL: Redis through Sentinel (host:port list, master name).
    SECRET_KEY     signs sessions and tokens; every worker must share it.
    ALLOWED_HOSTS  comma-separated host names; also the WebSocket origin allow-list.
    DEBUG          "1"/"true" for Django's debug mode; default off.
"""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured

from dashboard.conf import DashboardSettings
from realtime.conf import RealtimeSettings, from_environ, redis_topology

# Lets annotations such as ModelAdmin[Room] and Serializer[Any] run, as django-stubs documents.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG: bool = env.bool("DEBUG", default=False)
# Fail closed (OWASP ASVS V6.4, Django's deployment checklist): with DEBUG off, a missing key
# or this published one stops every entry point (serve, migrate, asgi, any command) here,
# since anyone holding the key can forge sessions and JWTs (a token for user 1 signed with
# it passed as a superuser). `./run` writes a random key to `.env`; tests and type checks
# use townsquare.settings_test. With DEBUG on (a laptop) this key is the default.
INSECURE_DEV_SECRET_KEY = "insecure-dev-only-townsquare-secret-key-change-me-0123456789"
SECRET_KEY: str = env.str("SECRET_KEY", default="")
if not SECRET_KEY or SECRET_KEY == INSECURE_DEV_SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is missing or is the built-in development key while DEBUG is off: set "
            "SECRET_KEY (long and random, the same on every worker) in the environment or in "
            ".env (./run writes one); DEBUG=1 allows the development key on a laptop."
        )
    SECRET_KEY = INSECURE_DEV_SECRET_KEY
ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- HTTPS (Django's deployment checklist; docs/operations.md, "Production environment") -------
# All off by default: a laptop serves plain http. Behind TLS, turn them all on.
# Cookies only over https, so a network attacker never sees a session or CSRF cookie.
SESSION_COOKIE_SECURE: bool = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE: bool = env.bool("CSRF_COOKIE_SECURE", default=False)
# Redirect http to https. Django must see the request's real scheme: `serve` takes it from
# X-Forwarded-Proto sent by a TRUSTED_PROXIES address, or see PROXY_SETS_X_FORWARDED_PROTO.
SECURE_SSL_REDIRECT: bool = env.bool("SECURE_SSL_REDIRECT", default=False)
# Probes and scrapers call the workers' own ports over plain http (paths without the "/").
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# Strict-Transport-Security, in seconds (RFC 6797): browsers then refuse http for the site.
# Start small (3600), raise to a year (31536000) once https works everywhere.
SECURE_HSTS_SECONDS: int = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS: bool = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD: bool = env.bool("SECURE_HSTS_PRELOAD", default=False)
# Only when every request reaches Django through a proxy that sets X-Forwarded-Proto itself
# (a client's own header would otherwise pass as https). Not needed under `manage.py serve`
# with TRUSTED_PROXIES, where uvicorn already applies the header from trusted proxies only.
if env.bool("PROXY_SETS_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Addresses of the reverse proxies in front of `manage.py serve` (comma-separated IPs, or
# "*"): only their X-Forwarded-For/-Proto are believed, and then REMOTE_ADDR (what sign-in
# throttling counts) and a socket's client address are the real client's. Empty (the
# default): the headers are ignored and the peer's own address is the client's.
TRUSTED_PROXIES: list[str] = env.list("TRUSTED_PROXIES", default=[])

INSTALLED_APPS = [
    # First, so that `manage.py runserver` serves ASGI (WebSockets included), as the seeds do.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # django.contrib.staticfiles, whose collectstatic skips files nothing serves.
    "townsquare.staticfiles.StaticFilesConfig",
    "channels",
    "rest_framework",
    "drf_spectacular",
    # Swagger UI's own files for /api/docs/ (SWAGGER_UI_DIST below): nothing from a CDN.
    "drf_spectacular_sidecar",
    # Sign-in throttling (settings under "Sign-in throttling" below).
    "axes",
    "realtime",
    "chat",
    "notifications",
    "shop",
    "dashboard",
    # The project package itself, for project-wide commands (demo) and templates.
    "townsquare",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    # Last, as django-axes documents: turns a locked-out sign-in into its lockout answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "townsquare.urls"
ASGI_APPLICATION = "townsquare.asgi.application"
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
                "django.template.context_processors.csp",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            # WAL lets readers proceed while one writer writes; IMMEDIATE takes the write lock
            # at BEGIN so two writers queue instead of failing with "database is locked".
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
    # Keep each thread's connection open. Under ASGI every socket action and sync view runs
    # on asgiref's one thread-sensitive thread, so this is one connection per process, not
    # one per request; opening and closing it around each action (Django's default, 0) was
    # a fifth of the server's CPU in the fan-out benchmark (docs/performance.md).
    # ?conn_max_age= in DATABASE_URL overrides it.
    DATABASES["default"].setdefault("CONN_MAX_AGE", None)
    # Tests use a file too, not shared-cache memory: that uses table locks, not WAL, so it
    # cannot show how concurrent writers behave.
    DATABASES["default"].setdefault("TEST", {}).setdefault(
        "NAME", str(Path(tempfile.gettempdir()) / f"townsquare-test-{os.getpid()}.sqlite3")
    )
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A database that does not answer fails a request in seconds instead of holding a worker
    # thread until the kernel gives up on the connection.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=5)
    )
    # Under ASGI every request and every socket action runs in a thread of its own choosing,
    # so Django's persistent connections (CONN_MAX_AGE > 0) would leak one connection per
    # thread; Django's docs say to disable them under ASGI and use the driver's pool. Each
    # worker process keeps a psycopg pool: a connection is taken when a thread first queries
    # and given back when Django closes it (end of request, end of each
    # database_sync_to_async call). DATABASE_POOL=0 goes back to one connection per request.
    # Sizes are per process: workers × DATABASE_POOL_MAX must stay below PostgreSQL's
    # max_connections. See docs/operations.md, "Database connections".
    if env.bool("DATABASE_POOL", default=True):
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool refuses persistent connections
        # Each connection handed out is checked first (one round trip): a connection that
        # PostgreSQL closed (restart, failover, idle timeout) is replaced, not used.
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": env.int("DATABASE_POOL_MIN", default=2),
            "max_size": env.int("DATABASE_POOL_MAX", default=10),
            # Longest wait for a free connection, in seconds; then the query fails with
            # OperationalError (PoolTimeout) instead of queueing behind an outage.
            "timeout": env.float("DATABASE_POOL_TIMEOUT", default=1.5),
            # Idle connections above min_size are closed after this many seconds.
            "max_idle": env.float("DATABASE_POOL_MAX_IDLE", default=300.0),
            # Connections are replaced after this long, so server-side memory does not grow.
            "max_lifetime": env.float("DATABASE_POOL_MAX_LIFETIME", default=3600.0),
        }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channel layer --------------------------------------------------------------------------
# The deployment's Redis (docs/operations.md, "Redis topology"): REDIS_URL, one URL or several
# comma-separated (the channel layer's shards), or REDIS_SENTINELS (host:port,...) with
# REDIS_SENTINEL_MASTER (the master's name; several names: one shard each).
REDIS_TOPOLOGY = redis_topology(
    env.str("REDIS_URL", default=None),
    env.str("REDIS_SENTINELS", default=None),
    env.str("REDIS_SENTINEL_MASTER", default=None),
)
# The designated instance (the first shard; with Sentinel a redis+sentinel:// URL of the first
# master): presence, worker statistics, leases and the cache live there alone, since a lease
# needs one authority and the rest is small next to the layer's traffic.
REDIS_URL: str | None = REDIS_TOPOLOGY.url if REDIS_TOPOLOGY else None
# With Redis, which channels_redis layer carries publishes between processes: "pubsub"
# (RedisPubSubChannelLayer: Redis PUBLISH/SUBSCRIBE) or "core" (RedisChannelLayer: groups and
# per-channel queues kept as Redis keys). Measured with bench/layers.py (docs/operations.md,
# "Channel layer"): pub/sub costs 7-10x less per message at every step; its silent outages are
# noticed by the hub's reconnect hook and probes, which then catch durable streams up.
CHANNEL_LAYER: str = env.str("CHANNEL_LAYER", default="pubsub")
# The real-time core's settings (TOWNSQUARE_REALTIME, below) as the environment sets them.
_rt_environ = from_environ(RealtimeSettings)
# REDIS_TIMEOUT_SECONDS, a core setting (realtime.conf: every wait on Redis; docs/operations.md,
# "A hung Redis"), is also the layer's connect timeout, and its socket timeout under pub/sub
# (the core layer's blocking receive waits up to 5 s by design, so there it is not one).
_redis_timeout = RealtimeSettings(**_rt_environ).REDIS_TIMEOUT_SECONDS
CHANNEL_LAYERS: dict[str, dict[str, Any]]
if REDIS_TOPOLOGY and CHANNEL_LAYER == "pubsub":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            # No capacity or expiry: Redis pushes each message to every subscribed process at
            # once, and the hub's reader drains it into the sockets' bounded outboxes.
            "CONFIG": {
                # One host per shard: groups and channels by consistent hashing. channels_redis
                # passes a host dict's keys besides "address" (or Sentinel's) to redis-py.
                "hosts": REDIS_TOPOLOGY.layer_hosts(
                    socket_connect_timeout=_redis_timeout, socket_timeout=_redis_timeout
                ),
                "prefix": env.str("REDIS_PREFIX", default="townsquare"),
            },
        }
    }
elif REDIS_TOPOLOGY and CHANNEL_LAYER == "core":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": REDIS_TOPOLOGY.layer_hosts(socket_connect_timeout=_redis_timeout),
                "prefix": env.str("REDIS_PREFIX", default="townsquare"),
                # One hub channel per worker process receives every publish for that process,
                # so its capacity is per process, not per socket.
                "capacity": env.int("CHANNEL_LAYER_CAPACITY", default=10_000),
                "expiry": 60,
            },
        }
    }
elif REDIS_URL:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"CHANNEL_LAYER must be 'core' or 'pubsub', not {CHANNEL_LAYER!r}")
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": env.int("CHANNEL_LAYER_CAPACITY", default=10_000)},
        }
    }

# --- Cache: sign-in failures and DRF throttles, shared by every worker --------------------------
# With REDIS_URL, Redis under the channel layer's key prefix (realtime.conf.redis_prefix), so
# one deployment's (or one test's) counters never meet another's; otherwise one process's
# memory, which is the whole deployment on the embedded default (`serve` refuses --workers
# without REDIS_URL). A Redis that does not answer fails the sign-in within
# REDIS_TIMEOUT_SECONDS per call (an error answer, never a wait, never a sign-in uncounted).
CACHES: dict[str, dict[str, Any]]
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            # The designated instance only: given several servers, Django's RedisCache would
            # write to the first and read from the others, as from replicas. A list, since
            # it splits a string at commas, which a redis+sentinel:// URL has.
            "LOCATION": [REDIS_URL],
            "KEY_PREFIX": f"{CHANNEL_LAYERS['default']['CONFIG']['prefix']}:cache",
            # Django's RedisCache passes these to redis-py's connection pool.
            "OPTIONS": {
                "socket_timeout": _redis_timeout,
                "socket_connect_timeout": _redis_timeout,
            },
        }
    }
    if REDIS_TOPOLOGY and REDIS_TOPOLOGY.sentinels:
        CACHES["default"]["OPTIONS"]["pool_class"] = "realtime.conf.SentinelCachePool"
else:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "ts"}
    }
    # axes.W001 warns that memory is not shared between processes; here there is one.
    SILENCED_SYSTEM_CHECKS = ["axes.W001"]

# --- Auth -----------------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out account or address before any password is hashed.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# --- Sign-in throttling (django-axes; OWASP Authentication cheat sheet, "Account lockout") ---
# /accounts/login/, /admin/login/ and POST /api/token/ count failed sign-ins per account
# (username) and per client address (REMOTE_ADDR, see TRUSTED_PROXIES) in the cache above.
# LOGIN_FAILURE_LIMIT failures on either lock it: every further attempt, the right password
# included, answers 429 (pages: HTML; /api/: {"detail", "code": "locked_out"}) with
# Retry-After, until LOGIN_COOLOFF_SECONDS pass without a new attempt. A successful
# sign-in clears its account's and address's counts.
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_FAILURE_LIMIT: int = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(seconds=env.int("LOGIN_COOLOFF_SECONDS", default=15 * 60))
AXES_RESET_ON_SUCCESS = True
# The address is REMOTE_ADDR alone, never a client-chosen X-Forwarded-For.
AXES_CLIENT_IP_CALLABLE = "townsquare.signin.client_address"
AXES_LOCKOUT_CALLABLE = "townsquare.signin.lockout_response"
AXES_HTTP_RESPONSE_CODE = 429
# The cache handler keeps nothing in the database: its admin pages would stay empty.
AXES_ENABLE_ADMIN = False

# --- Internationalization -------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "townsquare.storage.StaticStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Serve straight from the app folders when collectstatic has not run (DEBUG, tests).
SERVESTATIC_USE_FINDERS = DEBUG
SERVESTATIC_AUTOREFRESH = DEBUG

# --- Content Security Policy: no inline scripts, nothing from other origins -----------------
SECURE_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "frame-ancestors": ["'none'"],
}

# --- HTTP API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "realtime.tokens.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_THROTTLE_RATES": {"token": env.str("TOKEN_RATE", default="20/min")},
    # Throttles count per REMOTE_ADDR (already the client's own behind TRUSTED_PROXIES);
    # None would make DRF believe any client's X-Forwarded-For.
    "NUM_PROXIES": 0,
    # A database outage answers a JSON 503 (code "unavailable"), not an HTML 500.
    "EXCEPTION_HANDLER": "realtime.api_errors.api_exception_handler",
}
# The OpenAPI document's description (Markdown), shown at the top of /api/docs/.
API_DESCRIPTION = """
Everything the pages and the WebSocket protocol (`/ws/`, described in the AsyncAPI document
at [`/api/asyncapi.json`](/api/asyncapi.json)) do, over HTTP. Both call the same services, and
every write over HTTP is pushed live to the sockets that follow its stream. The index of this
API is [`/api/`](/api/); this document is `/api/schema/` (YAML; `?format=json` for JSON).

## Signing in
- **Session**: the site's session cookie; unsafe methods then need the CSRF token in the
  `X-CSRFToken` header (this reference sends it when you are signed in to the site).
- **Token**: `POST /api/token/ {username, password}` → `{access, token_type, expires_in}`
  (seconds). Send `Authorization: Bearer <access>`. It is short-lived: ask for a new one when
  it expires. Failed sign-ins are counted per account and per address: past the limit every
  attempt answers `429` with `Retry-After`, `{"code": "locked_out"}`.
- Reads of the shop are public; everything else needs a signed-in user.

## Parts
- **Rooms** (`/api/rooms/`): the rooms you joined and every public room, with your unread
  count, read cursor and last message; create one (name rule, hourly quota: `429` with
  `Retry-After`); join and leave public rooms. A private room answers its non-members
  exactly as a room that does not exist (`404`).
- **Messages** (`/api/rooms/{id}/messages/`): history, newest first; send; edit (author) and
  delete (author, room moderator or staff; a deleted message stays as a tombstone with empty
  text); **reactions** (an emoji on or off, the full state back); each change takes the
  room's next offset, as on the socket.
- **Read cursors** (`POST /api/rooms/{id}/read/ {offset}`): move forward only; the answer
  has `{room, last_read, unread}`; your other tabs hear of it live.
- **Shop items** (`/api/items/`): items with their stock (`PATCH` sets it, staff only);
  **purchases** (`POST /api/items/{id}/purchase/ {quantity}`): never oversold, `409`
  `{"code": "out_of_stock", "requested", "available"}` when there is not enough;
  **watches** (`POST`/`DELETE /api/items/{id}/watch/`): a notification when the stock moves.
- **Notifications** (`/api/notifications/`): your inbox, unread count, mark one or all read.
- **Dashboard feed** (`/api/feed/`): the demo feed's switch (staff) and record count; the
  dashboard's counters themselves arrive over the socket (`dashboard` stream).
- **Publish** (`POST /api/publish/`): trusted backends push an event to any stream, with the
  `X-Townsquare-Key` header.

## Idempotency keys
Sending a message and buying (the `POST`s marked with the `Idempotency-Key` parameter below)
accept an `Idempotency-Key` header (1–255 printable ASCII characters; a UUID is usual), per
signed-in user. A message's `client_id` is a second, socket-shared guard: a message already
sent with it answers `200` with the stored message.
A retry with the same key and body gets the first answer again, with
`Idempotent-Replayed: true`, and writes nothing; the same key with another body is `422`
`idempotency_key_reused`; a retry while the first is still running is `409`
`idempotency_key_in_flight`. A `5xx` records nothing: retry with the same key. Keys are kept
24 hours.

## Errors
Every error is JSON, never an HTML page: `{"detail": "<sentence>", "code": "<code>"}`, with
the codes of the socket's error frames (`invalid`, `not_found`, `forbidden`, `conflict`,
`unavailable`, …) plus the specific ones above. Invalid input is `400` with the messages per
field (`{"<field>": ["<message>"]}`). `401` not signed in, `403` not allowed, `404` unknown
or not yours to see, `429` too many requests (`Retry-After`), `503` the database or Redis is
unavailable (`Retry-After: 1`; nothing was written, retry).

## Pagination
- Room list: a JSON array, `page_size` (default 100, at most 500) a page; the other pages are
  in the `Link` header (`<url>; rel="next"`, `<url>; rel="prev"`).
- Messages: cursor pagination, `{next, previous, results}`; follow `next` (`?cursor=`), whose
  pages stay stable while messages arrive; `page_size` up to 200.
- Notifications: `{count, next, previous, results}`, `?page=` and `page_size` (at most 100).
- Ids are integers `1..2**63-1`; anything else in a path is a `404`.
"""

SPECTACULAR_SETTINGS = {
    "TITLE": "Townsquare API",
    "DESCRIPTION": API_DESCRIPTION,
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # /api/docs/ (townsquare.pages.ApiDocsView) serves Swagger UI from our static files.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Links of /api/ (#/<tag>/<operationId>) open the operation.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True},
    # <id:…> path parameters (townsquare/converters.py): integers 1..2**63-1.
    "PATH_CONVERTER_OVERRIDES": {
        "id": {"type": "integer", "format": "int64", "minimum": 1, "maximum": 2**63 - 1}
    },
}

# --- Townsquare real-time core (see docs/protocol.md) ---------------------------------------
# Only what the environment sets: every default, with what it means, is written once in
# realtime/conf.py (RealtimeSettings; the dashboard's in dashboard/conf.py). Variables:
# RT_<NAME> for a core setting (RT_MAX_FRAME_BYTES, RT_PRESENCE_BACKEND, ...), and
# REDIS_TIMEOUT_SECONDS, PUBLISH_API_KEY, DASHBOARD_MAX_UPDATES_PER_SECOND and
# FEED_INTERVAL_SECONDS by their own names. A key that names no setting, or a value of the
# wrong type, stops the server at startup (check realtime.E001).
TOWNSQUARE_REALTIME: dict[str, Any] = {
    **_rt_environ,
    "dashboard": from_environ(DashboardSettings),
}

# Rooms one user may create per hour (page, API, seed-003 socket); staff are exempt; 0 = no limit.
ROOM_CREATE_QUOTA: int = env.int("ROOM_CREATE_QUOTA", default=10)

# --- Mail (docs/operations.md, "Missed-message mail") -----------------------------------------
# Django's email settings by their own names; the console backend (mails printed to stdout)
# until EMAIL_BACKEND names django.core.mail.backends.smtp.EmailBackend and EMAIL_HOST a server.
EMAIL_BACKEND: str = env.str(
    "EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend"
)
EMAIL_HOST: str = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT: int = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER: str = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD: str = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS: bool = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL: bool = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT: int = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL: str = env.str("DEFAULT_FROM_EMAIL", default="Townsquare <townsquare@localhost>")
# The site's public origin, for links in mails (no trailing slash).
SITE_URL: str = env.str("SITE_URL", default="http://localhost:8000")
# Missed-message mail (chat.missed_mail): after MISSED_MAIL_DELAY_SECONDS with no socket, one
# mail per room per MISSED_MAIL_PERIOD_SECONDS listing up to MISSED_MAIL_MAX_MESSAGES.
MISSED_MAIL_ENABLED: bool = env.bool("MISSED_MAIL_ENABLED", default=True)
MISSED_MAIL_DELAY_SECONDS: int = env.int("MISSED_MAIL_DELAY_SECONDS", default=15 * 60)
MISSED_MAIL_PERIOD_SECONDS: int = env.int("MISSED_MAIL_PERIOD_SECONDS", default=60 * 60)
MISSED_MAIL_MAX_MESSAGES: int = env.int("MISSED_MAIL_MAX_MESSAGES", default=10)
MISSED_MAIL_INTERVAL_SECONDS: int = env.int("MISSED_MAIL_INTERVAL_SECONDS", default=60)

# --- Logging: one line per event; tokens never reach a log -----------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# A line repeated (an outage's warning, a flood's refusal) passes at most once per this many
# seconds, the next one saying how many were dropped; 0 logs every line
# (realtime.logging.RepeatedLinesFilter).
LOG_REPEAT_SECONDS: float = env.float("LOG_REPEAT_SECONDS", default=10.0)
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "repeats": {
            "()": "realtime.logging.RepeatedLinesFilter",
            "interval": LOG_REPEAT_SECONDS,
        },
        "redact_tokens": {"()": "realtime.logging.RedactTokensFilter"},
        "client_faults": {"()": "realtime.logging.ClientFaultsFilter"},
    },
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            # A client's fault becomes an INFO line first; then repeats: a dropped line costs
            # no redaction.
            "filters": ["client_faults", "repeats", "redact_tokens"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "uvicorn": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "uvicorn.error": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "uvicorn.access": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "daphne": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
    },
}
