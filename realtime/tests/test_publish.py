"""``publish()`` from synchronous code: handed to the loop from the server's threads, in
order; waited for from a thread with no loop (a management command)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from realtime.publish import Published, publish, publish_many

from .conftest import receive, send

pytestmark = pytest.mark.django_db(transaction=True)


async def test_publishes_from_a_database_thread_arrive_in_the_order_made(
    ws: WebsocketCommunicator,
) -> None:
    await send(ws, {"type": "subscribe", "stream": "test:open:order"})
    assert (await receive(ws))["type"] == "ack"
    await receive(ws)  # the snapshot

    def service() -> list[Any]:
        results: list[Any] = [publish("test:open:order", "n", {"n": n}) for n in range(40)]
        results.append(
            publish_many(Published("test:open:order", "n", {"n": n}) for n in range(40, 60))
        )
        return results

    results = await database_sync_to_async(service)()
    assert results == [True] * 40 + [20]
    frames = [await receive(ws) for _ in range(60)]
    assert [f["data"]["n"] for f in frames] == list(range(60))
    assert {f["event"] for f in frames} == {"n"}


def test_a_thread_without_a_loop_waits_for_the_layer_and_gets_its_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class BrokenLayer:
        async def group_send(self, group: str, message: dict[str, Any]) -> None:
            raise ConnectionRefusedError("no layer")

    monkeypatch.setattr("realtime.publish.get_channel_layer", BrokenLayer)
    answers: list[bool] = []
    thread = threading.Thread(target=lambda: answers.append(publish("test:open:x", "e", {})))
    thread.start()
    thread.join(10)
    # Not handed anywhere: the failure reached the caller.
    assert answers == [False]
