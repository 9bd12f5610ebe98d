"""What makes the dashboard recompute: saved rooms, purchases, stock, feed changes.

New chat messages need no signal here: they are written with ``bulk_create`` (no
``post_save``) by ``chat.services``, whose ``chat.message`` publishes are counted
(``realtime.publish.counts``); the worker statistics' flusher then announces
``workers.changed`` on ``sys:workers``, which wakes the publisher as well.

Each change, after commit, publishes ``dashboard.dirty`` on the internal stream
``sys:dashboard``; the leader's publisher listens there. A process sends at most one such
signal per ``DIRTY_MIN_GAP`` seconds: a burst of writes costs one publish per gap, and what
a skipped signal would have said is picked up by the publisher's next recompute (at most a
second later).
"""

from __future__ import annotations

import time
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from chat.models import Room
from realtime.publish import publish
from shop.models import Item, Purchase

from .models import FeedRecord, FeedSwitch

DIRTY_STREAM = "sys:dashboard"
DIRTY_MIN_GAP = 0.1
_last_signal = 0.0


def mark_dirty() -> None:
    """Tell the dashboard publisher that something changed (after the current commit)."""
    transaction.on_commit(_signal)


def _signal() -> None:
    global _last_signal
    now = time.monotonic()
    if now - _last_signal < DIRTY_MIN_GAP:
        return
    _last_signal = now
    publish(DIRTY_STREAM, "dashboard.dirty", {})


@receiver(post_save, sender=Room)
@receiver(post_delete, sender=Room)
@receiver(post_save, sender=Purchase)
@receiver(post_save, sender=Item)
@receiver(post_save, sender=FeedRecord)
@receiver(post_save, sender=FeedSwitch)
def _changed(sender: Any, **kwargs: Any) -> None:
    mark_dirty()
