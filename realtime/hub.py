"""The process-local hub: fan-out of published frames to the sockets of one event loop.

Stock Channels gives every socket its own layer channel, so a group message costs a layer
receive, a task wake-up and a thread hop per recipient. Here each worker process holds one
layer channel (``realtime.layer``), joined to a stream's group while a local socket
subscribes to it. A publish crosses the layer once per process; the hub hands the
already-encoded ``Frame`` (``realtime.frames``) to each local subscriber, which puts it in
its socket's outbox. See docs/architecture.md, "Fan-out".

The hub is the stream → subscribers map and ``deliver``; the layer link (membership, the
reader, outages) and the database reads after a gap or an outage (``realtime.recovery``)
live in their own modules and are reached through ``Hub.link`` and ``Hub.fetch_range`` /
``Hub.catch_up``.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Coroutine
from typing import Any, Protocol

from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer

from . import metrics
from .conf import rt_settings
from .frames import Frame, Renderer
from .layer import LayerLink
from .recovery import RangeReader, catch_up

logger = logging.getLogger(__name__)


class Subscriber(Protocol):
    """What the hub uses of a local socket's subscription (``realtime.subscription``).

    Attributes:
        renderer: None for the native protocol; a seed endpoint's renderer otherwise (its
            frames count as ``seed`` in ``frames_out_total``, once per renderer).
        last_offset: the highest offset passed on (-1: none); ``catch_up`` reads from the
            lowest of a stream's subscribers.
        user_id: the signed-in user's id, or None; ``revoke_local`` matches it.
    """

    renderer: Renderer | None
    last_offset: int
    user_id: int | None

    def deliver(self, frame: Frame) -> None:
        """Take one frame of a stream this socket subscribed to; must not await or block."""

    def revoke(self, detail: str) -> None:
        """The user's right to the stream was taken away (``realtime.publish.revoke``)."""


class Listener:
    """A ``Subscriber`` that is no socket (a background service listening to a stream, a
    test): no renderer, no offsets, no user; subclasses implement ``deliver``."""

    renderer: Renderer | None = None
    last_offset: int = -1
    user_id: int | None = None

    def deliver(self, frame: Frame) -> None:
        """Take one frame; must not await or block."""
        raise NotImplementedError

    def revoke(self, detail: str) -> None:
        """Nothing to revoke: no user."""


