"""Leases against the real Redis: one holder at a time, renewal, expiry, release."""

from __future__ import annotations

import asyncio

from realtime.lease import RedisLease
from tests.pg import scratch_redis


async def test_one_holder_at_a_time_until_it_releases_or_expires() -> None:
    with scratch_redis() as (url, prefix):
        a = RedisLease("leader", 0.5, url=url, prefix=prefix, holder="a")
        b = RedisLease("leader", 0.5, url=url, prefix=prefix, holder="b")
        assert await a.acquire() is True
        assert await b.acquire() is False
        assert await a.acquire() is True  # renewal by the holder
        await b.release()  # not b's to release
        assert await b.acquire() is False
        await a.release()
        assert await b.acquire() is True
        # b stops renewing (a crashed worker): after the ttl the lease is free again. The wait
        # is the thing under test: expiry is time passing, with no event to await.
        assert await a.acquire() is False
        await asyncio.sleep(0.6)
        assert await a.acquire() is True
        assert await b.acquire() is False
