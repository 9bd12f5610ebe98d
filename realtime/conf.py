"""Settings of the real-time core and of the apps built on it, read through one object.

As DRF's ``api_settings``: one Django setting, ``TOWNSQUARE_REALTIME``, a dict that names
only what differs from the defaults; ``rt_settings()`` returns them over the defaults, which
are written once, here (``RealtimeSettings``). The object is cached and rebuilt when
``TOWNSQUARE_REALTIME`` changes (``override_settings``, pytest-django's ``settings``).

- Core settings are upper-case keys: ``TOWNSQUARE_REALTIME = {"MAX_FRAME_BYTES": 1024}``.
- An app's real-time settings are a section under the app's name, declared by the app as a
  dataclass decorated with ``@settings_section("<name>")`` and read with
  ``rt_settings().section(ThatClass)``: ``{"dashboard": {"MAX_UPDATES_PER_SECOND": 4}}``.
- A key that names no setting or section, or a value of the wrong type, raises
  ``ImproperlyConfigured`` at the first read, and the system check ``realtime.E001`` reports
  it at startup (``manage.py check``, ``runserver``, ``migrate``, ``serve``); a backend path
  that does not import is ``realtime.E002``.
- ``from_environ(cls)`` gives the keys of ``cls`` that the environment sets, parsed to each
  field's type (``RT_<NAME>`` for the core, or the field's ``env`` name): a project's
  ``settings.py`` passes exactly those, so no default is repeated there.
- Backends by dotted path, as Django's ``MESSAGE_STORAGE``: ``PRESENCE_BACKEND``,
  ``LEASE_BACKEND``, ``WORKER_STATS_BACKEND`` (``backend_class(name)``); empty (the default)
  chooses the Redis backend when ``REDIS_URL`` is set, else the memory one.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import types
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

SETTING = "TOWNSQUARE_REALTIME"


def env_name(name: str) -> dict[str, str]:
    """Field metadata: read this field from the environment variable ``name`` (instead of
    the class's ``ENV_PREFIX`` + field name). ``field(default=..., metadata=env_name(...))``."""
    return {"env": name}


@dataclass(frozen=True)
class RealtimeSettings:
    """The core's limits, tunables and backends, with their defaults (the only place they
    are written). Environment: ``RT_<NAME>`` unless a field names another variable."""

    ENV_PREFIX: ClassVar[str] = "RT_"

    # --- Frames (docs/protocol.md, "Limits") ---
    #: Largest client frame accepted, in bytes; a larger one closes the socket with 1009.
    MAX_FRAME_BYTES: int = 64 * 1024
    #: Token bucket per socket: sustained client frames per second, and the burst allowed.
    FRAMES_PER_SECOND: float = 20.0
    FRAME_BURST: int = 40
    #: Frames dropped in a row for the rate limit before the socket is closed with 4029.
    RATE_LIMIT_CLOSE_AFTER: int = 100
    #: Streams one socket may hold at once; one more gets an error frame ``too_many_streams``.
    MAX_STREAMS_PER_SOCKET: int = 100
    #: Unsent output one socket may hold, in characters of encoded JSON (bytes for ASCII);
    #: above it the socket is closed with 4008 (slow reader).
    OUTBOX_MAX_BYTES: int = 4 * 1024 * 1024
    #: Messages a ``subscribe {since}`` replays at most; beyond it the ack says ``truncated``
    #: (the client subscribes again from the last one). One replay is one database read:
    #: 1,000 rows take ~14 ms on SQLite here, the longest another user's subscribe waits.
    REPLAY_MAX: int = 1000
    #: Replay budget per socket, in rows: refilled at this rate (rows per second) up to the
    #: burst. A replay runs whole and is charged after; a ``subscribe {since}`` while the
    #: budget is negative gets ``rate_limited`` with ``retry_after`` (seconds), nothing read.
    REPLAY_ROWS_PER_SECOND: float = 1000.0
    REPLAY_ROWS_BURST: int = 2000
    #: Frames one socket may have read but not yet handled; beyond it the server stops
    #: reading that socket until one is handled (backpressure into TCP).
    MAX_QUEUED_FRAMES: int = 64
    #: Pipelined actions (``pipelined=True``) one socket may have in flight before it stops
    #: reading frames until one of them is answered.
    MAX_PIPELINED: int = 64
    #: Open sockets per signed-in user and per client address in one worker process (0: no
    #: cap); one more is refused at the handshake (HTTP 429, code ``too_many_connections``).
    MAX_SOCKETS_PER_USER: int = 100
    MAX_SOCKETS_PER_ADDRESS: int = 1000
    #: At most one ``typing`` per socket and stream in this many seconds; extras are dropped.
    TYPING_MIN_INTERVAL: float = 2.0
    #: Seconds between heartbeat comments on a quiet ``/sse/`` stream (``realtime.sse``):
    #: proxies and browsers close a response that carries no bytes for a minute or two.
    SSE_HEARTBEAT_SECONDS: float = 15.0

    # --- Access ---
    #: Lifetime of a JWT from ``POST /api/token/``, in seconds.
    JWT_TTL_SECONDS: int = 15 * 60
    #: Key for ``POST /api/publish/`` (header ``X-Townsquare-Key``); empty disables it.
    PUBLISH_API_KEY: str = field(default="", repr=False, metadata=env_name("PUBLISH_API_KEY"))
    #: How long an ``Idempotency-Key`` of the HTTP API and its recorded answer are kept, in
    #: seconds (``realtime.idempotency``); a key used again after this is a new request.
    IDEMPOTENCY_KEY_TTL_SECONDS: int = 24 * 60 * 60

    # --- Redis and the deployment's workers ---
    #: Seconds one Redis call may take where someone waits on it (a group join, a publish, a
    #: presence write, ``/readyz``): a hung Redis (stopped, not dead) answers nothing, and
    #: redis-py waits forever by default; past it the call fails as if Redis were down.
    REDIS_TIMEOUT_SECONDS: float = field(default=1.0, metadata=env_name("REDIS_TIMEOUT_SECONDS"))
    #: How often each worker re-joins the layer groups of its streams, in seconds: the
    #: longest a worker stays deaf after Redis lost group membership (restart, expiry).
    HUB_REFRESH_SECONDS: float = 30.0
    #: How long a durable subscription holds frames that arrived past a gap (offset n+2
    #: before n+1) before fetching the missing ones from the database, in seconds.
    GAP_WAIT_SECONDS: float = 0.25
    #: Leader lease (one process of the deployment runs the leader-only services): lifetime
    #: in seconds; a dead leader is replaced within this time.
    LEASE_TTL_SECONDS: float = 10.0
    #: Start background services with the server (ASGI lifespan, or the first connection).
    BACKGROUND_AUTOSTART: bool = True
    #: Each worker writes its socket and user counts at least this often, in seconds; a
    #: worker silent for three heartbeats counts as gone;
    WORKER_HEARTBEAT_SECONDS: float = 5.0
    #: and at most this often when they change.
    WORKER_FLUSH_SECONDS: float = 0.25
    #: A socket's presence entry lives this long without renewal, in seconds: a worker killed
    #: without closing its sockets has its users shown offline within about this time.
    PRESENCE_TTL_SECONDS: float = 15.0

    # --- Backends (dotted paths; empty: Redis with REDIS_URL, else memory) ---
    #: ``realtime.presence.MemoryStore`` or ``realtime.presence.RedisStore``, or your own.
    PRESENCE_BACKEND: str = ""
    #: ``realtime.lease.LocalLease`` or ``realtime.lease.RedisLease``: called ``(name, ttl)``.
    LEASE_BACKEND: str = ""
    #: ``realtime.worker_stats.MemoryStore`` or ``realtime.worker_stats.RedisStore``.
    WORKER_STATS_BACKEND: str = ""

    def section[T](self, cls: type[T]) -> T:
        """The app section ``cls`` (declared with ``@settings_section``) over its defaults.

        Raises ``ImproperlyConfigured`` for an unknown key or a wrong type in the section.
        """
        return _section(cls)


#: Each backend setting's choices when left empty: (without REDIS_URL, with REDIS_URL).
_AUTO_BACKENDS: dict[str, tuple[str, str]] = {
    "PRESENCE_BACKEND": ("realtime.presence.MemoryStore", "realtime.presence.RedisStore"),
    "LEASE_BACKEND": ("realtime.lease.LocalLease", "realtime.lease.RedisLease"),
    "WORKER_STATS_BACKEND": (
        "realtime.worker_stats.MemoryStore",
        "realtime.worker_stats.RedisStore",
    ),
}

#: App sections by name (``settings_section``).
_sections: dict[str, type[Any]] = {}


def settings_section[T](name: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: declare a frozen dataclass as the app section ``name`` of
    ``TOWNSQUARE_REALTIME``; its fields (upper case, typed, with defaults) are the section's
    settings. Environment variables: the class's ``ENV_PREFIX`` + field name, or a field's
    ``env_name``. Raises ``ImproperlyConfigured`` when another class has taken ``name``."""

    def declare(cls: type[T]) -> type[T]:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__qualname__} must be a dataclass")
        taken = _sections.get(name)
        if taken is not None and taken.__qualname__ != cls.__qualname__:
            raise ImproperlyConfigured(f"{SETTING} section {name!r} is taken by {taken!r}")
        cls.SECTION = name  # type: ignore[attr-defined]
        _sections[name] = cls
        return cls

    return declare


# --- Reading and checking ------------------------------------------------------------------


def _given() -> Mapping[str, Any]:
    given = getattr(settings, SETTING, {})
    if not isinstance(given, Mapping):
        raise ImproperlyConfigured(f"{SETTING} must be a dict, not {type(given).__name__}")
    return given


def _conforms(value: Any, hint: Any) -> bool:
    if hint is bool:
        return isinstance(value, bool)
    if hint is int or hint is float:
        # bool is an int to Python, never a number of frames to an operator.
        allowed = (int,) if hint is int else (int, float)
        return isinstance(value, allowed) and not isinstance(value, bool)
    if hint is type(None):
        return value is None
    if get_origin(hint) in (Union, types.UnionType):
        return any(_conforms(value, arm) for arm in get_args(hint))
    return isinstance(value, hint)


def _build[T](cls: type[T], given: Mapping[str, Any], where: str) -> T:
    """``cls`` over ``given``, each key checked: known, and of the field's type."""
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, value in given.items():
        if key not in names:
            raise ImproperlyConfigured(f"{where}[{key!r}]: no such setting")
        hint = hints[key]
        if not _conforms(value, hint):
            raise ImproperlyConfigured(
                f"{where}[{key!r}] must be {_type_name(hint)}, not {type(value).__name__} "
                f"({value!r})"
            )
        values[key] = float(value) if hint is float else value
    return cls(**values)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint)


def _core(given: Mapping[str, Any]) -> RealtimeSettings:
    core = {k: v for k, v in given.items() if k not in _sections}
    # A section key whose class was not declared yet is unknown only once every app is
    # loaded (an app declares its section in a module its AppConfig imports).
    if not apps.ready:
        core = {k: v for k, v in core.items() if not k.islower()}
    return _build(RealtimeSettings, core, SETTING)


@functools.cache
def _cached() -> RealtimeSettings:
    return _core(_given())


def rt_settings() -> RealtimeSettings:
    """The core's settings: ``TOWNSQUARE_REALTIME`` over the defaults (cached; rebuilt when
    the setting changes). Raises ``ImproperlyConfigured`` for an unknown key or a value of
    the wrong type."""
    if not apps.ready:  # not cached: sections declared later would be missed
        return _core(_given())
    return _cached()


#: Built sections by class (cleared with ``_cached``).
_built_sections: dict[type[Any], Any] = {}


def _section[T](cls: type[T]) -> T:
    built = _built_sections.get(cls)
    if built is None:
        built = _built_sections[cls] = _build_section(cls)
    return built


def _build_section[T](cls: type[T]) -> T:
    name = getattr(cls, "SECTION", None)
    if name is None or _sections.get(name) is not cls:
        raise ImproperlyConfigured(f"{cls.__qualname__} is not declared with @settings_section")
    given = _given().get(name, {})
    if not isinstance(given, Mapping):
        raise ImproperlyConfigured(
            f"{SETTING}[{name!r}] must be a dict, not {type(given).__name__}"
        )
    return _build(cls, given, f"{SETTING}[{name!r}]")


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING:
        _cached.cache_clear()
        _built_sections.clear()


def backend_path(name: str) -> str:
    """The dotted path the backend setting ``name`` (``PRESENCE_BACKEND``, ``LEASE_BACKEND``,
    ``WORKER_STATS_BACKEND``) chooses: its value, or when empty the Redis backend with
    ``REDIS_URL`` and the memory backend without."""
    return getattr(rt_settings(), name) or _AUTO_BACKENDS[name][redis_url() is not None]


def backend_class(name: str) -> Any:
    """The class (or factory) that the backend setting ``name`` names (``backend_path``).
    Raises ``ImproperlyConfigured`` when the path does not import."""
    path = backend_path(name)
    try:
        return import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"{SETTING}[{name!r}]: cannot import {path!r}: {exc}") from exc


