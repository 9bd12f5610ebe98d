"""Publish events to streams from anywhere: views, services, signals, management commands.

``publish(stream, event, data)`` encodes the ``event`` frame once and hands it to the
channel layer once (one group per stream); every worker's hub then fans it out to its local
subscribers. Writers call ``publish_on_commit``/``publish_many_on_commit``, which publish from
``transaction.on_commit`` so that nothing is announced that is not stored (the "send after
commit" rule, as Zulip's ``send_event_on_commit``). With validation on (DEBUG, tests) every
publish is checked against its declaration first (``realtime.events``).

Delivery is best effort: a channel-layer failure is logged and reported as ``False``, never
raised into the caller's request. Durable streams are recovered from the database with
``since``, so a lost publish costs latency, not data.

With the in-memory layer only subscribers in the same process hear a publish (it skips the
layer then and hands the frame to the process's hub directly): a management
command run in another process reaches them only through ``POST /api/publish/`` or Redis.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Iterable
from functools import partial
from typing import Any, NamedTuple

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from . import events, metrics
from .frames import (
    FRAME_MESSAGE_TYPE,
    FRAMES_MESSAGE_TYPE,
    REVOKE_MESSAGE_TYPE,
    SIGNOUT_STREAM,
    Frame,
    group_name,
)
from .hub import current_hub
from .layer import layer_call
from .protocol import dumps, encode_event

logger = logging.getLogger(__name__)


class Published(NamedTuple):
    """One event for ``publish_many``: the arguments of ``publish``."""

    stream: str
    event: str
    data: Any
    offset: int | None = None


class EventCounts:
    """Events this process published, per epoch second: the dashboard's events-per-second
    series. ``realtime.worker_stats`` takes them (``take``) and sets ``changed`` to be woken;
    publish keeps the counter itself so that it imports nothing of the statistics.
    """

    __slots__ = ("changed", "per_second")

    def __init__(self) -> None:
        self.per_second: Counter[int] = Counter()  # epoch second → events
        self.changed: asyncio.Event | None = None

    def add(self, n: int) -> None:
        """Count ``n`` published events in the current second (a dict increment)."""
        self.per_second[int(time.time())] += n
        if self.changed is not None:
            self.changed.set()

    def total(self) -> int:
        """Events counted and not yet taken."""
        return sum(self.per_second.values())

    def take(self) -> dict[int, int]:
        """The counts so far, ``{epoch second: events}``; the counter starts again empty."""
        taken, self.per_second = dict(self.per_second), Counter()
        return taken

    def give_back(self, taken: dict[int, int], horizon: int) -> None:
        """Put ``taken`` counts back after a failed write, dropping seconds before ``horizon``."""
        self.per_second.update(taken)
        for second in [s for s in self.per_second if s < horizon]:
            del self.per_second[second]


#: This process's published events (not those on internal streams).
counts = EventCounts()

#: Streams for the server's own signals (``sys:workers``, ``sys:dashboard``); not user events.
INTERNAL_PREFIX = "sys:"


class FailureLog:
    """Logs channel-layer failures of publishes: with a traceback at most once per
    ``interval`` seconds, counting the others into the next report.

    During an outage every publish fails the same way; a traceback each would bury the log
    (``townsquare_layer_failures_total`` still counts each one).
    """

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last = -float("inf")
        self._suppressed = 0

    def report(self, what: str) -> None:
        """Call from an ``except`` block: log ``what`` failed, or count it."""
        now = time.monotonic()
        if now - self._last < self.interval:
            self._suppressed += 1
            return
        more = (
            f" ({self._suppressed} more failed since the last report)" if self._suppressed else ""
        )
        logger.exception("%s failed%s", what, more)
        self._last = now
        self._suppressed = 0


#: This process's publish failure log (tests replace it, or set its ``interval``).
failures = FailureLog()


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
    if events.enabled:  # DEBUG and tests: refuse undeclared events (realtime.events)
        events.check(stream, event, data, offset)
    text = encode_event(stream, event, data, offset)
    return bool(await _publish_frames(stream, [(offset, text)]))


async def _publish_frames(stream: str, frames: list[tuple[int | None, str]]) -> int:
    """Hand encoded frames of one stream, in order, to every hub that serves it; returns
    how many were taken (all or none).

    One frame crosses the layer as ``hub.frame``, several as one ``hub.frames`` message.
    With the in-memory layer and one hub the layer is skipped: it would deep-copy the
    message into the hub's queue and wake its reader task, only to hand the same frames to
    the same hub.
    """
    hub = current_hub()
    if hub is not None and hub.sole_subscriber:
        for offset, text in frames:
            hub.deliver(Frame(stream, offset, text))
        metrics.publish_delivered(time.time())
        _count(stream, len(frames))
        return len(frames)
    # ts: publish time in Unix seconds, for the hubs' publish-to-send latency histogram.
    message: dict[str, Any]
    if len(frames) == 1:
        offset, text = frames[0]
        message = {"type": FRAME_MESSAGE_TYPE, "stream": stream, "offset": offset, "text": text}
        what = f"publish to {stream}"
    else:
        message = {"type": FRAMES_MESSAGE_TYPE, "stream": stream, "frames": frames}
        what = f"publish of {len(frames)} events to {stream}"
    message["ts"] = time.time()
    if not await _layer_send(stream, message, what):
        return 0
    _count(stream, len(frames))
    return len(frames)


async def _layer_send(stream: str, message: dict[str, Any], what: str) -> bool:
    """``group_send`` ``message`` to the stream's group; False (logged, counted, and the
    hub told to recover) when the layer failed or did not answer within ``redis_timeout()``.

    A timed-out send may still be delivered (Redis runs the command once it wakes up), so
    durable events are never re-sent from here: the hubs' recovery reads what was stored
    from the database, and each subscription drops offsets it already passed on.
    """
    layer = get_channel_layer()
    if layer is None:
        return False
    try:
        # Retried once at once on a broken connection (a stale one after a Redis restart).
        await layer_call(lambda: layer.group_send(group_name(stream), message))
    except Exception:
        metrics.layer_failure("publish")
        failures.report(what)
        _tell_hub(f"{what} failed")
        return False
    return True


def _count(stream: str, n: int = 1) -> None:
    if not stream.startswith(INTERNAL_PREFIX):
        # The dashboard's events-per-second series. Internal streams are not counted: the
        # worker stats' own "changed" announcement would otherwise count itself forever.
        counts.add(n)


def _tell_hub(reason: str) -> None:
    # The layer failed under this process: its hub (if this loop has one) recovers its
    # subscriptions and catches durable streams up once the layer is back. Publishes of the
    # other processes fail the same way meanwhile, so what they store is fetched then.
    hub = current_hub()
    if hub is not None:
        hub.layer_failed(reason)


async def apublish_many(items: Iterable[Published]) -> int:
    """Publish several events, in order; returns how many the layer took.

    Each frame is still encoded once. Consecutive events of one stream cross the channel
    layer as one message (``hub.frames``), delivered by each hub as separate frames in the
    same order: a group commit of 50 chat messages costs one Redis ``PUBLISH``, not 50. It
    also saves the caller one thread-to-loop hop per event when a single write notifies many
    streams (one ``user:<id>`` stream per recipient).
    """
    if events.enabled:  # DEBUG and tests: refuse undeclared events (realtime.events)
        items = list(items)
        events.check_many(items)
    sent = 0
    run: list[Published] = []
    for item in items:
        if run and item.stream != run[0].stream:
            sent += await _publish_run(run)
            run = []
        run.append(item)
    if run:
        sent += await _publish_run(run)
    return sent


async def _publish_run(run: list[Published]) -> int:
    """Publish consecutive events of one stream (one layer message)."""
    stream = run[0].stream
    frames = [(i.offset, encode_event(stream, i.event, i.data, i.offset)) for i in run]
    return await _publish_frames(stream, frames)


class _Handover:
    """Publishes handed to one event loop by synchronous code, run in order by one task.

    Sync code publishes from two places: a thread that ``sync_to_async`` runs for the loop
    (a service's ``transaction.on_commit`` under ``database_sync_to_async``, a sync view),
    and the loop's own thread (a signal receiver). Neither waits: a database thread that
    waited for the loop to take each publish would hold every other socket's database work
    behind it (it showed as 23% of the samples of a fan-out profile). One queue per loop
    keeps the publishes of one thread in the order they were made.
    """

    def __init__(self) -> None:
        self.queue: deque[
            tuple[Callable[..., Coroutine[Any, Any, Any]], tuple[Any, ...], dict[str, Any]]
        ] = deque()
        self.task: asyncio.Task[None] | None = None

    def push(
        self,
        function: Callable[..., Coroutine[Any, Any, Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        """Queue one call (on the loop's thread); start the draining task if it is idle."""
        self.queue.append((function, args, kwargs))
        if self.task is None:
            # A fresh context: the task outlives whichever thread or request handed it work.
            self.task = asyncio.get_running_loop().create_task(
                self._drain(), context=contextvars.Context()
            )

    async def _drain(self) -> None:
        try:
            while self.queue:
                function, args, kwargs = self.queue.popleft()
                try:
                    await function(*args, **kwargs)
                except Exception:  # apublish reports layer failures itself; this is a bug
                    logger.exception("scheduled %s failed", getattr(function, "__name__", function))
        finally:
            self.task = None


_handovers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Handover] = (
    weakref.WeakKeyDictionary()
)


def _hand_over(
    function: Callable[..., Coroutine[Any, Any, Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    loop = asyncio.get_running_loop()
    handover = _handovers.get(loop)
    if handover is None:
        handover = _handovers[loop] = _Handover()
    handover.push(function, args, kwargs)


def _serving_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop this thread does synchronous work for, if ``sync_to_async`` runs it.

    asgiref records it in its thread-local (it is how ``async_to_sync`` finds the loop to
    run on from such a thread); None in a management command or a plain thread.
    """
    local = SyncToAsync.threadlocal
    loop = getattr(local, "main_event_loop", None)
    if loop is None or getattr(local, "main_event_loop_pid", None) != os.getpid():
        return None
    return loop if loop.is_running() and not loop.is_closed() else None


def _from_sync[T](
    function: Callable[..., Coroutine[Any, Any, T]], *args: Any, scheduled: T, **kwargs: Any
) -> T:
    """Run ``function`` from synchronous code without blocking a thread the server needs.

    On an event loop's thread, or on a thread working for a running loop, the call is handed
    to that loop (in order, see ``_Handover``) and ``scheduled`` is returned at once. Any
    other thread (a management command, a script) has no loop to hand it to: it waits for
    the result, so its publishes also keep their order.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        loop = _serving_loop()
        if loop is None:
            return async_to_sync(function)(*args, **kwargs)
        try:
            loop.call_soon_threadsafe(_hand_over, function, args, kwargs)
        except RuntimeError:  # the loop closed meanwhile
            return async_to_sync(function)(*args, **kwargs)
        return scheduled
    _hand_over(function, args, kwargs)
    return scheduled


def publish_many(items: Iterable[Published]) -> int:
    """Synchronous ``apublish_many``, with ``publish``'s threading rules."""
    batch = list(items)
    if not batch:
        return 0
    if events.enabled:  # raise in the caller's thread, not in the loop's handover
        events.check_many(batch)
    return _from_sync(apublish_many, batch, scheduled=len(batch))


def publish(stream: str, event: str, data: Any, *, offset: int | None = None) -> bool:
    """Publish from synchronous code; same arguments and result as ``apublish``.

    In a server (on the event loop's thread, or on a thread that ``sync_to_async`` runs for
    it: a sync view, a service under ``database_sync_to_async``) it hands the publish to the
    loop and returns True at once; publishes made that way are sent in the order they were
    made. From any other thread (a management command) it waits until the layer took the
    frame and returns ``apublish``'s result.
    """
    if events.enabled:  # raise in the caller's thread, not in the loop's handover
        events.check(stream, event, data, offset)
    return _from_sync(apublish, stream, event, data, offset=offset, scheduled=True)


def publish_on_commit(
    stream: str, event: str, data: Any, *, offset: int | None = None, using: str | None = None
) -> None:
    """``publish`` once the current transaction of database ``using`` commits; nothing if it
    rolls back; at once outside a transaction. The "send after commit" rule (Zulip's
    ``send_event_on_commit``), so that nothing is announced that is not stored.

    With validation on (``realtime.events``) the event is checked now, inside the writer's
    transaction: an ``InvalidEvent`` rolls the write back and points at the line that made the
    event, not at a commit hook. ``data`` is published as it is at commit: build it for the
    event and do not change it afterwards. The callback is ``robust``: the write has
    committed, so a failing publish is logged by Django and does not turn the caller's success
    into an error, nor skip the other callbacks of that commit (a client retrying a "failed"
    write that was stored would write it twice).
    """
    if events.enabled:
        events.check(stream, event, data, offset)
    transaction.on_commit(
        partial(publish, stream, event, data, offset=offset), using=using, robust=True
    )


def publish_many_on_commit(items: Iterable[Published], *, using: str | None = None) -> None:
    """``publish_many`` once the current transaction commits; ``publish_on_commit``'s rules.

    ``items`` is read now (a generator is not left to run at commit time, when the objects
    it reads may have changed); an empty batch schedules nothing.
    """
    batch = list(items)
    if not batch:
        return
    if events.enabled:
        events.check_many(batch)
    transaction.on_commit(partial(publish_many, batch), using=using, robust=True)


async def arevoke(stream: str, user_id: int, detail: str) -> bool:
    """End ``user_id``'s subscriptions to ``stream`` on every worker, now.

    Each affected socket gets ``error {code: "unsubscribed", stream, detail}`` and stops
    receiving the stream. Call it after the change that took the right away has committed.
    Returns False when the channel layer failed (logged).
    """
    message = {"type": REVOKE_MESSAGE_TYPE, "stream": stream, "user": user_id, "detail": detail}
    return await _layer_send(stream, message, f"revoke on {stream}")


def revoke(stream: str, user_id: int, detail: str) -> bool:
    """Synchronous ``arevoke``, with ``publish``'s threading rules."""
    return _from_sync(arevoke, stream, user_id, detail, scheduled=True)


async def asign_out(data: dict[str, Any]) -> bool:
    """Tell every worker that a sign-in ended (``realtime.signout`` closes the sockets).

    ``data`` is ``{user, reason, session?, password?}`` (``realtime.signout.SignOut``). It
    crosses the layer once per process as a frame on ``SIGNOUT_STREAM``, which every process
    with a signed-in socket listens to. Call it after the change has committed. Returns
    False when the channel layer failed (logged): the other workers' sockets then stay open.
    """
    text = dumps({"type": "signout", "data": data})
    return bool(await _publish_frames(SIGNOUT_STREAM, [(None, text)]))


def sign_out(data: dict[str, Any]) -> bool:
    """Synchronous ``asign_out``, with ``publish``'s threading rules."""
    return _from_sync(asign_out, data, scheduled=True)
