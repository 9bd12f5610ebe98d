"""The process-local hub: one channel-layer subscription per stream per process.

Stock Channels gives every socket its own layer channel, so a group message costs a layer
receive, a task wake-up and a thread hop per recipient. Here each worker process holds one
layer channel (the hub's), joins the layer group of a stream when its first local socket
subscribes and leaves it when the last one goes. A publish crosses the layer once per process;
the hub hands the already-encoded frame to each local subscriber's outbox.
See docs/architecture.md, "Fan-out".
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer

from . import metrics
from .conf import redis_timeout

logger = logging.getLogger(__name__)

#: Channel-layer message type carrying one published frame between processes.
FRAME_MESSAGE_TYPE = "hub.frame"
#: Channel-layer message type carrying consecutive frames of one stream (``publish_many``):
#: ``{stream, frames: [[offset | None, text], ...], ts}``, delivered in order.
FRAMES_MESSAGE_TYPE = "hub.frames"
#: Channel-layer message type ending one user's subscriptions to a stream on every worker.
REVOKE_MESSAGE_TYPE = "hub.revoke"
#: Channel-layer message type of a hub's probe of the layer, sent to its own channel.
PROBE_MESSAGE_TYPE = "hub.probe"


def _broken_connection(exc: BaseException) -> bool:
    """True for errors that mean the connection to the layer's server broke (not a timeout)."""
    if isinstance(exc, TimeoutError):  # an OSError too, but a hung server: no retry
        return False
    if isinstance(exc, OSError):  # ConnectionError, ConnectionResetError, ...
        return True
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
    except ImportError:  # pragma: no cover - redis comes with channels_redis
        return False
    return isinstance(exc, RedisConnectionError)