@checks.register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``realtime.E001``: an unknown key or a wrong type in ``TOWNSQUARE_REALTIME`` (core or
    a section); ``realtime.E002``: a backend setting whose dotted path does not import."""
    try:
        rt_settings()  # core keys, and section names (any other key)
        given = _given()
        for name, cls in _sections.items():
            if name in given:
                _section(cls)
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="realtime.E001")]
    errors: list[checks.CheckMessage] = []
    for name in _AUTO_BACKENDS:
        try:
            backend_class(name)
        except ImproperlyConfigured as exc:
            errors.append(checks.Error(str(exc), id="realtime.E002"))
    return errors


# --- The environment ------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(text: str, hint: Any, variable: str) -> Any:
    try:
        if hint is bool:
            word = text.strip().lower()
            if word not in _TRUE | _FALSE:
                raise ValueError(f"not one of {sorted(_TRUE | _FALSE)}")
            return word in _TRUE
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"environment variable {variable}={text!r} must be {_type_name(hint)}: {exc}"
        ) from exc
    return text


def from_environ(cls: type[Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings of ``cls`` (``RealtimeSettings`` or a section) that the environment sets,
    parsed to each field's type: ``{"MAX_FRAME_BYTES": 1024}`` for ``RT_MAX_FRAME_BYTES=1024``.

    A variable is ``cls.ENV_PREFIX`` + the field's name, or the field's ``env_name``. Unset
    variables are left out, so the defaults stay in ``cls``. Booleans: 1/true/yes/on or
    0/false/no/off. Raises ``ImproperlyConfigured`` for a value that does not parse.
    """
    environ = os.environ if environ is None else environ
    hints = get_type_hints(cls)
    prefix = getattr(cls, "ENV_PREFIX", "")
    given: dict[str, Any] = {}
    for f in fields(cls):
        variable = f.metadata.get("env", prefix + f.name)
        if variable in environ:
            given[f.name] = _parse(environ[variable], hints[f.name], variable)
    return given


