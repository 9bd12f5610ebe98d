"""The dashboard's snapshot: database counters plus the workers' live numbers."""

from __future__ import annotations

import time
from typing import Any

from channels.db import database_sync_to_async

from realtime import worker_stats

from . import selectors


async def build_snapshot() -> dict[str, Any]:
    """Every counter of the dashboard (the data of ``dashboard.update``).

    Shape: ``{at: int (epoch s), sockets: {total, workers: {id: n}}, users_online: int,
    rooms, messages: {last_hour, last_minute}, items_in_stock, units_in_stock,
    purchases_last_minute, feed: {on, records},
    series: {start: int (epoch s), seconds: 300, messages: [int], events: [int]}}`` —
    ``series`` holds per-second counts, oldest first.
    """
    now_second = int(time.time())
    counters = await database_sync_to_async(selectors.database_counters)(now_second=now_second)
    series = counters["series"]
    store = worker_stats.get_store()
    series["events"] = await store.event_series(series["start"], series["seconds"])
    return {"at": now_second, **await worker_stats.deployment(), **counters}
