"""``publish()`` from synchronous code: handed to the loop from the server's threads, in
order; waited for from a thread with no loop (a management command)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from realtime import hub as hub_module
from realtime import publish as publish_module
from realtime.hub import Hub, get_hub
from realtime.publish import Published, apublish, apublish_many, publish, publish_many

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


async def test_with_the_in_memory_layer_and_one_hub_a_publish_skips_the_layer(
    ws: WebsocketCommunicator, monkeypatch: pytest.MonkeyPatch
) -> None:
    await send(ws, {"type": "subscribe", "stream": "test:open:direct"})
    assert (await receive(ws))["type"] == "ack"
    await receive(ws)  # the snapshot
    hub = get_hub()
    # Other tests' event loops may still have hubs; this process serves one loop.
    hub_module.drop_closed_loops()
    assert hub.sole_subscriber

    async def no_layer(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the layer was used")

    monkeypatch.setattr(hub.layer, "group_send", no_layer)
    events_before = publish_module.counts.total()
    assert await apublish("test:open:direct", "e", {"n": 1}) is True
    frame = await receive(ws)
    assert (frame["event"], frame["data"]) == ("e", {"n": 1})
    assert publish_module.counts.total() == events_before + 1


async def test_consecutive_events_of_one_stream_cross_the_layer_as_one_message(
    ws: WebsocketCommunicator, monkeypatch: pytest.MonkeyPatch
) -> None:
    for stream in ("test:open:batch", "test:open:other"):
        await send(ws, {"type": "subscribe", "stream": stream})
        assert (await receive(ws))["type"] == "ack"
        await receive(ws)  # the snapshot
    monkeypatch.setattr(Hub, "sole_subscriber", property(lambda self: False))
    layer = get_hub().layer
    assert layer is not None
    sent: list[dict[str, Any]] = []
    real_group_send = layer.group_send

    async def spying(group: str, message: dict[str, Any]) -> None:
        sent.append(message)
        await real_group_send(group, message)

    monkeypatch.setattr(layer, "group_send", spying)
    items = [Published("test:open:batch", "n", {"n": n}, n) for n in range(1, 6)]
    items.append(Published("test:open:other", "n", {"n": 6}))
    items.append(Published("test:open:batch", "n", {"n": 7}, 6))
    assert await apublish_many(items) == 7
    assert [(m["type"], m["stream"]) for m in sent] == [
        ("hub.frames", "test:open:batch"),
        ("hub.frame", "test:open:other"),
        ("hub.frame", "test:open:batch"),
    ]
    frames = [await receive(ws) for _ in range(7)]
    assert [(f["stream"], f["data"]["n"], f.get("offset")) for f in frames] == [
        ("test:open:batch", 1, 1),
        ("test:open:batch", 2, 2),
        ("test:open:batch", 3, 3),
        ("test:open:batch", 4, 4),
        ("test:open:batch", 5, 5),
        ("test:open:other", 6, None),
        ("test:open:batch", 7, 6),
    ]


async def test_an_outage_logs_one_traceback_and_counts_the_other_failures(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class DownLayer:
        async def group_send(self, group: str, message: dict[str, Any]) -> None:
            raise ConnectionRefusedError("redis is down")

    monkeypatch.setattr("realtime.publish.get_channel_layer", DownLayer)
    monkeypatch.setattr(publish_module, "failures", publish_module.FailureLog(interval=3600))
    with caplog.at_level(logging.ERROR, logger="realtime.publish"):
        results = [await apublish("test:open:down", "e", {"n": n}) for n in range(5)]
    assert results == [False] * 5
    reports = [r for r in caplog.records if r.name == "realtime.publish"]
    assert [r.getMessage() for r in reports] == ["publish to test:open:down failed"]
    assert reports[0].exc_info is not None
    publish_module.failures.interval = 0  # the next failure reports, with the count
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="realtime.publish"):
        assert await apublish("test:open:down", "e", {}) is False
    assert [r.getMessage() for r in caplog.records if r.name == "realtime.publish"] == [
        "publish to test:open:down failed (4 more failed since the last report)"
    ]
