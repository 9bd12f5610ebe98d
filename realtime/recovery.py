"""Reading what live delivery missed from the database: gaps and catch-up after an outage.

Live delivery is best effort; durable streams (``StreamKind.replay``) are the truth. Two
readers use a kind's ``replay`` function here, both encoding each event once per process:

- ``RangeReader.fetch_range``: the offsets a subscription is missing (a gap it held frames
  behind, ``realtime.subscription``); concurrent requests for one range share one query, so
  a gap costs one query per process, not one per subscriber;
- ``catch_up``: everything after the lowest offset the local subscribers passed on, after
  the channel layer lost messages (``realtime.layer``'s recovery).

Kept apart from the hub so the hub's fan-out stays free of the registry and the ORM.
See docs/architecture.md, "Ordering and recovery".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from channels.db import database_sync_to_async

from .conf import rt_settings
from .frames import Frame
from .protocol import ProtocolError, encode_event
from .registry import resolve

logger = logging.getLogger(__name__)


class RangeReader:
    """Gap reads of one event loop, with concurrent requests for a range shared."""

    def __init__(self) -> None:
        self._fetches: dict[tuple[str, int, int], asyncio.Future[list[Frame]]] = {}

    async def fetch_range(self, stream: str, after: int, upto: int) -> list[Frame]:
        """Frames of a durable stream with ``after < offset <= upto``, from its replay function.

        Concurrent requests for the same range share one database query, so a gap seen by
        every local subscriber of a stream costs one query per process, and each event is
        encoded once.

        Raises:
            ProtocolError: ``unknown_stream`` when no kind serves ``stream``;
            DatabaseError: the replay's query failed.
        """
        key = (stream, after, upto)
        pending = self._fetches.get(key)
        if pending is None:
            pending = asyncio.ensure_future(_fetch(stream, after, upto))
            self._fetches[key] = pending
            pending.add_done_callback(lambda _: self._fetches.pop(key, None))
        return await asyncio.shield(pending)


async def _fetch(stream: str, after: int, upto: int) -> list[Frame]:
    kind, key = resolve(stream)
    if kind.replay is None or upto <= after:
        return []
    events = await database_sync_to_async(kind.replay)(key, after, upto - after)
    return [
        Frame(stream, e.offset, encode_event(stream, e.event, e.data, e.offset))
        for e in events
        if e.offset is not None and e.offset <= upto
    ]


async def catch_up(since: dict[str, int], deliver: Callable[[Frame], None]) -> None:
    """Deliver what each durable stream stored after ``since[stream]`` (at most
    ``REPLAY_MAX`` events each), through ``deliver`` (the hub's), in offset order.

    Subscribers drop what they already sent, so nothing is sent twice. Streams of no
    registered kind (``sys:*``) or not durable are skipped; a failed read is logged and the
    other streams still caught up.
    """
    limit = rt_settings().REPLAY_MAX
    for stream, offset in since.items():
        try:
            kind, key = resolve(stream)
        except ProtocolError:
            continue  # internal streams (sys:*) have no kind
        if kind.replay is None:
            continue
        try:
            events = await database_sync_to_async(kind.replay)(key, offset, limit)
        except Exception:
            logger.exception("hub: catching up %s failed", stream)
            continue
        logger.info(
            "event=layer.catch_up stream=%s since=%s events=%d", stream, offset, len(events)
        )
        for event in events:
            text = encode_event(stream, event.event, event.data, event.offset)
            deliver(Frame(stream, event.offset, text))
