"""Presence stores: first/last socket transitions, renewal, expiry and reaping; memory and
the real Redis give the same answers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from realtime.presence import MemoryStore, RedisStore, Store
from tests.pg import scratch_redis

ALICE = {"id": 1, "username": "alice"}
BOB = {"id": 2, "username": "bob"}


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    with scratch_redis() as (url, prefix):
        yield RedisStore(url, prefix)


async def test_first_and_last_socket_of_a_user_are_the_transitions(store: Store) -> None:
    later = time.time() + 60
    assert await store.join("chat:room:1", ALICE, "a1", later) is True
    assert await store.join("chat:room:1", ALICE, "a2", later) is False  # second tab
    assert await store.join("chat:room:1", BOB, "b1", later) is True
    assert await store.join("chat:room:2", ALICE, "a1", later) is True  # another stream
    assert await store.online("chat:room:1") == [ALICE, BOB]
    assert await store.leave("chat:room:1", ALICE, "a1") is False  # a2 still open
    assert await store.leave("chat:room:1", ALICE, "a1") is False  # already gone
    assert await store.leave("chat:room:1", ALICE, "a2") is True
    assert await store.online("chat:room:1") == [BOB]


async def test_expired_entries_are_reaped_once_and_renewal_keeps_them(store: Store) -> None:
    now = time.time()
    await store.join("chat:room:1", ALICE, "a1", now + 1)  # a worker that will die
    await store.join("chat:room:1", ALICE, "a2", now + 1)
    await store.join("chat:room:1", BOB, "b1", now + 1)
    await store.renew([("chat:room:1", BOB, "b1")], now + 60)  # bob's worker lives
    assert await store.reap(now) == []
    gone = await store.reap(now + 2)
    assert gone == [("chat:room:1", ALICE)]  # once, though she had two sockets
    assert await store.reap(now + 2) == []
    assert await store.online("chat:room:1") == [BOB]
    assert await store.leave("chat:room:1", ALICE, "a1") is False


async def test_online_ignores_expired_entries_before_reaping(store: Store) -> None:
    await store.join("chat:room:3", ALICE, "a1", time.time() - 1)
    assert await store.online("chat:room:3") == []


async def test_the_redis_index_forgets_streams_everyone_left() -> None:
    with scratch_redis() as (url, prefix):
        store = RedisStore(url, prefix)
        # The index is the documented ``<prefix>:presence`` set, read with a client of our own.
        client = Redis.from_url(url)
        index = f"{prefix}:presence"
        try:
            await store.join("chat:room:9", ALICE, "a1", time.time() + 60)
            assert await client.smembers(index) == {b"chat:room:9"}
            await store.leave("chat:room:9", ALICE, "a1")
            assert await store.reap(time.time()) == []
            assert await client.smembers(index) == set()
        finally:
            await client.aclose()
