"""Database reads for what live delivery missed (realtime/recovery.py): gap ranges shared by
every local subscriber, catch-up after an outage."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import override_settings

from realtime import registry
from realtime.frames import Frame
from realtime.hub import get_hub
from realtime.protocol import encode_event
from realtime.registry import Event

from .conftest import communicator, receive, send

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_gap_fetch_is_shared_by_every_local_subscriber() -> None:
    calls: list[tuple[int, int]] = []
    rows = {1: "one", 2: "two"}

    def replay(key: str, since: int, limit: int) -> list[Event]:
        calls.append((since, limit))
        return [Event("test.line", {"text": rows[o]}, o) for o in sorted(rows) if o > since][:limit]

    registry.register_stream("test:counted", authorize=lambda user, key: None, replay=replay)
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