async def layer_call[T](call: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
    """Await one channel-layer call within ``timeout`` seconds (default ``redis_timeout()``);
    once more, at once, if its connection was broken.

    After a Redis restart each connection pooled by the layer still points at the old process
    and fails once on its next use (redis-py then reconnects it): without the retry a publish
    or a group join made in the seconds after Redis came back fails although Redis answers.
    A Redis that is down fails the retry too, immediately (connection refused).

    Raises:
        TimeoutError: the layer did not answer in time (a hung Redis). The call is
            cancelled; redis-py then drops that connection, so no late reply can be taken
            for another command's. A cancelled publish may still reach Redis and be
            delivered late: durable streams drop it by offset.
        Exception: whatever the layer raised.
    """
    async with asyncio.timeout(redis_timeout() if timeout is None else timeout):
        try:
            return await call()
        except Exception as exc:
            if not _broken_connection(exc):
                raise
            return await call()


def group_name(stream: str) -> str:
    """Channel-layer group of a stream (``chat:room:42`` → ``rt.chat.room.42``).

    Stream names use letters, digits, ``_`` and ``-`` between colons, so the mapping is
    one-to-one and the result is a valid Channels group name (under 100 ASCII characters).
    """
    return "rt." + stream.replace(":", ".")


Renderer = Callable[["Frame"], "str | None"]


class Frame:
    """One published event inside a process: encoded once; other renderings cached.

    Attributes:
        stream: the stream name.
        offset: the event's offset on a durable stream, else None.
        text: the native ``event`` frame as JSON text.
    """

    __slots__ = ("_payload", "_renders", "offset", "stream", "text")

    def __init__(self, stream: str, offset: int | None, text: str) -> None:
        self.stream = stream
        self.offset = offset
        self.text = text
        self._renders: dict[Renderer, str | None] | None = None
        self._payload: dict[str, Any] | None = None

    @property
    def payload(self) -> dict[str, Any]:
        """The decoded native frame (decoded at most once per process)."""
        if self._payload is None:
            import orjson

            self._payload = orjson.loads(self.text)
        return self._payload

    def render(self, renderer: Renderer) -> str | None:
        """Return ``renderer(self)``, computed once per frame per renderer (compat endpoints)."""
        renders = self._renders
        if renders is None:
            renders = self._renders = {}
        try:
            return renders[renderer]
        except KeyError:
            text = renders[renderer] = renderer(self)
            return text


class Subscriber(Protocol):
    """What the hub needs of a local socket.

    A subscriber that has a ``renderer`` attribute other than None (a seed endpoint's) counts
    as ``seed`` in ``frames_out_total`` when its renderer produces a frame.
    """

    def deliver(self, frame: Frame) -> None:
        """Take one frame of a stream this socket subscribed to; must not await or block."""


def _pubsub_connections(layer: Any) -> list[Any]:
    """The Redis connections that carry a pub/sub layer's subscriptions in this event loop.

    Reaches into channels_redis' ``RedisPubSubChannelLayer`` (per-loop layer → shards → the
    redis-py ``PubSub`` → its ``Connection``); any other layer, or another layout, has none.
    """
    try:
        get_layer = getattr(layer, "_get_layer", None)
        inner = get_layer() if callable(get_layer) else layer
        shards = list(getattr(inner, "_shards", ()))
    except Exception:
        return []
    found = []
    for shard in shards:
        connection = getattr(getattr(shard, "_pubsub", None), "connection", None)
        if connection is not None and callable(
            getattr(connection, "register_connect_callback", None)
        ):
            found.append(connection)
    return found


def _background[T](coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Start one of the hub's own long-lived tasks in a fresh ``contextvars`` context.

    A task copies the context of whoever creates it, and the hub's tasks are started from
    whatever happened to touch the hub first: a consumer, or a publish that failed inside a
    sync view's ``async_to_sync``, whose context names that call's thread executor. A
    recovery task started there would run its ``database_sync_to_async`` reads on that
    executor long after it quit ("CurrentThreadExecutor already quit or is broken").
    """
    return asyncio.get_running_loop().create_task(coro, context=contextvars.Context())


class Hub:
    """Fan-out for the sockets of one event loop (one per worker process).

    Use ``get_hub()``; tests that run many event loops get one hub per loop.

    A channel-layer outage is noticed four ways: the reader's ``receive`` fails (the core
    Redis layer); the pub/sub layer's Redis connection connects again (it re-subscribes by
    itself, silently, and what was published in between is lost to this process); a publish
    from this process fails (``layer_failed``); or a probe the hub sends to its own channel
    every ``probe_interval`` does not come back within ``probe_timeout`` (any other layer).
    Recovery re-joins the groups, waits until a probe makes the round trip, then reads what
    durable streams stored meanwhile from the database (``catch_up``).
    """

    #: Seconds between probes of the layer (only with a layer that can fail, and streams).
    probe_interval = 0.5
    #: A probe not back after this many seconds means the layer lost it.
    probe_timeout = 2.0

    def __init__(self, layer: BaseChannelLayer | None, *, refresh_seconds: float = 30.0) -> None:
        self.layer = layer
        self.refresh_seconds = refresh_seconds
        self._refresher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._fetches: dict[tuple[str, int, int], asyncio.Future[list[Frame]]] = {}
        self._streams: dict[str, set[Subscriber]] = {}
        # stream → renderer → local subscribers using it: lets deliver() count seed renderings
        # once per renderer instead of once per recipient.
        self._renderers: dict[str, dict[Renderer, int]] = {}
        self._joined: set[str] = set()
        self._lock = asyncio.Lock()
        self._channel: str | None = None
        self._reader: asyncio.Task[None] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        # Probes in flight: number → (loop time sent, resolved when it comes back).
        self._probes: dict[int, tuple[float, asyncio.Future[None]]] = {}
        self._probe_seq = 0
        # Set when recovery sees the layer answer again: cuts the reader's backoff short.
        self._layer_back = asyncio.Event()
        # Pub/sub connections whose reconnects this hub hears of (_hook_reconnects).
        self._hooked: weakref.WeakSet[Any] = weakref.WeakSet()

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
        takes at most ``redis_timeout()`` seconds, waiting for the hub's lock included.

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
            await self._sync_group(stream)
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
                await self._sync_group(stream)
            except Exception as exc:
                logger.warning("hub: leaving the group of %s failed: %r", stream, exc)

    def _count_renderer(self, stream: str, subscriber: Subscriber, delta: int) -> None:
        renderer = getattr(subscriber, "renderer", None)
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
        """Frames of a durable stream with ``after < offset <= upto``, from its replay function.

        Concurrent requests for the same range share one database query, so a gap seen by
        every local subscriber of a stream costs one query per process, and each event is
        encoded once.
        """
        key = (stream, after, upto)
        pending = self._fetches.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(stream, after, upto))
            self._fetches[key] = pending
            pending.add_done_callback(lambda _: self._fetches.pop(key, None))
        return await asyncio.shield(pending)

    async def _fetch(self, stream: str, after: int, upto: int) -> list[Frame]:
        from channels.db import database_sync_to_async

        from .protocol import encode_event
        from .registry import resolve

        kind, key = resolve(stream)
        if kind.replay is None or upto <= after:
            return []
        events = await database_sync_to_async(kind.replay)(key, after, upto - after)
        return [
            Frame(stream, e.offset, encode_event(stream, e.event, e.data, e.offset))
            for e in events
            if e.offset is not None and e.offset <= upto
        ]

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

    async def _sync_group(self, stream: str) -> None:
        # Joins and leaves of one stream can interleave across awaits; under the lock, make the
        # layer membership match the local set, whatever happened while we waited.
        if self.layer is None:
            return
        if stream in self._joined and stream in self._streams and self._channel is not None:
            # Already a member: nothing to ask the layer, so no wait on a lock that a join or
            # a recovery may hold while Redis hangs.
            self._ensure_tasks()
            return
        # One bound for the lock and the call: a subscribe behind another join that waits on
        # a hung Redis gives up when its own time is over, not after everyone else's.
        async with asyncio.timeout(redis_timeout()), self._lock:
            await self._ensure_reader()
            wanted = stream in self._streams
            if wanted and stream not in self._joined:
                layer, channel = self.layer, self._channel
                with metrics.counting_failures("group_add"):
                    await layer_call(lambda: layer.group_add(group_name(stream), channel))
                self._joined.add(stream)
                self._hook_reconnects()
            elif not wanted and stream in self._joined:
                self._joined.discard(stream)
                layer, channel = self.layer, self._channel
                with metrics.counting_failures("group_discard"):
                    await layer_call(lambda: layer.group_discard(group_name(stream), channel))

    async def _ensure_reader(self) -> None:
        if self._channel is None:
            assert self.layer is not None
            layer = self.layer
            self._channel = await layer_call(lambda: layer.new_channel(prefix="hub"))
        self._ensure_tasks()

    def _ensure_tasks(self) -> None:
        # (Re)start the reader, the refresher and the probe watcher if they are not running.
        if self._reader is None or self._reader.done():
            self._reader = _background(self._read())
        if self._refresher is None or self._refresher.done():
            self._refresher = _background(self._refresh())
        can_fail = not isinstance(self.layer, InMemoryChannelLayer)
        if can_fail and (self._watcher is None or self._watcher.done()):
            self._watcher = _background(self._watch())

    async def _refresh(self) -> None:
        # Group membership lives in the layer and can vanish behind our back: channels_redis
        # expires it (group_expiry) and a Redis restart empties it. Re-adding every joined
        # group on a timer (idempotent; it also renews the expiry) bounds how long a worker
        # can go deaf to a stream to one interval.
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.rejoin()
            except Exception as exc:
                logger.warning(
                    "hub: re-joining groups failed (%r); next try in %ss", exc, self.refresh_seconds
                )

    async def rejoin(self) -> None:
        """Re-add this process's channel to the group of every stream it serves.

        Raises:
            Exception: the channel layer's error; groups not yet re-added wait for next time.
        """
        assert self.layer is not None
        layer, channel = self.layer, self._channel
        for stream in list(self._joined):
            async with self._lock:
                if stream in self._joined:
                    group = group_name(stream)

                    async def add(group: str = group) -> None:
                        await layer.group_add(group, channel)

                    with metrics.counting_failures("group_add"):
                        await layer_call(add)

    async def _read(self) -> None:
        assert self.layer is not None and self._channel is not None
        layer, channel = self.layer, self._channel
        backoff = 0.1
        while True:
            try:
                message = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.layer_failure("receive")
                logger.exception("hub: channel layer receive failed; retrying in %.1fs", backoff)
                self.layer_failed("receive failed")
                # Back off, but try again at once when recovery next sees the layer answer.
                self._layer_back.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._layer_back.wait(), backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            kind = message.get("type")
            if kind == FRAME_MESSAGE_TYPE:
                self.deliver(Frame(message["stream"], message.get("offset"), message["text"]))
                metrics.publish_delivered(message.get("ts"))
            elif kind == FRAMES_MESSAGE_TYPE:
                stream = message["stream"]
                for offset, text in message["frames"]:
                    self.deliver(Frame(stream, offset, text))
                metrics.publish_delivered(message.get("ts"))
            elif kind == REVOKE_MESSAGE_TYPE:
                self.revoke_local(message["stream"], message["user"], message["detail"])
            elif kind == PROBE_MESSAGE_TYPE:
                probe = self._probes.pop(message.get("n", -1), None)
                if probe is not None and not probe[1].done():
                    probe[1].set_result(None)

    @property
    def recovering(self) -> bool:
        """True from a layer failure until the groups are re-joined and caught up."""
        return self._recovery is not None and not self._recovery.done()

    def layer_failed(self, reason: str) -> None:
        """Something failed in the channel layer: start recovery unless it is under way.

        Called by the reader, the probe watcher and ``publish`` (a failed publish means the
        other processes' publishes are failing too, and this process's subscriptions may be
        gone with the layer's state).
        """
        if self.layer is None or self._channel is None or self.recovering:
            return
        logger.warning("event=layer.lost reason=%s streams=%d", reason, len(self._streams))
        self._layer_back.clear()
        self._recovery = _background(self._recover())

    def _hook_reconnects(self) -> None:
        # channels_redis' pub/sub layer re-subscribes after its connection broke without
        # telling anyone, and the gap can be shorter than a probe interval (any subscribe or
        # unsubscribe reconnects at once). Its redis-py connection calls back on every
        # connect: hooked once it exists, so every later call is a reconnect.
        for connection in _pubsub_connections(self.layer):
            if connection not in self._hooked:
                self._hooked.add(connection)
                connection.register_connect_callback(self._on_layer_reconnect)

    def _on_layer_reconnect(self, connection: Any) -> None:
        # Called by redis-py inside its connect(), after the layer's own re-subscription
        # callback; must not raise.
        try:
            self.layer_failed("the layer's connection was re-established")
        except Exception:  # pragma: no cover - defensive: never break the layer's connect
            logger.exception("hub: starting recovery failed")

    async def _send_probe(self) -> asyncio.Future[None]:
        assert self.layer is not None and self._channel is not None
        layer, channel = self.layer, self._channel
        loop = asyncio.get_running_loop()
        self._probe_seq += 1
        number = self._probe_seq
        back: asyncio.Future[None] = loop.create_future()
        self._probes[number] = (loop.time(), back)
        message = {"type": PROBE_MESSAGE_TYPE, "n": number}
        try:
            await layer_call(lambda: layer.send(channel, message))
        except BaseException:
            self._probes.pop(number, None)
            raise
        return back

    async def probe(self, timeout: float) -> bool:
        """Send a probe to this hub's own channel; True if the reader got it within
        ``timeout`` seconds (the layer carries messages both ways again)."""
        try:
            back = await self._send_probe()
            await asyncio.wait_for(back, timeout)
        except asyncio.CancelledError:
            raise
        except Exception:
            return False
        return True

    async def _watch(self) -> None:
        # A probe every probe_interval while the hub serves streams, without waiting for it;
        # one not back after probe_timeout was lost by the layer. The pub/sub layer drops its
        # subscriptions for at least a second when its connection breaks (it reconnects and
        # subscribes again by itself, silently), so a probe sent in that time never returns.
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.probe_interval)
            self._hook_reconnects()
            if not self._streams or self.recovering:
                self._probes.clear()
                continue
            now = loop.time()
            if any(now - sent > self.probe_timeout for sent, _ in self._probes.values()):
                self._probes.clear()
                self.layer_failed("a probe was lost")
                continue
            try:
                await self._send_probe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.layer_failed(f"a probe failed: {type(exc).__name__}")

    async def _recover(self) -> None:
        # The layer failed (a Redis restart, say). Its group membership may be gone and what
        # was published meanwhile is lost to this process: re-join as soon as the layer
        # answers, wait until a probe makes the round trip (the subscriptions are back), then
        # read the durable streams' missed events from the database.
        started = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(0.25)
            try:
                await self.rejoin()
            except asyncio.CancelledError:
                raise
            except Exception:
                continue
            self._layer_back.set()
            # A probe lost while the layer re-subscribes will not come back: try again soon.
            if await self.probe(min(0.5, self.probe_timeout)):
                break
        logger.info(
            "event=layer.recovered streams=%d seconds=%.1f",
            len(self._streams),
            asyncio.get_running_loop().time() - started,
        )
        await self.catch_up()

    async def catch_up(self) -> None:
        """Deliver what durable streams stored since the lowest offset any local subscriber
        passed on: after a layer outage the publishes of that time never arrived.
        Subscribers drop what they already sent, so nothing is sent twice."""
        from channels.db import database_sync_to_async

        from .conf import rt_settings
        from .protocol import ProtocolError, encode_event
        from .registry import resolve

        limit = rt_settings().REPLAY_MAX
        for stream, subscribers in list(self._streams.items()):
            try:
                kind, key = resolve(stream)
            except ProtocolError:
                continue  # internal streams (sys:*) have no kind
            offsets = [o for s in subscribers if (o := getattr(s, "last_offset", -1)) >= 0]
            if kind.replay is None or not offsets:
                continue
            try:
                events = await database_sync_to_async(kind.replay)(key, min(offsets), limit)
            except Exception:
                logger.exception("hub: catching up %s failed", stream)
                continue
            logger.info(
                "event=layer.catch_up stream=%s since=%s events=%d",
                stream,
                min(offsets),
                len(events),
            )
            for event in events:
                text = encode_event(stream, event.event, event.data, event.offset)
                self.deliver(Frame(stream, event.offset, text))

    def revoke_local(self, stream: str, user_id: int, detail: str) -> None:
        """End ``user_id``'s subscriptions to ``stream`` on this process's sockets."""
        for subscriber in list(self._streams.get(stream, ())):
            if getattr(subscriber, "user_id", None) == user_id:
                revoke = getattr(subscriber, "revoke", None)
                if revoke is not None:
                    revoke(detail)

    async def close(self) -> None:
        """Stop the reader and the refresher and leave every group (tests, shutdown)."""
        for task in (self._reader, self._refresher, self._recovery, self._watcher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._reader = self._refresher = self._recovery = self._watcher = None
        self._probes.clear()
        if self.layer is not None and self._channel is not None:
            layer, channel = self.layer, self._channel
            for stream in list(self._joined):
                group = group_name(stream)

                async def discard(group: str = group) -> None:
                    await layer.group_discard(group, channel)

                with contextlib.suppress(Exception), metrics.counting_failures("group_discard"):
                    await layer_call(discard)
        self._joined.clear()
        self._streams.clear()
        self._renderers.clear()


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


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
        from .conf import rt_settings

        hub = _hubs[loop] = Hub(
            get_channel_layer(), refresh_seconds=rt_settings().HUB_REFRESH_SECONDS
        )
    return hub
