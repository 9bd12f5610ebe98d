"""Every wait on Redis is bounded (``REDIS_TIMEOUT_SECONDS``): in process, with a layer, a
presence store and a lease that never answer. The real thing (SIGSTOP under two workers) is
``tests/test_faults.py::test_a_hung_redis_answers_within_bounds_and_loses_no_message``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer
from django.conf import settings
from django.test import override_settings

from realtime import background, presence
from realtime.frames import Frame
from realtime.hub import Hub, Listener

BOUND = 0.1
ALICE: dict[str, Any] = {"id": 1, "username": "alice"}


@pytest.fixture
def store() -> Iterator[presence.MemoryStore]:
    """A memory presence store, the deployment's for the test (``presence.set_store``)."""
    store = presence.MemoryStore()
    presence.set_store(store)
    yield store
    presence.set_store(None)


@pytest.fixture(autouse=True)
def short_timeout() -> Iterator[None]:
    with override_settings(
        TOWNSQUARE_REALTIME={**settings.TOWNSQUARE_REALTIME, "REDIS_TIMEOUT_SECONDS": BOUND}
    ):
        yield


async def hang(*args: Any, **kwargs: Any) -> Any:
    """A Redis that accepted the command and answers nothing."""
    await asyncio.Event().wait()


class Collector(Listener):
    def __init__(self) -> None:
        self.frames: list[Frame] = []

    def deliver(self, frame: Frame) -> None:
        self.frames.append(frame)


class HungLayer(InMemoryChannelLayer):
    """An in-memory layer whose group joins hang once ``hung`` is set."""

    hung = False

    async def group_add(self, group: str, channel: str) -> None:
        if self.hung:
            await hang()
        await super().group_add(group, channel)


async def test_a_group_join_that_hangs_fails_within_the_bound_and_leaves_nothing() -> None:
    layer = HungLayer()
    hub = Hub(layer)
    try:
        await hub.subscribe("test:open:a", Collector())  # joined while the layer answers
        layer.hung = True
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await hub.subscribe("test:open:b", Collector())
        assert time.monotonic() - started < BOUND * 3
        assert hub.local_subscribers("test:open:b") == 0
        # A stream the hub already serves asks the layer nothing, even with its lock held
        # by a join that hangs.
        async with hub.link.lock:
            await asyncio.wait_for(hub.subscribe("test:open:a", Collector()), BOUND / 2)
        assert hub.local_subscribers("test:open:a") == 2
    finally:
        layer.hung = False
        await hub.close()


async def test_presence_that_hangs_degrades_then_restores_with_state_and_join(
    monkeypatch: pytest.MonkeyPatch, store: presence.MemoryStore
) -> None:
    monkeypatch.setattr(store, "join", hang)
    joins: list[tuple[str, str, Any]] = []

    async def record(stream: str, event: str, data: Any, **kwargs: Any) -> bool:
        joins.append((stream, event, data))
        return True

    monkeypatch.setattr(presence, "apublish", record)
    stream, sid = "chat:room:9", "s1"
    started = time.monotonic()
    assert await presence.arrive(stream, ALICE, sid) is False
    assert time.monotonic() - started < BOUND * 3
    states: list[list[dict[str, Any]]] = []
    presence.restore_later(stream, sid, states.append)
    try:
        entry = presence.local_entries[(stream, sid)]
        assert entry.pending
        # The store answers again: a renewal puts the entry back, announces the user once,
        # and hands the socket the state.
        monkeypatch.undo()
        monkeypatch.setattr(presence, "apublish", record)
        back = await store.renew([(stream, ALICE, sid)], time.time() + 60)
        assert back == [(stream, ALICE)]
        await presence.restore_pending([entry], {(stream, ALICE["id"])})
        assert states == [[ALICE]]
        assert not entry.pending and entry.on_restored is None
        assert joins == []  # the renewal announced it already (run_heartbeat publishes back)
        # An entry whose join the store ran although the answer was lost: announced here.
        entry.pending = True
        await presence.restore_pending([entry], set())
        assert joins == [(stream, "presence.join", {"user": ALICE})]
    finally:
        presence.local_entries.pop((stream, sid), None)


async def test_presence_depart_that_hangs_forgets_the_socket_within_the_bound(
    monkeypatch: pytest.MonkeyPatch, store: presence.MemoryStore
) -> None:
    stream, sid = "chat:room:9", "s2"
    assert await presence.arrive(stream, ALICE, sid) is True
    monkeypatch.setattr(store, "leave", hang)
    started = time.monotonic()
    await presence.depart(stream, ALICE, sid)  # never raises for the store
    assert time.monotonic() - started < BOUND * 3
    assert (stream, sid) not in presence.local_entries  # never renewed again
    monkeypatch.setattr(store, "online", hang)
    with pytest.raises(presence.ProtocolError) as refused:
        await presence.online(stream)
    assert refused.value.code == "unavailable"


class FlakyLease:
    """A lease whose store answers, then hangs (raises TimeoutError) from ``fail_from``."""

    name = "leader"

    def __init__(self, ttl_seconds: float, fail_from: int) -> None:
        self.ttl_seconds = ttl_seconds
        self.calls = 0
        self.fail_from = fail_from
        self.answered = asyncio.Event()

    async def acquire(self) -> bool:
        self.calls += 1
        if self.calls >= self.fail_from:
            self.answered.set()
            raise TimeoutError
        return True

    async def release(self) -> None:
        return None


async def test_a_leader_keeps_its_lease_until_the_ttl_when_renewals_go_unanswered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lease = FlakyLease(ttl_seconds=0.6, fail_from=2)
    runner = background.Runner(lease, services={})
    runner.start()
    try:
        await asyncio.wait_for(lease.answered.wait(), 2)
        assert runner.is_leader  # one unanswered renewal: still within the ttl
        await asyncio.sleep(1.0)  # the ttl itself is what is tested: time passing
        assert not runner.is_leader
    finally:
        await runner.stop()
