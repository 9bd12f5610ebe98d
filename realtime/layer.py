"""This process's link to the channel layer: one layer channel, group membership, outages.

The hub (``realtime.hub``) fans frames out to local sockets and knows nothing of the layer
but this link. The link holds the process's one layer channel, joins a stream's group when
the hub first serves it and leaves it after the last local subscriber (``sync``), reads the
channel (one reader task, ``hub.frame``/``hub.frames``/``hub.revoke``/``hub.probe`` from
``realtime.frames``) and hands each frame to the hub's ``deliver``, and notices outages.

A channel-layer outage is noticed four ways: the reader's ``receive`` fails (the core Redis
layer); the pub/sub layer's Redis connection connects again (it re-subscribes by itself,
silently, and what was published in between is lost to this process: a hook on
channels_redis' private connection objects, ``pubsub_connections``); a publish from this
process fails (``failed``); or a probe the link sends to its own channel every
``probe_interval`` does not come back within ``probe_timeout`` (any other layer). Recovery
re-joins the groups, waits until a probe makes the round trip, then calls the hub's
``recovered`` callback, which reads what durable streams stored meanwhile
(``realtime.recovery``). See docs/architecture.md, "Channel-layer outages".
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import weakref
from collections.abc import Awaitable, Callable, Collection, Coroutine
from typing import Any

from channels.layers import BaseChannelLayer, InMemoryChannelLayer
from redis.exceptions import ConnectionError as RedisConnectionError

from . import metrics
from .conf import redis_timeout
from .frames import (
    FRAME_MESSAGE_TYPE,
    FRAMES_MESSAGE_TYPE,
    PROBE_MESSAGE_TYPE,
    REVOKE_MESSAGE_TYPE,
    Frame,
    group_name,
)

logger = logging.getLogger(__name__)


def _broken_connection(exc: BaseException) -> bool:
    """True for errors that mean the connection to the layer's server broke (not a timeout)."""
    if isinstance(exc, TimeoutError):  # an OSError too, but a hung server: no retry
        return False
    # OSError: ConnectionError, ConnectionResetError, ...
    return isinstance(exc, (OSError, RedisConnectionError))


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


def pubsub_connections(layer: Any) -> list[Any]:
    """The Redis connections that carry a pub/sub layer's subscriptions in this event loop.

    Reaches into channels_redis' ``RedisPubSubChannelLayer`` (per-loop layer → shards → the
    redis-py ``PubSub`` → its ``Connection``): private attributes, read here and nowhere
    else. Any other layer, or another layout, has none.
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


def background[T](coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Start a long-lived task in a fresh ``contextvars`` context.

    A task copies the context of whoever creates it, and the link's tasks are started from
    whatever happened to touch the hub first: a consumer, or a publish that failed inside a
    sync view's ``async_to_sync``, whose context names that call's thread executor. A
    recovery task started there would run its ``database_sync_to_async`` reads on that
    executor long after it quit ("CurrentThreadExecutor already quit or is broken").
    """
    return asyncio.get_running_loop().create_task(coro, context=contextvars.Context())


