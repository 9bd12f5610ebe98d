"""Writes of the dashboard app: the feed switch and the feed's ticks."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from realtime.publish import publish_on_commit

from .models import FeedRecord, FeedSwitch
from .selectors import feed_state

FEED_STREAM = "feed"


def feed_switch_set(*, on: bool, actor: User | None) -> dict[str, object]:
    """Turn the feed on or off; publish ``feed.state {on, records}`` on ``feed``.

    Raises:
        PermissionDenied: ``actor`` is not staff (``None`` is the system).
    """
    if actor is not None and not actor.is_staff:
        raise PermissionDenied("only staff may flip the feed switch")
    with transaction.atomic():
        switch, _ = FeedSwitch.objects.select_for_update().get_or_create(pk=1)
        switch.status = FeedSwitch.ON if on else FeedSwitch.OFF
        switch.save(update_fields=["status", "changed_at"])
        state = feed_state()
        publish_on_commit(FEED_STREAM, "feed.state", state)
    return state


def feed_tick(*, interval: float) -> int | None:
    """Add one record if the switch is on and no tick happened in this interval.

    The conditional UPDATE of ``last_tick_at`` is the fence: however many processes call this
    at once (a leader that lost its lease while stalled, say), one record per interval.
    Publishes ``feed.count {value}`` on ``feed`` after commit. Returns the new count, or None
    when nothing was added.
    """
    now = timezone.now()
    # A little slack, so a tick that runs early by scheduler jitter is not skipped.
    due = now - timedelta(seconds=interval * 0.8)
    with transaction.atomic():
        ticked = (
            FeedSwitch.objects.filter(pk=1, status=FeedSwitch.ON)
            .filter(Q(last_tick_at__isnull=True) | Q(last_tick_at__lte=due))
            .update(last_tick_at=now)
        )
        if not ticked:
            return None
        FeedRecord.objects.create(text="tick")
        count = FeedRecord.objects.count()
        publish_on_commit(FEED_STREAM, "feed.count", {"value": count})
    return count