# --- Redis ----------------------------------------------------------------------------------

#: The scheme of a URL that names a master through Sentinel instead of a host:
#: ``redis+sentinel://<host>:<port>[,<host>:<port>...]/<master name>[/<db>]``.
SENTINEL_SCHEME = "redis+sentinel"
_URL_SCHEMES = ("redis://", "rediss://", "unix://")


@dataclass(frozen=True)
class RedisTopology:
    """The deployment's Redis: the channel layer's shards, and the one instance of the rest.

    Either ``urls`` (one shard per Redis URL) or ``sentinels`` with ``masters`` (one shard per
    master that the sentinels watch). The first shard is the *designated* instance: presence,
    worker statistics, leases and the cache live there alone (``url``), because a lease needs
    one authority and the rest is small (docs/operations.md, "Redis topology").
    """

    urls: tuple[str, ...] = ()
    #: Sentinel addresses, ``(host, port)``.
    sentinels: tuple[tuple[str, int], ...] = ()
    #: Master names, as the sentinels know them (``sentinel monitor <name> ...``).
    masters: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        """The designated instance: the first URL, or a ``redis+sentinel://`` URL of the
        first master (``async_redis`` and ``SentinelCachePool`` understand it)."""
        if self.urls:
            return self.urls[0]
        return sentinel_url(self.sentinels, self.masters[0])

    @property
    def shards(self) -> int:
        return len(self.urls) or len(self.masters)

    def layer_hosts(self, **options: Any) -> list[dict[str, Any]]:
        """channels_redis ``hosts`` (either layer), one host dict per shard, in order.

        ``options`` (redis-py connection keywords, e.g. ``socket_timeout``) go into every
        host dict; with Sentinel the ``socket_*`` ones also bound each call to a sentinel
        (``sentinel_kwargs``), which redis-py otherwise lets wait forever.
        """
        if self.urls:
            return [{"address": url, **options} for url in self.urls]
        sentinel_options = {k: v for k, v in options.items() if k.startswith("socket_")}
        return [
            {
                "sentinels": [list(address) for address in self.sentinels],
                "master_name": master,
                "sentinel_kwargs": sentinel_options,
                **options,
            }
            for master in self.masters
        ]


