"""Leases: at most one process of a deployment holds a named lease at a time (a leader).

With Redis (``REDIS_URL``) a lease is a key set with ``SET NX PX <ttl>`` and renewed by its
holder with a compare-and-set script, the single-instance lock pattern from the Redis
documentation ("Distributed locks with Redis"). A holder that stops renewing (crash, SIGKILL,
a stalled event loop) loses the lease after ``ttl_seconds``; another process takes it over.
Without Redis there is one process, and it always holds its leases.

The backend is the setting ``LEASE_BACKEND`` (a dotted path to a class called
``(name, ttl_seconds)``): ``realtime.lease.RedisLease`` when ``REDIS_URL`` is set, else
``realtime.lease.LocalLease`` (``realtime.conf.backend_class``).

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

from .conf import async_redis, backend_class, redis_timeout, require_redis_location

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

    ``url`` and ``prefix`` default to ``realtime.conf.redis_location()``
    (``ImproperlyConfigured`` without ``REDIS_URL``). Each call is bounded by
    ``REDIS_TIMEOUT_SECONDS`` and raises ``TimeoutError`` past it (a hung Redis); the caller
    decides what an unanswered renewal means (``background.Runner``).
    """

    def __init__(
        self,
        name: str,
        ttl_seconds: float,
        *,
        url: str | None = None,
        prefix: str | None = None,
        holder: str = WORKER_ID,
    ) -> None:
        if url is None or prefix is None:
            url, prefix = require_redis_location("realtime.lease.RedisLease")
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
    """A new lease of the ``LEASE_BACKEND`` class: Redis when ``REDIS_URL`` is set, else a
    local one. Raises ``ImproperlyConfigured`` when the setting's path does not import."""
    lease: Lease = backend_class("LEASE_BACKEND")(name, ttl_seconds)
    return lease
