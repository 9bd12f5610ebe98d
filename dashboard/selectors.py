"""Reads of the dashboard: one snapshot of every counter, from the database and the workers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, Sum
from django.db.models.functions import TruncSecond

from chat.models import Message, Room
from shop.models import Item, Purchase

from .models import FeedRecord, FeedSwitch

SERIES_SECONDS = 300


def feed_state() -> dict[str, Any]:
    """``{on: bool, records: int}``."""
    switch = FeedSwitch.objects.filter(pk=1).values_list("status", flat=True).first()
    return {"on": switch == FeedSwitch.ON, "records": FeedRecord.objects.count()}


def message_series(*, start: int, seconds: int = SERIES_SECONDS) -> list[int]:
    """Messages per second for ``seconds`` seconds from epoch second ``start`` (one query)."""
    since = datetime.fromtimestamp(start, tz=UTC)
    rows = (
        Message.objects.filter(created_at__gte=since)
        .annotate(second=TruncSecond("created_at"))
        .values("second")
        .annotate(n=Count("id"))
        .values_list("second", "n")
    )
    series = [0] * seconds
    for second, n in rows:
        index = int(second.timestamp()) - start
        if 0 <= index < seconds:
            series[index] = n
    return series


def database_counters(*, now_second: int) -> dict[str, Any]:
    """Every database-backed counter of the dashboard (a handful of aggregate queries).

    Shape: ``{rooms, messages: {last_hour, last_minute}, items_in_stock, units_in_stock,
    purchases_last_minute, feed: {on, records}, series: {start, seconds, messages}}``.
    """
    now = datetime.fromtimestamp(now_second, tz=UTC)
    stock = Item.objects.filter(quantity__gt=0).aggregate(items=Count("id"), units=Sum("quantity"))
    start = now_second - SERIES_SECONDS + 1
    return {
        "rooms": Room.objects.count(),
        "messages": {
            "last_hour": Message.objects.filter(created_at__gte=now - timedelta(hours=1)).count(),
            "last_minute": Message.objects.filter(
                created_at__gte=now - timedelta(minutes=1)
            ).count(),
        },
        "items_in_stock": stock["items"] or 0,
        "units_in_stock": stock["units"] or 0,
        "purchases_last_minute": Purchase.objects.filter(
            created_at__gte=now - timedelta(minutes=1)
        ).count(),
        "feed": feed_state(),
        "series": {
            "start": start,
            "seconds": SERIES_SECONDS,
            "messages": message_series(start=start),
        },
    }
