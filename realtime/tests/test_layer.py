"""The process's layer link (realtime/layer.py): group membership, rejoining what the layer
forgot, one retry of a broken connection, bounded calls."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from realtime.frames import Frame, group_name
from realtime.hub import Hub, Listener, get_hub
from realtime.layer import layer_call
from realtime.publish import apublish

pytestmark = pytest.mark.django_db(transaction=True)


async def test_the_hub_rejoins_groups_the_layer_forgot(monkeypatch: pytest.MonkeyPatch) -> None:
    # Publishes must cross the layer to reach this second hub: with the in-memory layer and
    # the loop's own hub alone, apublish would hand them to that hub directly.
    monkeypatch.setattr(Hub, "sole_subscriber", property(lambda self: False))
    hub = Hub(get_hub().layer)
    assert hub.layer is not None
    arrived = asyncio.Event()
    received: list[Frame] = []

    class Collector(Listener):
        def deliver(self, frame: Frame) -> None:
            received.append(frame)
            arrived.set()

    await hub.subscribe("test:open:forgotten", Collector())
    # What a Redis restart or group expiry does: membership gone behind the hub's back.
    await hub.layer.group_discard(group_name("test:open:forgotten"), hub.link.channel)
    await apublish("test:open:forgotten", "test.lost", {"n": 0})
    await hub.link.rejoin()
    await apublish("test:open:forgotten", "test.back", {"n": 1})
    await asyncio.wait_for(arrived.wait(), 2)
    assert [f.payload["event"] for f in received] == ["test.back"]
    await hub.close()


class Calls:
    """A layer call that raises each of ``failures`` in turn, then answers ``"ok"``."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.count = 0

    async def __call__(self) -> str:
        self.count += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


@pytest.mark.parametrize(
    "broken", [ConnectionResetError("reset"), RedisConnectionError("closed by server")]
)
async def test_a_broken_connection_is_retried_once_at_once(broken: Exception) -> None:
    call = Calls(broken)
    assert await layer_call(call, timeout=1) == "ok"
    assert call.count == 2
    down = Calls(ConnectionRefusedError("down"), ConnectionRefusedError("still down"))
    with pytest.raises(ConnectionRefusedError, match="still down"):
        await layer_call(down, timeout=1)
    assert down.count == 2  # once more only


@pytest.mark.parametrize("failure", [TimeoutError(), ValueError("a bug"), KeyError("x")])
async def test_other_failures_are_not_retried(failure: Exception) -> None:
    call = Calls(failure)
    with pytest.raises(type(failure)):
        await layer_call(call, timeout=1)
    assert call.count == 1


async def test_a_call_that_hangs_fails_at_the_timeout() -> None:
    async def hang() -> None:
        await asyncio.Event().wait()

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await layer_call(hang, timeout=0.05)
    assert time.monotonic() - started < 1
