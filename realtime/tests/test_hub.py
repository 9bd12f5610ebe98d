"""The process-local hub (realtime/hub.py): fan-out to the local subscribers of a stream,
membership, the ``Subscriber`` protocol, revocation, failures that leave nothing behind."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator

from realtime.hub import get_hub

from .conftest import receive, send

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_channel_layer_failure_on_subscribe_is_unavailable_and_leaves_nothing(
    ws: WebsocketCommunicator,
) -> None:
    hub = get_hub()

    async def broken_group_add(group: str, channel: str) -> None:
        raise ConnectionError("layer down")

    assert hub.layer is not None
    original = hub.layer.group_add
    hub.layer.group_add = broken_group_add
    try:
        await send(ws, {"type": "subscribe", "stream": "test:open:down", "ref": 1})
        error = await receive(ws)
        assert (error["code"], error["ref"]) == ("unavailable", 1)
        assert hub.local_subscribers("test:open:down") == 0
    finally:
        hub.layer.group_add = original
    await send(ws, {"type": "subscribe", "stream": "test:open:down"})
    assert (await receive(ws))["type"] == "ack"
