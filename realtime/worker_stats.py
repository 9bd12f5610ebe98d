"""Worker statistics: what each worker process serves, shared across the deployment
(sockets, signed-in users, events per second).

Each process keeps its own numbers in ``local`` (changed on the event loop by the socket
signals) and in ``realtime.publish.counts`` (events published per second: publish keeps that
counter itself and never imports this module, so the statistics sit above publish and below
nothing) and writes them to a store when they change (at most every ``WORKER_FLUSH_SECONDS``)
and on a heartbeat (``WORKER_HEARTBEAT_SECONDS``). Readers see every live worker; a worker
that died without saying so (SIGKILL) drops out once its last write is older than three
heartbeats.

The module has two parts: this process's numbers and the flusher (top), and the shared
store (``Store``, ``MemoryStore``, ``RedisStore``, ``get_store``: bottom), kept apart so the
store's backend can be chosen on its own.

Stores: Redis (``RedisStore``: a hash of workers and one counter per second of events) or
this process's memory (``MemoryStore``); the setting ``WORKER_STATS_BACKEND`` names one by
dotted path, and by default it is Redis when ``REDIS_URL`` is set, else memory. After each
write the worker publishes ``workers.changed`` on the internal stream ``sys:workers`` so that
listeners (the dashboard) recompute because something happened, not on a poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from django.dispatch import receiver

from . import publish, signals
from .conf import async_redis, backend_class, redis_timeout, require_redis_location, rt_settings
from .lease import WORKER_ID
from .publish import apublish

logger = logging.getLogger(__name__)

#: Internal stream announcing that the shared worker numbers changed.
WORKERS_STREAM = "sys:workers"
#: Seconds of per-second event counts kept.
SERIES_SECONDS = 300


@dataclass
class LocalStats:
    """This process's numbers. Mutated only on the event loop."""

    sockets: int = 0
    users: Counter[int] = field(default_factory=Counter)
    changed: asyncio.Event | None = None

    def mark(self) -> None:
        """Wake the flusher (if it runs): the numbers changed."""
        if self.changed is not None:
            self.changed.set()

    def snapshot(self) -> dict[str, Any]:
        return {"sockets": self.sockets, "users": sorted(self.users), "at": time.time()}


local = LocalStats()


@receiver(signals.socket_opened)
def _opened(sender: Any, consumer: Any, **kwargs: Any) -> None:
    local.sockets += 1
    user = consumer.scope.get("user")
    if user is not None and user.is_authenticated:
        local.users[user.pk] += 1
    local.mark()


@receiver(signals.socket_closed)
def _closed(sender: Any, consumer: Any, **kwargs: Any) -> None:
    local.sockets -= 1
    user = consumer.scope.get("user")
    if user is not None and user.is_authenticated:
        local.users[user.pk] -= 1
        if local.users[user.pk] <= 0:
            del local.users[user.pk]
    local.mark()


class StatsUnavailable(Exception):
    """The shared store could not be read: who is connected on other workers is unknown."""


# --- The shared store ------------------------------------------------------------------------
# Where every worker's numbers meet. Everything below is the store's: the protocol, the two
# backends and the choice between them; the rest of the module uses only ``get_store()``.


class Store(Protocol):
    async def put(self, worker: str, stats: dict[str, Any], events: dict[int, int]) -> None:
        """Write one worker's numbers and add its per-second event counts."""

    async def workers(self, max_age: float, *, strict: bool = False) -> dict[str, dict[str, Any]]:
        """Every worker written within ``max_age`` seconds: ``{worker: {sockets, users, at}}``.

        ``strict``: raise ``StatsUnavailable`` where a shared store would answer with this
        worker alone (its fallback when it cannot be read)."""

    async def event_series(self, start: int, seconds: int) -> list[int]:
        """Events per second for ``seconds`` seconds from epoch second ``start``."""


class MemoryStore:
    """The embedded default: one process, its own memory."""

    def __init__(self) -> None:
        self._workers: dict[str, dict[str, Any]] = {}
        self._events: Counter[int] = Counter()

    async def put(self, worker: str, stats: dict[str, Any], events: dict[int, int]) -> None:
        self._workers[worker] = stats
        self._events.update(events)
        horizon = int(time.time()) - SERIES_SECONDS - 5
        for second in [s for s in self._events if s < horizon]:
            del self._events[second]

    async def workers(self, max_age: float, *, strict: bool = False) -> dict[str, dict[str, Any]]:
        cutoff = time.time() - max_age
        return {w: s for w, s in self._workers.items() if s["at"] >= cutoff}

    async def event_series(self, start: int, seconds: int) -> list[int]:
        return [self._events.get(start + i, 0) for i in range(seconds)]