def _split(text: str, variable: str) -> list[str]:
    parts = [part.strip() for part in text.split(",")]
    if any(not part for part in parts):
        raise ImproperlyConfigured(f"{variable}={text!r}: an empty item in the list")
    if len(set(parts)) != len(parts):
        raise ImproperlyConfigured(f"{variable}={text!r}: an item is given twice")
    return parts


def _address(text: str, variable: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # [::1]:26379
    if not colon or not host or not port.isascii() or not port.isdigit():
        raise ImproperlyConfigured(f"{variable}: {text!r} is not host:port")
    if not 0 < int(port) < 65536:
        raise ImproperlyConfigured(f"{variable}: {text!r} has no valid port")
    return host, int(port)


def redis_topology(
    url: str | None, sentinels: str | None = None, master: str | None = None
) -> RedisTopology | None:
    """The deployment's Redis from its environment: ``REDIS_URL`` (one URL, or several
    separated by commas: the channel layer's shards), or ``REDIS_SENTINELS`` (``host:port``
    of each sentinel, comma-separated) with ``REDIS_SENTINEL_MASTER`` (the master's name;
    several comma-separated names shard the layer over several masters). None when neither
    is set (the in-memory layer of one process).

    Raises ``ImproperlyConfigured`` for both set, a URL of another scheme, a sentinel that is
    not ``host:port``, a missing master name, or an empty or repeated item.
    """
    url, sentinels, master = (v.strip() if v else "" for v in (url, sentinels, master))
    if url and sentinels:
        raise ImproperlyConfigured("set REDIS_URL or REDIS_SENTINELS, not both")
    if url:
        urls = _split(url, "REDIS_URL")
        for item in urls:
            if not item.startswith(_URL_SCHEMES):
                raise ImproperlyConfigured(
                    f"REDIS_URL: {item!r} is not a redis://, rediss:// or unix:// URL"
                )
        return RedisTopology(urls=tuple(urls))
    if sentinels:
        if not master:
            raise ImproperlyConfigured("REDIS_SENTINELS needs REDIS_SENTINEL_MASTER")
        items = _split(sentinels, "REDIS_SENTINELS")
        addresses = tuple(_address(item, "REDIS_SENTINELS") for item in items)
        return RedisTopology(
            sentinels=addresses, masters=tuple(_split(master, "REDIS_SENTINEL_MASTER"))
        )
    if master:
        raise ImproperlyConfigured("REDIS_SENTINEL_MASTER needs REDIS_SENTINELS")
    return None


def sentinel_url(sentinels: Collection[tuple[str, int]], master: str, db: int = 0) -> str:
    """``redis+sentinel://h1:p1,h2:p2/<master>/<db>``: a master reached through sentinels."""
    hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in sentinels)
    return f"{SENTINEL_SCHEME}://{hosts}/{master}/{db}"


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, int]:
    """``(sentinels, master name, db)`` of a ``redis+sentinel://`` URL (``sentinel_url``).
    Raises ``ValueError`` for another scheme, no sentinel, no master or a db not a number."""
    prefix = f"{SENTINEL_SCHEME}://"
    if not url.startswith(prefix):
        raise ValueError(f"not a {SENTINEL_SCHEME} URL: {url!r}")
    hosts, _, path = url.removeprefix(prefix).partition("/")
    master, _, db = path.strip("/").partition("/")
    if not hosts or not master or (db and not db.isdigit()):
        raise ValueError(f"expected {prefix}host:port[,host:port]/master[/db], not {url!r}")
    try:
        sentinels = [_address(a, "sentinel URL") for a in _split(hosts, "sentinel URL")]
    except ImproperlyConfigured as exc:
        raise ValueError(str(exc)) from None
    return sentinels, master, int(db or 0)


