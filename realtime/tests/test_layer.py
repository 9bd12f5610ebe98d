"""The process's layer link (realtime/layer.py): group membership, rejoining what the layer
forgot, one retry of a broken connection, bounded calls."""

from __future__ import annotations

import asyncio

import pytest

from realtime.frames import Frame, group_name
from realtime.hub import Hub, Listener, get_hub
from realtime.publish import apublish

pytestmark = pytest.mark.django_db(transaction=True)


async def test_the_hub_rejoins_groups_the_layer_forgot() -> None:
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