class RedisStore:
    """Workers in the hash ``<prefix>:workers``; events in ``<prefix>:events:<second>``.

    Every call is bounded by ``REDIS_TIMEOUT_SECONDS`` (``TimeoutError`` past it). The reads
    serve the dashboard's snapshot, which a subscribe computes on the database thread that
    every socket shares: after a failure they answer at once from ``fallback`` for
    ``REDIS_TIMEOUT_SECONDS`` × 5 instead of waiting on Redis again (a hung Redis would
    otherwise hold that thread a timeout per snapshot). ``url`` and ``prefix`` default to
    ``realtime.conf.redis_location()`` (``ImproperlyConfigured`` without ``REDIS_URL``).
    """

    def __init__(self, url: str | None = None, prefix: str | None = None) -> None:
        if url is None or prefix is None:
            url, prefix = require_redis_location("realtime.worker_stats.RedisStore")
        self._redis = async_redis(url)
        self._workers_key = f"{prefix}:workers"
        self._events_prefix = f"{prefix}:events:"
        self._down_until = -float("inf")  # monotonic time until which reads skip Redis

    def _skip(self) -> bool:
        return time.monotonic() < self._down_until

    def _failed(self, what: str, exc: Exception) -> None:
        self._down_until = time.monotonic() + 5 * redis_timeout()
        logger.warning("event=workers.store_failed op=%s error=%s", what, type(exc).__name__)

    async def put(self, worker: str, stats: dict[str, Any], events: dict[int, int]) -> None:
        pipeline = self._redis.pipeline(transaction=False)
        async with asyncio.timeout(redis_timeout()), pipeline as pipe:
            pipe.hset(self._workers_key, worker, orjson.dumps(stats))
            for second, n in events.items():
                key = f"{self._events_prefix}{second}"
                pipe.incrby(key, n)
                pipe.expire(key, SERIES_SECONDS + 10)
            await pipe.execute()

    async def workers(self, max_age: float, *, strict: bool = False) -> dict[str, dict[str, Any]]:
        """Every worker written within ``max_age`` s; this worker alone when Redis fails
        (``StatsUnavailable`` instead when ``strict``: Redis is then always asked)."""
        own = {WORKER_ID: local.snapshot()}
        if self._skip() and not strict:
            return own
        try:
            async with asyncio.timeout(redis_timeout()):
                raw = await self._redis.hgetall(self._workers_key)
        except Exception as exc:
            self._failed("workers", exc)
            if strict:
                raise StatsUnavailable(f"the workers' store did not answer: {exc!r}") from exc
            return own
        cutoff = time.time() - max_age
        found, stale = {}, []
        for worker, value in raw.items():
            stats = orjson.loads(value)
            if stats["at"] >= cutoff:
                found[worker.decode() if isinstance(worker, bytes) else worker] = stats
            else:
                stale.append(worker)
        if stale:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(redis_timeout()):
                    await self._redis.hdel(self._workers_key, *stale)
        return found

    async def event_series(self, start: int, seconds: int) -> list[int]:
        """Events per second; zeros when Redis fails (the chart shows a gap, not an error)."""
        if self._skip():
            return [0] * seconds
        keys = [f"{self._events_prefix}{start + i}" for i in range(seconds)]
        try:
            async with asyncio.timeout(redis_timeout()):
                values = await self._redis.mget(keys)
        except Exception as exc:
            self._failed("event_series", exc)
            return [0] * seconds
        return [int(v) if v is not None else 0 for v in values]


_store: Store | None = None


def get_store() -> Store:
    """The deployment's store, made at the first call from ``WORKER_STATS_BACKEND`` (Redis
    when ``REDIS_URL`` is set, else memory). Raises ``ImproperlyConfigured`` when the
    setting's path does not import."""
    global _store
    if _store is None:
        _store = backend_class("WORKER_STATS_BACKEND")()
    return _store


def set_store(store: Store | None) -> None:
    """Use ``store`` from now on (tests); None: choose again at the next ``get_store()``."""
    global _store
    _store = store


# --- Reading and writing ----------------------------------------------------------------------


async def deployment() -> dict[str, Any]:
    """Numbers across live workers: ``{sockets: {total, workers: {id: n}}, users_online}``."""
    limits = rt_settings()
    workers = await get_store().workers(max_age=3 * limits.WORKER_HEARTBEAT_SECONDS)
    users: set[int] = set()
    for stats in workers.values():
        users.update(stats["users"])
    return {
        "sockets": {
            "total": sum(s["sockets"] for s in workers.values()),
            "workers": {w: s["sockets"] for w, s in sorted(workers.items())},
        },
        "users_online": len(users),
    }


async def users_connected() -> set[int]:
    """The ids of the users with at least one open socket (any endpoint) on any live worker.

    This process's sockets as they are now; other workers' as of their last write (at most
    ``WORKER_FLUSH_SECONDS`` old; a worker silent for three ``WORKER_HEARTBEAT_SECONDS``
    counts as gone, as in ``deployment``). One store read (a Redis ``HGETALL``) whatever
    the number of users: call it once per batch of decisions, not per user.

    Raises:
        StatsUnavailable: the shared store did not answer (Redis down or hung). Absence from
            the answer then says nothing, so a caller acting on "not connected" (a mail to
            an offline user) must skip its run instead.
    """
    limits = rt_settings()
    workers = await get_store().workers(max_age=3 * limits.WORKER_HEARTBEAT_SECONDS, strict=True)
    users = set(local.users)
    for stats in workers.values():
        users.update(stats["users"])
    return users


async def run_flusher() -> None:
    """Background service (every process): write ``local`` and the publish counts to the
    store when they change."""
    limits = rt_settings()
    # One event wakes the flusher for both: a socket coming or going, an event published.
    # Read through the module: tests give publish a fresh counter.
    counts = publish.counts
    local.changed = counts.changed = changed = asyncio.Event()
    store = get_store()
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), limits.WORKER_HEARTBEAT_SECONDS)
        changed.clear()
        events = counts.take()
        try:
            await store.put(WORKER_ID, local.snapshot(), events)
        except Exception as exc:
            # Redis down or hung: keep the counts for the next write (the series may show
            # them a few seconds late), and try again on the next change or heartbeat.
            counts.give_back(events, horizon=int(time.time()) - SERIES_SECONDS)
            logger.warning("event=workers.flush_failed error=%s", type(exc).__name__)
            await asyncio.sleep(limits.WORKER_FLUSH_SECONDS)
            continue
        await apublish(WORKERS_STREAM, "workers.changed", {"worker": WORKER_ID})
        # Conflate: changes during this pause go out together in the next write.
        await asyncio.sleep(limits.WORKER_FLUSH_SECONDS)