class LayerLink:
    """One process's channel, group membership and outage detection for one event loop.

    Args:
        layer: the channel layer (None: no layer, nothing to join).
        streams: the hub's streams with local subscribers (read, never written: a stream
            in it is wanted, one not in it is not).
        deliver: the hub's ``deliver(frame)``, called by the reader for every frame.
        revoke: the hub's ``revoke_local(stream, user_id, detail)``.
        recovered: awaited after an outage once the layer carries messages again.
        refresh_seconds: re-join every group this often (membership can expire).
    """

    #: Seconds between probes of the layer (only with a layer that can fail, and streams).
    probe_interval = 0.5
    #: A probe not back after this many seconds means the layer lost it.
    probe_timeout = 2.0

    def __init__(
        self,
        layer: BaseChannelLayer | None,
        streams: Collection[str],
        *,
        deliver: Callable[[Frame], None],
        revoke: Callable[[str, int, str], None],
        recovered: Callable[[], Awaitable[None]],
        refresh_seconds: float = 30.0,
    ) -> None:
        self.layer = layer
        self.refresh_seconds = refresh_seconds
        self._streams = streams
        self._deliver = deliver
        self._revoke = revoke
        self._recovered = recovered
        #: This process's layer channel (None until the first join).
        self.channel: str | None = None
        #: Held while group membership changes (a join, a leave, a re-join).
        self.lock = asyncio.Lock()
        self._joined: set[str] = set()
        self._refresher: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        # Probes in flight: number → (loop time sent, resolved when it comes back).
        self._probes: dict[int, tuple[float, asyncio.Future[None]]] = {}
        self._probe_seq = 0
        # Set when recovery sees the layer answer again: cuts the reader's backoff short.
        self._layer_back = asyncio.Event()
        # Pub/sub connections whose reconnects this link hears of (_hook_reconnects).
        self._hooked: weakref.WeakSet[Any] = weakref.WeakSet()

    async def sync(self, stream: str) -> None:
        """Make the layer membership of ``stream``'s group match the hub's local set.

        A stream already joined and still wanted asks the layer nothing (no lock either).
        Otherwise at most ``redis_timeout()`` seconds, waiting for the lock included.

        Raises:
            TimeoutError: the layer did not answer in time; Exception: the layer's error.
        """
        # Joins and leaves of one stream can interleave across awaits; under the lock, make
        # the layer membership match the local set, whatever happened while we waited.
        if self.layer is None:
            return
        if stream in self._joined and stream in self._streams and self.channel is not None:
            # Already a member: nothing to ask the layer, so no wait on a lock that a join or
            # a recovery may hold while Redis hangs.
            self._ensure_tasks()
            return
        # One bound for the lock and the call: a subscribe behind another join that waits on
        # a hung Redis gives up when its own time is over, not after everyone else's.
        async with asyncio.timeout(redis_timeout()), self.lock:
            await self._ensure_reader()
            wanted = stream in self._streams
            if wanted and stream not in self._joined:
                layer, channel = self.layer, self.channel
                with metrics.counting_failures("group_add"):
                    await layer_call(lambda: layer.group_add(group_name(stream), channel))
                self._joined.add(stream)
                self._hook_reconnects()
            elif not wanted and stream in self._joined:
                self._joined.discard(stream)
                layer, channel = self.layer, self.channel
                with metrics.counting_failures("group_discard"):
                    await layer_call(lambda: layer.group_discard(group_name(stream), channel))

    async def _ensure_reader(self) -> None:
        if self.channel is None:
            assert self.layer is not None
            layer = self.layer
            self.channel = await layer_call(lambda: layer.new_channel(prefix="hub"))
        self._ensure_tasks()

    def _ensure_tasks(self) -> None:
        # (Re)start the reader, the refresher and the probe watcher if they are not running.
        if self._reader is None or self._reader.done():
            self._reader = background(self._read())
        if self._refresher is None or self._refresher.done():
            self._refresher = background(self._refresh())
        can_fail = not isinstance(self.layer, InMemoryChannelLayer)
        if can_fail and (self._watcher is None or self._watcher.done()):
            self._watcher = background(self._watch())

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
        layer, channel = self.layer, self.channel
        for stream in list(self._joined):
            async with self.lock:
                if stream in self._joined:
                    group = group_name(stream)

                    async def add(group: str = group) -> None:
                        await layer.group_add(group, channel)

                    with metrics.counting_failures("group_add"):
                        await layer_call(add)

    async def _read(self) -> None:
        assert self.layer is not None and self.channel is not None
        layer, channel = self.layer, self.channel
        deliver = self._deliver
        backoff = 0.1
        while True:
            try:
                message = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.layer_failure("receive")
                logger.exception("hub: channel layer receive failed; retrying in %.1fs", backoff)
                self.failed("receive failed")
                # Back off, but try again at once when recovery next sees the layer answer.
                self._layer_back.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._layer_back.wait(), backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            kind = message.get("type")
            if kind == FRAME_MESSAGE_TYPE:
                deliver(Frame(message["stream"], message.get("offset"), message["text"]))
                metrics.publish_delivered(message.get("ts"))
            elif kind == FRAMES_MESSAGE_TYPE:
                stream = message["stream"]
                for offset, text in message["frames"]:
                    deliver(Frame(stream, offset, text))
                metrics.publish_delivered(message.get("ts"))
            elif kind == REVOKE_MESSAGE_TYPE:
                self._revoke(message["stream"], message["user"], message["detail"])
            elif kind == PROBE_MESSAGE_TYPE:
                probe = self._probes.pop(message.get("n", -1), None)
                if probe is not None and not probe[1].done():
                    probe[1].set_result(None)

    @property
    def recovering(self) -> bool:
        """True from a layer failure until the groups are re-joined and caught up."""
        return self._recovery is not None and not self._recovery.done()

    def failed(self, reason: str) -> None:
        """Something failed in the channel layer: start recovery unless it is under way."""
        if self.layer is None or self.channel is None or self.recovering:
            return
        logger.warning("event=layer.lost reason=%s streams=%d", reason, len(self._streams))
        self._layer_back.clear()
        self._recovery = background(self._recover())

    def _hook_reconnects(self) -> None:
        # channels_redis' pub/sub layer re-subscribes after its connection broke without
        # telling anyone, and the gap can be shorter than a probe interval (any subscribe or
        # unsubscribe reconnects at once). Its redis-py connection calls back on every
        # connect: hooked once it exists, so every later call is a reconnect.
        for connection in pubsub_connections(self.layer):
            if connection not in self._hooked:
                self._hooked.add(connection)
                connection.register_connect_callback(self._on_layer_reconnect)

    def _on_layer_reconnect(self, connection: Any) -> None:
        # Called by redis-py inside its connect(), after the layer's own re-subscription
        # callback; must not raise.
        try:
            self.failed("the layer's connection was re-established")
        except Exception:  # pragma: no cover - defensive: never break the layer's connect
            logger.exception("hub: starting recovery failed")

    async def _send_probe(self) -> asyncio.Future[None]:
        assert self.layer is not None and self.channel is not None
        layer, channel = self.layer, self.channel
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
        """Send a probe to this process's own channel; True if the reader got it within
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
                self.failed("a probe was lost")
                continue
            try:
                await self._send_probe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failed(f"a probe failed: {type(exc).__name__}")

    async def _recover(self) -> None:
        # The layer failed (a Redis restart, say). Its group membership may be gone and what
        # was published meanwhile is lost to this process: re-join as soon as the layer
        # answers, wait until a probe makes the round trip (the subscriptions are back), then
        # let the hub read the durable streams' missed events from the database.
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
        await self._recovered()

    async def close(self) -> None:
        """Stop the reader, the refresher, recovery and the watcher; leave every group."""
        for task in (self._reader, self._refresher, self._recovery, self._watcher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._reader = self._refresher = self._recovery = self._watcher = None
        self._probes.clear()
        if self.layer is not None and self.channel is not None:
            layer, channel = self.layer, self.channel
            for stream in list(self._joined):
                group = group_name(stream)

                async def discard(group: str = group) -> None:
                    await layer.group_discard(group, channel)

                with contextlib.suppress(Exception), metrics.counting_failures("group_discard"):
                    await layer_call(discard)
        self._joined.clear()
