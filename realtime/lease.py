"""Leases: at most one process of a deployment holds a named lease at a time (a leader).

With Redis (``REDIS_URL``) a lease is a key set with ``SET NX PX <ttl>`` and renewed by its
holder with a compare-and-set script, the single-instance lock pattern from the Redis
documentation ("Distributed locks with Redis"). A holder that stops renewing (crash, SIGKILL,
a stalled event loop) loses the lease after ``ttl_seconds``; another process takes it over.
Without Redis there is one process, and it always holds its leases.

A lease is not a fence: a holder stalled past its ttl may still act once more. Work that must
happen at most once per interval is also guarded where it is written (the feed ticker's
conditional UPDATE).
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from typing import Protocol

from django.conf import settings

from .conf import async_redis, redis_prefix, redis_timeout

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return 1
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

#: This process, as other processes see it: ``host:pid:random``.
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Lease(Protocol):
    """A named lease; ``acquire`` takes or renews it."""

    name: str
    ttl_seconds: float

    async def acquire(self) -> bool:
        """Take or renew the lease; True while this process holds it."""

    async def release(self) -> None:
        """Give the lease up if this process holds it."""


class LocalLease:
    """The embedded default: one process, which always holds its leases."""

    def __init__(self, name: str, ttl_seconds: float) -> None:
        self.name = name
        self.ttl_seconds = ttl_seconds

    async def acquire(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class RedisLease:
    """A lease kept in Redis under ``<REDIS_PREFIX>:lease:<name>``.

    Each call is bounded by ``REDIS_TIMEOUT_SECONDS`` and raises ``TimeoutError`` past it (a
    hung Redis); the caller decides what an unanswered renewal means (``background.Runner``).
    """

    def __init__(
        self, name: str, ttl_seconds: float, *, url: str, prefix: str, holder: str = WORKER_ID
    ) -> None:
        self.name = name
        self.holder = holder
        self.ttl_seconds = ttl_seconds
        self.key = f"{prefix}:lease:{name}"
        self._redis = async_redis(url)

    async def acquire(self) -> bool:
        ttl_ms = max(1, int(self.ttl_seconds * 1000))
        async with asyncio.timeout(redis_timeout()):
            held = await self._redis.eval(_RENEW, 1, self.key, self.holder, ttl_ms)
        return bool(held)

    async def release(self) -> None:
        async with asyncio.timeout(redis_timeout()):
            await self._redis.eval(_RELEASE, 1, self.key, self.holder)


def get_lease(name: str, ttl_seconds: float) -> Lease:
    """A Redis lease when ``REDIS_URL`` is set, else a local one."""
    if settings.REDIS_URL:
        prefix = redis_prefix()
        return RedisLease(name, ttl_seconds, url=settings.REDIS_URL, prefix=prefix)
    return LocalLease(name, ttl_seconds)