class Hub:
    """Fan-out for the sockets of one event loop (one per worker process).

    Use ``get_hub()``; tests that run many event loops get one hub per loop.
    """

    def __init__(self, layer: BaseChannelLayer | None, *, refresh_seconds: float = 30.0) -> None:
        self.layer = layer
        self._tasks: set[asyncio.Task[Any]] = set()
        self._streams: dict[str, set[Subscriber]] = {}
        # stream → renderer → local subscribers using it: lets deliver() count seed renderings
        # once per renderer instead of once per recipient.
        self._renderers: dict[str, dict[Renderer, int]] = {}
        self._ranges = RangeReader()
        #: The process's channel-layer link: group membership, the reader, outages.
        self.link = LayerLink(
            layer,
            self._streams,
            deliver=self.deliver,
            revoke=self.revoke_local,
            recovered=self.catch_up,
            refresh_seconds=refresh_seconds,
        )

    @property
    def sole_subscriber(self) -> bool:
        """True when this hub is the only one that can hear a publish: the layer is the
        in-memory one (which reaches nothing outside this process) and this process has no
        other event loop with a hub. A publish then skips the layer (``apublish``)."""
        return isinstance(self.layer, InMemoryChannelLayer) and len(_hubs) == 1

    @property
    def stream_count(self) -> int:
        """Streams with at least one local subscriber."""
        return len(self._streams)

    def local_subscribers(self, stream: str) -> int:
        """Number of local sockets subscribed to ``stream``."""
        return len(self._streams.get(stream, ()))

    async def subscribe(self, stream: str, subscriber: Subscriber) -> None:
        """Add a local subscriber; returns once this process receives the stream's publishes.

        A stream this process already serves needs no call to the layer. Joining a new one
        takes at most ``redis_timeout()`` seconds, waiting for the link's lock included.

        Raises:
            TimeoutError: the layer did not answer in time (a hung Redis);
            Exception: whatever else the channel layer raised joining the group. Either way
                the subscriber is not left behind.
        """
        subscribers = self._streams.get(stream)
        if subscribers is None:
            subscribers = self._streams[stream] = set()
        added = subscriber not in subscribers
        if added:
            subscribers.add(subscriber)
            self._count_renderer(stream, subscriber, 1)
        try:
            await self.link.sync(stream)
        except BaseException:
            if added and subscriber in subscribers:
                subscribers.discard(subscriber)
                self._count_renderer(stream, subscriber, -1)
            if not subscribers and self._streams.get(stream) is subscribers:
                del self._streams[stream]
            raise

    async def unsubscribe(self, stream: str, subscriber: Subscriber) -> None:
        """Remove a local subscriber; the last one out leaves the layer group.

        Never raises for the layer: a group this process failed to leave (a hung or dead
        Redis) only brings it frames that no local subscriber takes, until the layer forgets
        the membership (``group_expiry``, a restart).
        """
        subscribers = self._streams.get(stream)
        if subscribers is None or subscriber not in subscribers:
            return
        subscribers.discard(subscriber)
        self._count_renderer(stream, subscriber, -1)
        if not subscribers:
            del self._streams[stream]
            try:
                await self.link.sync(stream)
            except Exception as exc:
                logger.warning("hub: leaving the group of %s failed: %r", stream, exc)

    def _count_renderer(self, stream: str, subscriber: Subscriber, delta: int) -> None:
        renderer = subscriber.renderer
        if renderer is None:
            return
        counts = self._renderers.setdefault(stream, {})
        remaining = counts.get(renderer, 0) + delta
        if remaining > 0:
            counts[renderer] = remaining
        else:
            counts.pop(renderer, None)
            if not counts:
                del self._renderers[stream]

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a background task on the hub's loop, holding a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def fetch_range(self, stream: str, after: int, upto: int) -> list[Frame]:
        """Frames of a durable stream with ``after < offset <= upto`` (``realtime.recovery``:
        one query per range per process, however many subscribers ask)."""
        return await self._ranges.fetch_range(stream, after, upto)

    def deliver(self, frame: Frame) -> None:
        """Hand one frame to every local subscriber of its stream. No await, no encoding.

        Counted in ``frames_out_total`` once per frame, not once per recipient: native
        subscribers as ``event``, seed subscribers as ``seed`` per renderer; subscribers whose
        renderer skips the frame are not counted.
        """
        subscribers = self._streams.get(frame.stream)
        if subscribers:
            for subscriber in subscribers:
                subscriber.deliver(frame)
            renderers = self._renderers.get(frame.stream)
            if renderers is None:
                metrics.frames_out("event", len(subscribers))
            else:
                self._count_rendered(frame, len(subscribers), renderers)

    @staticmethod
    def _count_rendered(frame: Frame, total: int, renderers: dict[Renderer, int]) -> None:
        seed = rendered = 0
        for renderer, count in renderers.items():
            rendered += count
            if frame.render(renderer) is not None:  # cached: computed once per frame anyway
                seed += count
        metrics.frames_out("event", total - rendered)
        metrics.frames_out("seed", seed)


    def layer_failed(self, reason: str) -> None:
        """Something failed in the channel layer: start recovery unless it is under way.

        Called by ``publish`` (a failed publish means the other processes' publishes are
        failing too, and this process's subscriptions may be gone with the layer's state)
        and by the link itself (its reader, its probes).
        """
        self.link.failed(reason)

    async def catch_up(self) -> None:
        """Deliver what durable streams stored since the lowest offset any local subscriber
        passed on: after a layer outage the publishes of that time never arrived.
        Subscribers drop what they already sent, so nothing is sent twice."""
        since = {}
        for stream, subscribers in list(self._streams.items()):
            offsets = [s.last_offset for s in subscribers if s.last_offset >= 0]
            if offsets:
                since[stream] = min(offsets)
        await catch_up(since, self.deliver)

    def revoke_local(self, stream: str, user_id: int, detail: str) -> None:
        """End ``user_id``'s subscriptions to ``stream`` on this process's sockets."""
        for subscriber in list(self._streams.get(stream, ())):
            if subscriber.user_id == user_id:
                subscriber.revoke(detail)

    async def close(self) -> None:
        """Stop the layer link's tasks and leave every group (tests, shutdown)."""
        await self.link.close()
        self._streams.clear()
        self._renderers.clear()


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def drop_closed_loops() -> None:
    """Forget the hubs of event loops that have closed (a test suite runs a loop per test;
    a closed loop's hub would otherwise count in ``Hub.sole_subscriber`` until collected)."""
    for loop in [loop for loop in _hubs if loop.is_closed()]:
        del _hubs[loop]


def current_hub() -> Hub | None:
    """The running event loop's hub if it has one (never creates one)."""
    try:
        return _hubs.get(asyncio.get_running_loop())
    except RuntimeError:
        return None


def get_hub() -> Hub:
    """Return the hub of the running event loop, creating it on first use."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub(
            get_channel_layer(), refresh_seconds=rt_settings().HUB_REFRESH_SECONDS
        )
    return hub
