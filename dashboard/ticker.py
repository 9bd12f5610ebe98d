"""The feed ticker (seed 000): a record every ``FEED_INTERVAL_SECONDS`` while the switch is on.

It runs as a leader-only background service, so one per deployment however many workers
serve it (``realtime.lease``: a Redis lease); ``services.feed_tick``'s conditional UPDATE
also refuses a second tick in one interval. Nothing blocks the event loop: the database work
runs in a thread, the wait is ``asyncio.sleep`` — unlike the seed's ``time.sleep`` loop
inside ``connect``.
"""

from __future__ import annotations

import asyncio

from channels.db import database_sync_to_async

from realtime.conf import rt_settings

from . import services
from .conf import DashboardSettings


async def run_feed_ticker() -> None:
    """Background service (leader only)."""
    interval = rt_settings().section(DashboardSettings).FEED_INTERVAL_SECONDS
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while True:
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        await database_sync_to_async(services.feed_tick)(interval=interval)
