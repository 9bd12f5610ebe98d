"""Database reads for what live delivery missed (realtime/recovery.py): gap ranges shared by
every local subscriber, catch-up after an outage."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from realtime import events, registry
from realtime.frames import Frame
from realtime.hub import get_hub
from realtime.protocol import ErrorCode, ProtocolError, encode_event
from realtime.recovery import RangeReader, catch_up
from realtime.registry import Event

from .conftest import LOG, communicator, receive, send

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_gap_fetch_is_shared_by_every_local_subscriber() -> None:
    calls: list[tuple[int, int]] = []
    rows = {1: "one", 2: "two"}

    def replay(key: str, since: int, limit: int) -> list[Event]:
        calls.append((since, limit))
        return [Event("test.line", {"text": rows[o]}, o) for o in sorted(rows) if o > since][:limit]

    registry.register_stream("test:counted", authorize=lambda user, key: None, replay=replay)
    # Replayed events are validated like published ones (events.enabled in every test).
    events.declare("test:counted", "test.line", dict[str, Any], durable=True)
    limits = {**settings.TOWNSQUARE_REALTIME, "GAP_WAIT_SECONDS": 0.05}
    with override_settings(TOWNSQUARE_REALTIME=limits):
        sockets = []
        for _ in range(5):
            comm = communicator()
            assert (await comm.connect())[0]
            await send(comm, {"type": "subscribe", "stream": "test:counted", "since": 1})
            assert (await receive(comm))["replayed"] == 1
            assert (await receive(comm))["offset"] == 2
            sockets.append(comm)
        calls.clear()
        rows[3] = "three"
        rows[4] = "four"
        text = encode_event("test:counted", "test.line", {"text": "four"}, 4)
        get_hub().deliver(Frame("test:counted", 4, text))
        for comm in sockets:
            assert [(await receive(comm))["offset"] for _ in range(2)] == [3, 4]
            await comm.disconnect()
        assert calls == [(2, 1)]


async def test_a_range_is_the_stored_events_after_after_up_to_upto_encoded() -> None:
    LOG.update({o: f"line {o}" for o in range(1, 10)})
    frames = await RangeReader().fetch_range("test:log", 3, 6)
    assert [(f.stream, f.offset) for f in frames] == [("test:log", o) for o in (4, 5, 6)]
    assert [f.payload for f in frames] == [
        {
            "type": "event",
            "stream": "test:log",
            "event": "test.line",
            "data": {"text": f"line {o}"},
            "offset": o,
        }
        for o in (4, 5, 6)
    ]
    assert await RangeReader().fetch_range("test:log", 6, 6) == []
    assert await RangeReader().fetch_range("test:open:x", 0, 5) == []  # not durable


async def test_a_range_of_no_known_kind_is_unknown_stream() -> None:
    with pytest.raises(ProtocolError) as refused:
        await RangeReader().fetch_range("nosuchkind:1", 0, 5)
    assert refused.value.code == ErrorCode.UNKNOWN_STREAM


async def test_catch_up_skips_what_it_cannot_read_and_catches_the_rest_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(key: str, since: int, limit: int) -> list[Event]:
        raise RuntimeError("database gone")

    registry.register_stream("test:broken", authorize=lambda user, key: None, replay=broken)
    LOG.update({o: f"line {o}" for o in range(1, 5)})
    delivered: list[Frame] = []
    since = {"test:broken": 0, "sys:workers": 0, "test:open:x": 0, "test:log": 2}
    await catch_up(since, delivered.append)
    assert [(f.stream, f.offset) for f in delivered] == [("test:log", 3), ("test:log", 4)]
    failed = [r for r in caplog.records if r.name == "realtime.recovery"]
    assert [r.getMessage() for r in failed if r.exc_info] == ["hub: catching up test:broken failed"]