def is_sentinel_url(url: str) -> bool:
    return url.startswith(f"{SENTINEL_SCHEME}://")


def redis_prefix() -> str:
    """The key prefix of everything Townsquare keeps in Redis (the channel layer's prefix),
    so that one deployment's leases, presence and statistics never meet another's."""
    return str(settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("prefix", "townsquare"))


def redis_url() -> str | None:
    """The project's ``REDIS_URL`` setting, or None when it is unset or empty: a project that
    does not define it runs on one process's memory.

    In Townsquare's settings this is the *designated* instance (``RedisTopology.url``): the
    first of several shards, or a ``redis+sentinel://`` URL of the first master.
    """
    url = getattr(settings, "REDIS_URL", None)
    return str(url) if url else None


def redis_location() -> tuple[str, str] | None:
    """``(REDIS_URL, redis_prefix())`` for the stores shared by the deployment's workers
    (presence, worker stats, leases), or None on the embedded default (one process)."""
    url = redis_url()
    return (url, redis_prefix()) if url else None


def require_redis_location(backend: str) -> tuple[str, str]:
    """``redis_location()``, or ``ImproperlyConfigured`` naming ``backend`` without one."""
    location = redis_location()
    if location is None:
        raise ImproperlyConfigured(f"{backend} needs REDIS_URL")
    return location


