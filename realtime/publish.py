"""Publish events to streams from anywhere: views, services, signals, management commands.

``publish(stream, event, data)`` encodes the ``event`` frame once and hands it to the
channel layer once (one group per stream); every worker's hub then fans it out to its local
subscribers. Writers of durable events call it from ``transaction.on_commit`` so that nothing
is announced that is not stored (the "send after commit" rule, as Zulip's
``send_event_on_commit``).

Delivery is best effort: a channel-layer failure is logged and reported as ``False``, never
raised into the caller's request. Durable streams are recovered from the database with
``since``, so a lost publish costs latency, not data.

With the in-memory layer only subscribers in the same process hear a publish: a management
command run in another process reaches them only through ``POST /api/publish/`` or Redis.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, NamedTuple

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from . import metrics, workers
from .hub import FRAME_MESSAGE_TYPE, current_hub, group_name, layer_call
from .protocol import encode_event

logger = logging.getLogger(__name__)


class Published(NamedTuple):
    """One event for ``publish_many``: the arguments of ``publish``."""

    stream: str
    event: str
    data: Any
    offset: int | None = None


#: Streams for the server's own signals (``sys:workers``, ``sys:dashboard``); not user events.
INTERNAL_PREFIX = "sys:"

# Publishes scheduled from sync code on a loop thread; held so they are not garbage-collected.
_pending: set[asyncio.Task[Any]] = set()


async def apublish(stream: str, event: str, data: Any, *, offset: int | None = None) -> bool:
    """Publish ``data`` (plain JSON types) as ``event`` on ``stream``; the async twin.

    Args:
        stream: a stream name, e.g. ``chat:room:42``.
        event: the event name, e.g. ``chat.message``.
        data: JSON-able payload (dicts, lists, str, int, float, bool, None; datetimes are
            encoded as RFC 3339 strings).
        offset: the event's offset on a durable stream (its sequence number), else None.

    Returns:
        True when the channel layer took the frame, False when it failed (logged).
    """
    text = encode_event(stream, event, data, offset)
    layer = get_channel_layer()
    if layer is None:
        return False
    # ts: publish time in Unix seconds, for the hubs' publish-to-send latency histogram.
    message = {
        "type": FRAME_MESSAGE_TYPE,
        "stream": stream,
        "offset": offset,
        "text": text,
        "ts": time.time(),
    }
    try:
        # Retried once at once on a broken connection (a stale one after a Redis restart).
        await layer_call(lambda: layer.group_send(group_name(stream), message))
    except Exception:
        metrics.layer_failure("publish")
        logger.exception("publish to %s failed", stream)
        _tell_hub(f"publish to {stream} failed")
        return False
    if not stream.startswith(INTERNAL_PREFIX):
        # The dashboard's events-per-second series. Internal streams are not counted: the
        # worker stats' own "changed" announcement would otherwise count itself forever.
        workers.local.count_events()
    return True


def _tell_hub(reason: str) -> None:
    # The layer failed under this process: its hub (if this loop has one) recovers its
    # subscriptions and catches durable streams up once the layer is back. Publishes of the
    # other processes fail the same way meanwhile, so what they store is fetched then.
    hub = current_hub()
    if hub is not None:
        hub.layer_failed(reason)


async def apublish_many(items: Iterable[Published]) -> int:
    """Publish several events (each to its own stream); returns how many the layer took.

    Each frame is still encoded once; this saves the caller one thread-to-loop hop per event
    when a single write notifies many streams (one ``user:<id>`` stream per recipient).
    """
    sent = 0
    for item in items:
        sent += await apublish(item.stream, item.event, item.data, offset=item.offset)
    return sent


def _from_sync[T](
    function: Callable[..., Coroutine[Any, Any, T]], *args: Any, scheduled: T, **kwargs: Any
) -> T:
    """Run ``function`` from synchronous code: from a thread, wait for its result (so calls
    from one thread keep their order); on an event-loop thread, which must not block, schedule
    it there and return ``scheduled``."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return async_to_sync(function)(*args, **kwargs)
    task = loop.create_task(function(*args, **kwargs))
    _pending.add(task)
    task.add_done_callback(_pending.discard)
    return scheduled


def publish_many(items: Iterable[Published]) -> int:
    """Synchronous ``apublish_many``, with ``publish``'s threading rules."""
    batch = list(items)
    if not batch:
        return 0
    return _from_sync(apublish_many, batch, scheduled=len(batch))


def publish(stream: str, event: str, data: Any, *, offset: int | None = None) -> bool:
    """Publish from synchronous code; same arguments and result as ``apublish``.

    From a thread (a sync view, a service under ``database_sync_to_async``, a management
    command) it waits until the layer took the frame, so publishes from one thread keep
    their order. Called on an event-loop thread it cannot block, so it schedules the publish
    on that loop and returns True.
    """
    return _from_sync(apublish, stream, event, data, offset=offset, scheduled=True)


async def arevoke(stream: str, user_id: int, detail: str) -> bool:
    """End ``user_id``'s subscriptions to ``stream`` on every worker, now.

    Each affected socket gets ``error {code: "unsubscribed", stream, detail}`` and stops
    receiving the stream. Call it after the change that took the right away has committed.
    Returns False when the channel layer failed (logged).
    """
    from .hub import REVOKE_MESSAGE_TYPE

    layer = get_channel_layer()
    if layer is None:
        return False
    message = {"type": REVOKE_MESSAGE_TYPE, "stream": stream, "user": user_id, "detail": detail}
    try:
        await layer_call(lambda: layer.group_send(group_name(stream), message))
    except Exception:
        metrics.layer_failure("publish")
        logger.exception("revoke on %s failed", stream)
        _tell_hub(f"revoke on {stream} failed")
        return False
    return True


def revoke(stream: str, user_id: int, detail: str) -> bool:
    """Synchronous ``arevoke``, with ``publish``'s threading rules."""
    return _from_sync(arevoke, stream, user_id, detail, scheduled=True)
