"""Seed 000's ``ws/test/`` socket: ``{"value": <record count>}`` on connect and on change.

The seed ran ``while ...: time.sleep(2)`` inside ``connect``, a thread per socket. Here the
socket only listens to the ``feed`` stream; the one ticker of the deployment adds records.
Anyone may connect, as on the seed's page. Client frames are not part of this protocol and
get an ``error`` frame.
"""

from __future__ import annotations

from typing import Any

from realtime.consumers import RealtimeConsumer
from realtime.frames import Frame
from realtime.protocol import ErrorCode, ProtocolError, dumps

from .services import FEED_STREAM


def render_value(frame: Frame) -> str | None:
    """``feed.count`` → ``{"value": n}``; other feed events are not part of the seed."""
    payload = frame.payload
    if payload.get("event") != "feed.count":
        return None
    return dumps({"value": payload["data"]["value"]})


class SeedFeedConsumer(RealtimeConsumer):
    """Seed 000's consumer, event-driven (see the module docstring)."""

    async def connect(self) -> None:
        """Join the feed, accept, send the current count, then every new one."""
        opened = await self.open_subscription(FEED_STREAM, renderer=render_value)
        await self.accept()
        for event in opened.snapshot:
            self.send_text(dumps({"value": event.data["value"]}))
        assert opened.subscription is not None
        opened.subscription.go_live()

    async def receive_frame(self, frame: dict[str, Any]) -> None:
        raise ProtocolError(ErrorCode.INVALID, "ws/test/ only sends; it takes no frames")