def redis_timeout() -> float:
    """Seconds one call to Redis may take on a path someone waits on (``REDIS_TIMEOUT_SECONDS``,
    default 1.0): a group join, a publish, a presence write, a readiness probe.

    A hung Redis (stopped, not dead: its port still accepts connections) answers nothing, and
    redis-py waits forever by default; past this bound the call raises ``TimeoutError`` and
    the caller degrades (``unavailable``, a failed publish that the database repairs).
    """
    return rt_settings().REDIS_TIMEOUT_SECONDS


def async_redis(url: str) -> Any:
    """An asyncio Redis client for the stores shared by the workers (presence, worker
    statistics, leases) whose every call gives up after ``redis_timeout()`` seconds.

    ``url`` is a Redis URL, or a ``redis+sentinel://`` URL (``sentinel_url``): then the
    client asks the sentinels for the master's address at each (re)connect, so after a
    failover it follows the promoted replica (calls fail until the promotion).

    One immediate retry (a pooled connection left from before a Redis restart fails once),
    not redis-py's default retries with backoff: a subscribe or a request may be waiting.
    Returns ``redis.asyncio.Redis``. Raises ``ValueError`` for a malformed sentinel URL.
    """
    import redis.asyncio as redis
    from redis.asyncio.retry import Retry
    from redis.asyncio.sentinel import Sentinel
    from redis.backoff import NoBackoff

    timeout = redis_timeout()
    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if is_sentinel_url(url):
        sentinels, master, db = parse_sentinel_url(url)
        return Sentinel(sentinels, sentinel_kwargs=options).master_for(
            master, db=db, retry=Retry(NoBackoff(), 1), **options
        )
    return redis.Redis.from_url(url, retry=Retry(NoBackoff(), 1), **options)


class SentinelCachePool:
    """Django ``RedisCache``'s ``pool_class`` (``OPTIONS``) for a ``redis+sentinel://``
    ``LOCATION``: a synchronous redis-py pool whose connections go to the master that the
    sentinels name at connect time. Django calls ``from_url(location, **OPTIONS)``."""

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Any:
        from redis.sentinel import Sentinel, SentinelConnectionPool

        sentinels, master, db = parse_sentinel_url(url)
        sentinel_options = {k: v for k, v in options.items() if k.startswith("socket_")}
        return SentinelConnectionPool(
            master, Sentinel(sentinels, sentinel_kwargs=sentinel_options), db=db, **options
        )
