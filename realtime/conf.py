"""Settings of the real-time core, read through one object (as DRF's `api_settings`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver


@dataclass(frozen=True)
class RealtimeSettings:
    """Limits and tunables; each field documented in `townsquare/settings.py`."""

    MAX_FRAME_BYTES: int = 64 * 1024
    FRAMES_PER_SECOND: float = 20.0
    FRAME_BURST: int = 40
    RATE_LIMIT_CLOSE_AFTER: int = 100
    MAX_STREAMS_PER_SOCKET: int = 100
    OUTBOX_MAX_BYTES: int = 4 * 1024 * 1024
    REPLAY_MAX: int = 1000
    REPLAY_ROWS_PER_SECOND: float = 1000.0
    REPLAY_ROWS_BURST: int = 2000
    MAX_QUEUED_FRAMES: int = 64
    MAX_SOCKETS_PER_USER: int = 100
    MAX_SOCKETS_PER_ADDRESS: int = 1000
    JWT_TTL_SECONDS: int = 15 * 60
    HUB_REFRESH_SECONDS: float = 30.0
    GAP_WAIT_SECONDS: float = 0.25
    LEASE_TTL_SECONDS: float = 10.0
    BACKGROUND_AUTOSTART: bool = True
    WORKER_HEARTBEAT_SECONDS: float = 5.0
    WORKER_FLUSH_SECONDS: float = 0.25
    PRESENCE_TTL_SECONDS: float = 15.0
    TYPING_MIN_INTERVAL: float = 2.0


@functools.cache
def rt_settings() -> RealtimeSettings:
    """Return the `TOWNSQUARE_REALTIME` settings over the defaults (cached; reset on change)."""
    given: dict[str, Any] = getattr(settings, "TOWNSQUARE_REALTIME", {})
    known = {f.name for f in fields(RealtimeSettings)}
    return RealtimeSettings(**{k: v for k, v in given.items() if k in known})


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "TOWNSQUARE_REALTIME":
        rt_settings.cache_clear()


def redis_prefix() -> str:
    """The key prefix of everything Townsquare keeps in Redis (the channel layer's prefix),
    so that one deployment's leases, presence and statistics never meet another's."""
    return str(settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("prefix", "townsquare"))


def redis_location() -> tuple[str, str] | None:
    """``(REDIS_URL, redis_prefix())`` for the stores shared by the deployment's workers
    (presence, worker stats), or None on the embedded default (one process: memory)."""
    return (settings.REDIS_URL, redis_prefix()) if settings.REDIS_URL else None


def redis_timeout() -> float:
    """Seconds one call to Redis may take on a path someone waits on (``REDIS_TIMEOUT_SECONDS``,
    default 1.0): a group join, a publish, a presence write, a readiness probe.

    A hung Redis (stopped, not dead: its port still accepts connections) answers nothing, and
    redis-py waits forever by default; past this bound the call raises ``TimeoutError`` and
    the caller degrades (``unavailable``, a failed publish that the database repairs).
    """
    return float(getattr(settings, "REDIS_TIMEOUT_SECONDS", 1.0))


def async_redis(url: str) -> Any:
    """An asyncio Redis client for the stores shared by the workers (presence, worker
    statistics, leases) whose every call gives up after ``redis_timeout()`` seconds.

    One immediate retry (a pooled connection left from before a Redis restart fails once),
    not redis-py's default retries with backoff: a subscribe or a request may be waiting.
    Returns ``redis.asyncio.Redis``.
    """
    import redis.asyncio as redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    timeout = redis_timeout()
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
    )
