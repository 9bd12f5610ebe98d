"""The leader's dashboard publisher: recompute when something happened, publish conflated.

Writers only mark the dashboard dirty (``receivers``), and workers announce socket changes
on ``sys:workers``; this loop, in the one leader process, recomputes the snapshot and
publishes it on ``dashboard`` at most ``DASHBOARD_MAX_UPDATES_PER_SECOND`` times a second.
Changes that arrive during the pause are folded into the next snapshot: the latest value
wins, and a burst of a thousand writes costs a handful of frames. The loop also wakes once a
second, since the per-second chart and the "last minute" counters move with time: an open
dashboard gets a frame about every 1.5 s even when nothing happens (the chart keeps
scrolling), and never more than the configured rate. Identical snapshots are not sent twice.
While nobody watches (the ``dashboard`` stream's presence is empty) nothing is computed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from realtime import presence
from realtime.conf import rt_settings
from realtime.frames import Frame
from realtime.hub import Listener, get_hub
from realtime.publish import apublish
from realtime.worker_stats import WORKERS_STREAM

from .conf import DashboardSettings
from .receivers import DIRTY_STREAM
from .snapshot import build_snapshot

DASHBOARD_STREAM = "dashboard"


class _Wake(Listener):
    """A hub subscriber that only sets an event."""

    def __init__(self, event: asyncio.Event) -> None:
        self.event = event

    def deliver(self, frame: Frame) -> None:
        self.event.set()


async def _watched() -> bool:
    """True when someone, on any worker, is subscribed to the dashboard (its presence)."""
    try:
        return bool(await presence.online(DASHBOARD_STREAM))
    except Exception:  # the presence store is down: compute, as before it existed
        return True


async def run_dashboard_publisher() -> None:
    """Background service (leader only)."""
    hub = get_hub()
    dirty = asyncio.Event()
    wake = _Wake(dirty)
    min_gap = 1.0 / rt_settings().section(DashboardSettings).MAX_UPDATES_PER_SECOND
    for stream in (DIRTY_STREAM, WORKERS_STREAM):
        await hub.subscribe(stream, wake)
    last: dict[str, Any] | None = None
    try:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(dirty.wait(), timeout=1.0)
            dirty.clear()
            if not await _watched():
                # Nobody would see it: the snapshot's queries (tens of ms with many recent
                # messages, on the thread every socket's database work shares) are skipped.
                # A viewer who arrives gets a fresh snapshot on subscribe.
                last = None
                continue
            snapshot = await build_snapshot()
            comparable = {k: v for k, v in snapshot.items() if k != "at"}
            if comparable != last:
                await apublish(DASHBOARD_STREAM, "dashboard.update", snapshot)
                last = comparable
            await asyncio.sleep(min_gap)
    finally:
        for stream in (DIRTY_STREAM, WORKERS_STREAM):
            await hub.unsubscribe(stream, wake)
