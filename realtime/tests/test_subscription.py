"""One socket's subscription (realtime/subscription.py): replay then live without loss or
duplicates (go_live, dedup by offset), offset order, gaps held then filled or skipped."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import override_settings

from realtime.frames import Frame
from realtime.hub import get_hub
from realtime.protocol import encode_event
from realtime.publish import apublish

from .conftest import LOG, communicator, receive, send

pytestmark = pytest.mark.django_db(transaction=True)


def _line(offset: int, text: str) -> Frame:
    return Frame("test:log", offset, encode_event("test:log", "test.line", {"text": text}, offset))


async def _subscribed_log(since: int) -> WebsocketCommunicator:
    comm = communicator()
    assert (await comm.connect())[0]
    await send(comm, {"type": "subscribe", "stream": "test:log", "since": since})
    ack = await receive(comm)
    for _ in range(ack["replayed"]):
        await receive(comm)
    return comm


async def test_replay_since_sends_exactly_the_missed_events_in_order_then_live(
    ws: WebsocketCommunicator,
) -> None:
    LOG.update({1: "one", 2: "two", 3: "three", 4: "four"})
    await send(ws, {"type": "subscribe", "stream": "test:log", "since": 2, "ref": "r"})
    ack = await receive(ws)
    assert (ack["durable"], ack["replayed"], ack["truncated"]) == (True, 2, False)
    replayed = [await receive(ws), await receive(ws)]
    assert [(f["offset"], f["data"]["text"]) for f in replayed] == [(3, "three"), (4, "four")]
    # A late publish of an offset already replayed is dropped; the next one passes.
    await apublish("test:log", "test.line", {"text": "four"}, offset=4)
    await apublish("test:log", "test.line", {"text": "five"}, offset=5)
    live = await receive(ws)
    assert (live["offset"], live["data"]["text"]) == (5, "five")
    assert await ws.receive_nothing(timeout=0.1)


async def test_frames_published_during_replay_are_delivered_once_after_it(
    ws: WebsocketCommunicator,
) -> None:
    LOG.update({1: "one", 2: "two"})
    hub = get_hub()
    await send(ws, {"type": "subscribe", "stream": "test:log", "since": 0})
    ack = await receive(ws)
    assert ack["replayed"] == 2
    # Offsets 2 (duplicate of the replay) and 3 arrive through the hub.
    hub.deliver(Frame("test:log", 2, encode_event("test:log", "test.line", {"text": "two"}, 2)))
    hub.deliver(Frame("test:log", 3, encode_event("test:log", "test.line", {"text": "3"}, 3)))
    offsets = [(await receive(ws))["offset"] for _ in range(3)]
    assert offsets == [1, 2, 3]
    assert await ws.receive_nothing(timeout=0.1)


async def test_overtaken_frames_are_put_back_in_order_without_a_query() -> None:
    LOG.update({1: "one"})
    comm = await _subscribed_log(0)
    hub = get_hub()
    hub.deliver(_line(3, "three"))  # overtook 2
    assert await comm.receive_nothing(timeout=0.05)
    hub.deliver(_line(2, "two"))
    assert [(await receive(comm))["offset"] for _ in range(2)] == [2, 3]
    hub.deliver(_line(2, "two"))  # a late duplicate
    assert await comm.receive_nothing(timeout=0.05)
    await comm.disconnect()


async def test_a_gap_is_filled_from_the_database_after_the_wait() -> None:
    limits = {**settings.TOWNSQUARE_REALTIME, "GAP_WAIT_SECONDS": 0.05}
    with override_settings(TOWNSQUARE_REALTIME=limits):
        LOG.update({1: "one"})
        comm = await _subscribed_log(0)
        LOG.update({2: "two", 3: "three"})  # committed; the publish of 2 was lost
        get_hub().deliver(_line(3, "three"))
        frames = [await receive(comm) for _ in range(2)]
        assert [(f["offset"], f["data"]["text"]) for f in frames] == [(2, "two"), (3, "three")]
        assert await comm.receive_nothing(timeout=0.1)
        await comm.disconnect()


async def test_a_gap_the_database_cannot_fill_is_skipped() -> None:
    limits = {**settings.TOWNSQUARE_REALTIME, "GAP_WAIT_SECONDS": 0.05}
    with override_settings(TOWNSQUARE_REALTIME=limits):
        LOG.update({1: "one"})
        comm = await _subscribed_log(0)
        get_hub().deliver(_line(3, "three"))
        assert (await receive(comm))["offset"] == 3
        await comm.disconnect()


async def test_without_since_live_frames_are_ordered_from_the_head(
    ws: WebsocketCommunicator,
) -> None:
    LOG.update({1: "one"})
    await send(ws, {"type": "subscribe", "stream": "test:log"})
    assert (await receive(ws))["replayed"] == 0
    hub = get_hub()
    hub.deliver(_line(3, "three"))  # overtook 2: held, not taken as the start
    hub.deliver(_line(2, "two"))
    assert [(await receive(ws))["offset"] for _ in range(2)] == [2, 3]
    assert await ws.receive_nothing(timeout=0.05)
