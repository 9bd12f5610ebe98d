"""``worker_stats.users_connected``: who has an open socket on any live worker."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from realtime import worker_stats

from .conftest import communicator, session_cookie


@pytest.fixture
def store() -> Iterator[worker_stats.MemoryStore]:
    memory = worker_stats.MemoryStore()
    worker_stats.set_store(memory)
    yield memory
    worker_stats.set_store(None)


@pytest.mark.django_db(transaction=True)
async def test_this_workers_sockets_and_the_other_live_workers_users(
    store: worker_stats.MemoryStore, alice: User
) -> None:
    now = time.time()
    await store.put("other:1", {"sockets": 2, "users": [41, 42], "at": now}, {})
    await store.put("dead:2", {"sockets": 1, "users": [99], "at": now - 3600}, {})
    assert alice.pk not in await worker_stats.users_connected()
    socket = communicator("/ws/", cookie=await database_sync_to_async(session_cookie)(alice))
    connected, _ = await socket.connect()
    assert connected
    try:
        # This process's socket counts at once, before any flush; a dead worker's never.
        assert await worker_stats.users_connected() == {41, 42, alice.pk}
    finally:
        await socket.disconnect()
    assert await worker_stats.users_connected() == {41, 42}


async def test_an_unreachable_store_raises_instead_of_answering_with_this_worker_alone() -> None:
    # Port 1: nothing listens there, the connection is refused at once.
    unreachable = worker_stats.RedisStore(url="redis://127.0.0.1:1/0", prefix="t")
    worker_stats.set_store(unreachable)
    try:
        with pytest.raises(worker_stats.StatsUnavailable):
            await worker_stats.users_connected()
        # The dashboard's lenient read still answers, with this worker alone...
        assert list(await unreachable.workers(max_age=60)) == [worker_stats.WORKER_ID]
        # ...and a strict read asks again rather than trusting that fallback.
        with pytest.raises(worker_stats.StatsUnavailable):
            await unreachable.workers(max_age=60, strict=True)
    finally:
        worker_stats.set_store(None)
