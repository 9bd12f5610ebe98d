"""Consumers of the real-time core.

``RealtimeConsumer`` is the base of every Townsquare socket: it owns the socket's outbox,
its hub subscriptions and its limits, and turns errors into ``error`` frames. It has no
channel-layer channel of its own (the hub holds one per process), and its ``dispatch`` skips
Channels' per-message database-connection hop, since it never touches the ORM itself: service
calls go through ``database_sync_to_async``.

``StreamConsumer`` serves ``/ws/``, the native protocol of docs/protocol.md.

The consumers only receive, dispatch and answer: what a subscription does with frames is
``realtime.subscription``, actions are ``realtime.actions``, the error answers
``realtime.errors``, the limits ``realtime.limits`` and the output queue ``realtime.outbox``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from typing import Any

import orjson
from channels.consumer import get_handler_name
from channels.db import DatabaseSyncToAsync, database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from . import actions, events, metrics, presence, registry, signals, signout
from .actions import ActionContext, ActionHandler
from .conf import rt_settings
from .errors import map_exception
from .frames import Renderer
from .hub import get_hub
from .limits import TokenBucket, connection_caps, replay_executor, replay_lanes
from .middleware import SERVER_SEND_KEY, SIGN_IN_KEY, SUBPROTOCOL, SignIn
from .outbox import Outbox
from .protocol import CloseCode, ErrorCode, ProtocolError, encode_ack, encode_error, encode_event
from .publish import apublish
from .registry import Event
from .subscription import Opened, Subscription

logger = logging.getLogger(__name__)


class RealtimeConsumer(AsyncWebsocketConsumer):
    """Base consumer: outbox, hub subscriptions, frame limits and error frames.

    Subclasses implement ``connect`` (accept or close) and ``receive_frame(frame)``
    for each decoded JSON object. They call ``send_text`` / ``send_frame`` to write and
    ``open_subscription`` to join a stream.

    Limits (``TOWNSQUARE_REALTIME``), all applied when a frame is *read*, before any work:
    a binary frame closes with 1003; a text frame over ``MAX_FRAME_BYTES`` closes with 1009;
    frames beyond ``FRAMES_PER_SECOND`` (burst ``FRAME_BURST``) are dropped with a
    ``rate_limited`` error, and ``RATE_LIMIT_CLOSE_AFTER`` drops in a row close with 4029;
    unsent output over ``OUTBOX_MAX_BYTES`` closes with 4008. A signed-in socket closes with
    4002 when its sign-in ends (logout, password change, deactivation, deletion:
    ``realtime.signout``), on whichever worker it is. More than
    ``MAX_SOCKETS_PER_USER`` / ``MAX_SOCKETS_PER_ADDRESS`` sockets in this process are refused
    at the handshake (HTTP 429 with a JSON body where the server supports ASGI's
    ``websocket.http.response`` extension, else 403).

    Frames are read by the server's task (which goes on reading, so a disconnect is seen at
    once) and handled in order by a worker task that exists only while frames wait; at most
    ``MAX_QUEUED_FRAMES`` wait, beyond which reading pauses (backpressure into TCP). On
    disconnect the frames not yet handled are dropped and the one being handled is cancelled.
    """

    # The hub holds this process's only layer channel; sockets need none.
    channel_layer_alias = None

    accepted = False
    outbox: Outbox
    subscriptions: dict[str, Subscription]
    #: The user and client-address keys this socket is counted under (``limits``), or None
    #: before the handshake admitted it.
    _counted: tuple[Any, str | None] | None = None
    #: The task handling queued frames; None while nothing waits.
    _worker: asyncio.Task[None] | None = None
    #: Set while the reader waits for room in the queue.
    _space: asyncio.Future[None] | None = None
    #: True once registered with ``realtime.signout`` (until the disconnect).
    _indexed = False
    #: Set when the sign-in ended (``end_sign_in``): frames read after it are dropped.
    signed_out = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Run the socket: Channels' ``AsyncConsumer.__call__`` for a consumer without a
        layer channel (the hub holds one per process).

        Channels waits on its message sources through ``await_many_dispatch``, which wraps
        each ``receive()`` in a task of its own: a task per received frame, and one pending
        task held by every idle socket. With the server's ``receive`` as the only source it
        is awaited directly. Ends when a handler raises ``StopConsumer`` (the disconnect).
        """
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Route an ASGI message to its handler, without Channels' per-message DB hop."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # --- lifecycle ------------------------------------------------------------------------
    async def websocket_connect(self, message: dict[str, Any]) -> None:
        """Called when the client opens the socket: set up state, then ``connect()``."""
        limits = rt_settings()
        self.limits = limits
        self.hub = get_hub()
        self.subscriptions = {}
        # Frames go straight to the server's send, past any wrapper a middleware put around
        # it (realtime.middleware.SocketAuthMiddleware).
        self.outbox = Outbox(
            self.scope.get(SERVER_SEND_KEY) or self.base_send,
            max_bytes=limits.OUTBOX_MAX_BYTES,
            on_overflow=self._on_overflow,
        )
        self.bucket = TokenBucket(limits.FRAMES_PER_SECOND, limits.FRAME_BURST)
        # Rows of replay this socket may read; a replay past it runs, then the next
        # `subscribe {since}` waits until the debt is repaid.
        self.replay_budget = TokenBucket(limits.REPLAY_ROWS_PER_SECOND, limits.REPLAY_ROWS_BURST)
        self._drops = 0
        self._queue: deque[str] = deque()
        self.connected_at = time.monotonic()
        self.socket_id = presence.new_socket_id()
        if not await self._admit():
            return
        await self.connect()

    async def _admit(self) -> bool:
        """Count the socket against the per-user and per-address caps, or refuse it."""
        user = self.user
        user_key = user.pk if user.is_authenticated else None
        address = self.address
        full = connection_caps.admit(
            user_key,
            address,
            per_user=self.limits.MAX_SOCKETS_PER_USER,
            per_address=self.limits.MAX_SOCKETS_PER_ADDRESS,
        )
        if full is None:
            self._counted = (user_key, address)
            return True
        metrics.closed(CloseCode.FORBIDDEN)
        logger.info("event=socket.refused reason=too_many_sockets per=%s user=%s", full, user_key)
        if "websocket.http.response" in (self.scope.get("extensions") or {}):
            body = orjson.dumps(
                {
                    "code": "too_many_connections",
                    "detail": f"too many open sockets for this {full}; close some and retry",
                }
            )
            await self.base_send(
                {
                    "type": "websocket.http.response.start",
                    "status": 429,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"retry-after", b"10"),
                    ],
                }
            )
            await self.base_send({"type": "websocket.http.response.body", "body": body})
        else:
            await super().close()
        return False

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        """Accept the socket, choosing our subprotocol when the client offered it."""
        if subprotocol is None and SUBPROTOCOL in (self.scope.get("subprotocols") or ()):
            subprotocol = SUBPROTOCOL
        await super().accept(subprotocol, headers)
        self.accepted = True
        if self.sign_in is not None:
            # Indexed by user on this worker, so that a sign-out heard by any worker closes
            # it (realtime.signout); a sign-out heard since its credentials were read ends it
            # here.
            self._indexed = True
            await signout.register(self)
        metrics.socket_opened()
        signals.socket_opened.send(sender=type(self), consumer=self)
        logger.info(
            "event=socket.open path=%s user=%s worker=%s",
            self.scope.get("path"),
            self.user_label,
            os.getpid(),
        )

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        """Close after the frames already queued (or refuse, before ``accept``)."""
        # Channels' convention: None or True mean a normal close.
        number = code if isinstance(code, int) and not isinstance(code, bool) else 1000
        metrics.closed(number)
        if not self.accepted:
            await super().close(code, reason)
            return
        self.outbox.close(number, reason or "")

    async def abort(self, code: CloseCode, reason: str) -> None:
        """Close at once, dropping queued output (over a limit: 1009, 4008, 4029)."""
        metrics.closed(code)
        await self.outbox.abort(code, reason)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """Called when the socket closed: drop queued frames, cancel the one being handled,
        leave every stream, stop the writer."""
        self._queue.clear()
        worker = self._worker
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        if self._counted is not None:
            connection_caps.release(*self._counted)
            self._counted = None
        if self._indexed:
            self._indexed = False
            await signout.unregister(self)
        for stream in list(self.subscriptions):
            await self.close_subscription(stream)
        if self.accepted:
            await self.outbox.stop()
            metrics.socket_closed()
            signals.socket_closed.send(
                sender=type(self), consumer=self, code=message.get("code", 1000)
            )
        logger.info(
            "event=socket.close path=%s user=%s code=%s seconds=%.1f worker=%s",
            self.scope.get("path"),
            self.user_label,
            message.get("code"),
            time.monotonic() - self.connected_at,
            os.getpid(),
        )
        await self.disconnect(message.get("code", 1000))
        raise StopConsumer()

    # --- receiving ------------------------------------------------------------------------
    async def websocket_receive(self, message: dict[str, Any]) -> None:
        """Called for each client message as it is read: the limits, then the queue.

        Nothing here waits on the database or the channel layer, so every frame is counted
        against the rate limit when it arrives, however busy the socket's earlier frames are.
        """
        if self._counted is None or self.signed_out:
            # Refused at the handshake, or the sign-in ended: the server is closing it, and
            # nothing more is done on the ended sign-in's behalf.
            return
        text = message.get("text")
        if text is None:
            metrics.frame_in("binary")
            await self.abort(CloseCode.UNSUPPORTED_DATA, "binary frames are not accepted")
            return
        limit = self.limits.MAX_FRAME_BYTES
        if len(text) > limit // 4 and len(text.encode()) > limit:
            metrics.frame_in("dropped")
            await self.abort(CloseCode.MESSAGE_TOO_BIG, "frame too big")
            return
        if not self.bucket.take():
            metrics.frame_in("dropped")
            self._drops += 1
            if self._drops >= self.limits.RATE_LIMIT_CLOSE_AFTER:
                await self.abort(CloseCode.RATE_LIMITED, "rate limit exceeded")
            else:
                await self.send_error(ErrorCode.RATE_LIMITED, "too many frames; slow down")
            return
        self._drops = 0
        queue = self._queue
        while len(queue) >= self.limits.MAX_QUEUED_FRAMES:
            # Stop reading until the worker takes one: the client's frames back up into TCP.
            self._space = asyncio.get_running_loop().create_future()
            await self._space
        queue.append(text)
        if self._worker is None:
            # Eager: a frame handled without waiting (ping, typing, a pipelined send) never
            # schedules the task.
            worker = asyncio.eager_task_factory(asyncio.get_running_loop(), self._work())
            if not worker.done():
                self._worker = worker

    async def _work(self) -> None:
        # Handle queued frames in order until none is left.
        queue = self._queue
        try:
            while queue:
                text = queue.popleft()
                space = self._space
                if space is not None and not space.done():
                    space.set_result(None)
                try:
                    await self.handle_text(text)
                except Exception:
                    logger.exception("a frame failed on a bug; closing the socket")
                    await self.abort(CloseCode.INTERNAL_ERROR, "internal error")
                    queue.clear()
        finally:
            self._worker = None

    async def handle_text(self, text: str) -> None:
        """Decode one admitted text frame and pass it to ``receive_frame``; errors that map
        to an ``error`` frame (``errors.map_exception``) are answered, others raise."""
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError:
            metrics.frame_in("invalid")
            await self.send_error(ErrorCode.BAD_JSON, "the frame is not valid JSON")
            return
        if not isinstance(frame, dict):
            metrics.frame_in("invalid")
            await self.send_error(ErrorCode.BAD_FRAME, "a frame must be a JSON object")
            return
        metrics.frame_in(self.frame_type(frame))
        ref = frame.get("ref")
        if ref is not None and not isinstance(ref, (str, int)):
            await self.send_error(ErrorCode.INVALID, "ref must be a string or an integer")
            return
        try:
            await self.receive_frame(frame)
        except Exception as exc:
            if not await self.send_error_for(exc, ref):
                raise

    async def send_error_for(self, exc: Exception, ref: Any = None) -> bool:
        """Answer a frame that raised ``exc`` with the ``error`` frame it maps to
        (``errors.map_exception``); False, sending nothing, when it maps to none (a bug)."""
        mapped = map_exception(exc)
        if mapped is None:
            return False
        if mapped.code == ErrorCode.UNAVAILABLE:
            logger.warning("frame failed on a dependency: %r", exc)
        await self.send_error(mapped.code, mapped.detail, ref=ref)
        return True

    async def receive_frame(self, frame: dict[str, Any]) -> None:
        """Called with each decoded client frame (a dict). Raise ``ProtocolError`` to refuse."""

    def frame_type(self, frame: dict[str, Any]) -> str:
        """The ``type`` label a decoded client frame counts under in ``frames_in_total``.

        The seed-compatible endpoints built on this class have no frame types: ``seed``.
        Must return one of a bounded set of values.
        """
        return "seed"

    # --- sending --------------------------------------------------------------------------
    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        """Queue a text frame behind everything already queued (keeps frames in order)."""
        if text_data is None:
            raise ValueError("Townsquare sockets send text frames only")
        self.send_text(text_data)
        if close:
            await self.close()

    def send_text(self, text: str, type_: str = "seed") -> bool:
        """Queue an encoded frame; False when the socket is closing or overflowed.

        ``type_`` is the label it counts under in ``frames_out_total``: the native frame's
        ``type`` (``ack``, ``pong``, ``event``, ``error``), or ``seed`` for the shapes of the
        seed-compatible endpoints.
        """
        if self.outbox.put(text):
            metrics.frames_out(type_)
            return True
        return False

    async def send_error(
        self, code: ErrorCode, detail: str, ref: Any = None, **fields: Any
    ) -> None:
        """Queue an ``error`` frame, count it and log it (``rate_limited`` at DEBUG only: a
        flood repeats it)."""
        metrics.error_sent(code)
        logger.log(
            logging.DEBUG if code == ErrorCode.RATE_LIMITED else logging.INFO,
            "event=socket.error code=%s path=%s user=%s",
            code,
            self.scope.get("path"),
            self.user_label,
        )
        self.send_text(encode_error(code, detail, ref, **fields), "error")

    def end_sign_in(self, reason: str, detail: str) -> None:
        """The socket's sign-in ended (``realtime.signout``): drop the frames not yet handled,
        refuse later ones, then close with 4002 after ``signed_out_frame``. Idempotent; never
        awaits (called from the hub's delivery)."""
        if self.signed_out:
            return
        self.signed_out = True
        self._queue.clear()
        logger.info(
            "event=socket.signed_out reason=%s path=%s user=%s",
            reason,
            self.scope.get("path"),
            self.user_label,
        )
        self.signed_out_frame(reason, detail)
        metrics.closed(CloseCode.SIGNED_OUT)
        self.outbox.close(CloseCode.SIGNED_OUT, "signed out")

    def signed_out_frame(self, reason: str, detail: str) -> None:
        """Queue what the client reads before close 4002 (the seed endpoints: nothing)."""

    def _on_overflow(self) -> None:
        logger.warning(
            "slow reader closed path=%s user=%s", self.scope.get("path"), self.user_label
        )
        self._abort_task = asyncio.get_running_loop().create_task(
            self.abort(CloseCode.SLOW_READER, "slow reader: output buffer full")
        )

    # --- streams --------------------------------------------------------------------------
    @property
    def user(self) -> AbstractBaseUser | AnonymousUser:
        """The signed-in user (session or token), or ``AnonymousUser``."""
        return self.scope.get("user") or AnonymousUser()

    @property
    def sign_in(self) -> SignIn | None:
        """How the socket signed in (``middleware.SignIn``), or None when anonymous."""
        sign_in = self.scope.get(SIGN_IN_KEY)
        return sign_in if isinstance(sign_in, SignIn) else None

    @property
    def user_label(self) -> str:
        user = self.scope.get("user")
        return str(user.pk) if user is not None and user.is_authenticated else "anonymous"

    async def open_subscription(
        self, stream: Any, *, since: int | None = None, renderer: Renderer | None = None
    ) -> Opened:
        """Authorize and join ``stream``.

        The returned subscription buffers live frames until ``go_live()``; the caller first
        sends the kind's snapshot events, then the replay after ``since``.

        Every wait on Redis is bounded by ``REDIS_TIMEOUT_SECONDS``: a channel layer that does
        not answer is ``unavailable`` (the client retries); a presence store that does not
        answer leaves the subscription working with ``opened.degraded`` set (docs/protocol.md,
        "Degraded subscriptions").

        Raises:
            ProtocolError: ``invalid``, ``unknown_stream``, ``too_many_streams``,
                ``forbidden``, ``not_found``, ``unauthenticated``, ``unavailable`` (the
                channel layer failed or timed out).
            DatabaseError: the database failed (mapped to ``unavailable``).
        """
        kind, key = registry.resolve(stream)
        if stream in self.subscriptions:
            # Re-subscribing (after a truncated replay, say): the user never left, so the
            # presence entry stays and nobody sees a leave and a join.
            await self.close_subscription(stream, depart=False)
        if len(self.subscriptions) >= self.limits.MAX_STREAMS_PER_SOCKET:
            raise ProtocolError(
                ErrorCode.TOO_MANY_STREAMS,
                f"at most {self.limits.MAX_STREAMS_PER_SOCKET} streams per socket",
            )
        if since is not None and not kind.durable:
            raise ProtocolError(ErrorCode.INVALID, f"{stream} is not durable: no 'since'")
        start = await database_sync_to_async(self._authorize)(kind, key, since)
        user = self.user
        signed_in = bool(user.is_authenticated)
        subscription = Subscription(
            stream,
            self.outbox,
            since=start,
            renderer=renderer,
            hub=self.hub if kind.durable else None,
            user_id=user.pk if signed_in else None,
            on_revoke=self._on_revoke,
            presence=kind.presence and signed_in,
        )
        self.subscriptions[stream] = subscription
        # Join before reading the replay, so nothing published in between is missed; the
        # overlap is removed by offset in Subscription.deliver.
        try:
            await self.hub.subscribe(stream, subscription)
        except Exception as exc:
            del self.subscriptions[stream]
            logger.warning("subscribe to %s failed in the channel layer: %r", stream, exc)
            raise ProtocolError(
                ErrorCode.UNAVAILABLE, "the channel layer is unavailable; retry"
            ) from exc
        try:
            opened = await self._read_initial_fairly(kind, key, since)
            if subscription.presence:
                try:
                    if not await presence.arrive(stream, self.presence_user, self.socket_id):
                        raise ProtocolError(ErrorCode.UNAVAILABLE, "presence store")
                    users = await presence.online(stream)
                    opened.snapshot.append(Event("presence.state", {"users": users}))
                except ProtocolError:
                    # Messages flow without presence; the state follows when the store is back.
                    opened.degraded = True

                    def restored(users: list[dict[str, Any]]) -> None:
                        if self.subscriptions.get(stream) is subscription:
                            text = encode_event(stream, "presence.state", {"users": users})
                            self.send_text(text, "event")

                    presence.restore_later(stream, self.socket_id, restored)
        except BaseException:
            await self.close_subscription(stream)
            raise
        opened.subscription = subscription
        return opened

    @property
    def presence_user(self) -> dict[str, Any]:
        """The signed-in user as presence events show them: ``{id, username}``."""
        user = self.user
        return {"id": user.pk, "username": user.get_username()}

    def _on_revoke(self, stream: str, detail: str) -> None:
        # Called by the hub (no await there): end the subscription in a task of our own.
        self.hub.spawn(self._revoked(stream, detail))

    async def _revoked(self, stream: str, detail: str) -> None:
        if await self.close_subscription(stream):
            logger.info("event=subscription.revoked stream=%s user=%s", stream, self.user_label)
            await self.send_error(ErrorCode.UNSUBSCRIBED, detail, stream=stream)

    def _authorize(self, kind: registry.StreamKind, key: str, since: int | None) -> int | None:
        # One database hop: the right to read, and where a subscription without `since`
        # starts. The head is read before joining the hub: what is published in between then
        # shows up as a gap, which the subscription fills from the database, instead of a
        # late frame being taken for a duplicate.
        kind.authorize(self.user, key)
        if since is None and kind.head is not None:
            return kind.head(key)
        return since

    async def _read_initial_fairly(
        self, kind: registry.StreamKind, key: str, since: int | None
    ) -> Opened:
        # A replay is the longest database read a client can ask for. It runs on a thread of
        # its own (``limits.replay_executor``), so sign-ins, subscribes and sends, which share
        # Channels' one database thread, never queue behind one; and one at a time per user
        # (or address), so a user's many sockets wait behind each other, not before others.
        if since is None or kind.replay is None:
            return await database_sync_to_async(self._read_initial)(kind, key, since)
        read = DatabaseSyncToAsync(
            self._read_initial, thread_sensitive=False, executor=replay_executor
        )
        user = self.user
        lane_key = ("user", user.pk) if user.is_authenticated else ("address", self.address)
        async with replay_lanes.lane(lane_key):
            opened = await read(kind, key, since)
        self.replay_budget.charge(len(opened.replay))
        return opened

    @property
    def address(self) -> str | None:
        """The client's address (the proxy's, unless ``TRUSTED_PROXIES`` names it)."""
        client = self.scope.get("client")
        return str(client[0]) if client else None

    def _read_initial(self, kind: registry.StreamKind, key: str, since: int | None) -> Opened:
        opened = Opened(durable=kind.durable)
        if kind.snapshot is not None:
            opened.snapshot = kind.snapshot(self.user, key)
        if since is not None and kind.replay is not None:
            limit = self.limits.REPLAY_MAX
            replay = kind.replay(key, since, limit + 1)
            opened.truncated = len(replay) > limit
            opened.replay = replay[:limit]
        return opened

    async def close_subscription(self, stream: str, *, depart: bool = True) -> bool:
        """Leave ``stream``; False if the socket was not subscribed. ``depart=False`` keeps
        the socket's presence entry (it is about to subscribe again)."""
        subscription = self.subscriptions.pop(stream, None)
        if subscription is None:
            return False
        subscription.close()
        await self.hub.unsubscribe(stream, subscription)
        if subscription.presence and depart:
            try:
                await presence.depart(stream, self.presence_user, self.socket_id)
            except Exception as exc:
                # The entry expires by itself; the reaper announces the leave then.
                logger.warning("presence leave on %s failed: %r", stream, exc)
        return True


class StreamConsumer(RealtimeConsumer):
    """``/ws/``: many streams over one socket, in the protocol of docs/protocol.md.

    Anyone may connect (public streams need no account); each stream kind decides who may
    subscribe. A socket that offered a token which was refused gets an ``error`` frame with
    code ``unauthenticated`` and ``reason`` ``token_expired`` or ``token_invalid``, then
    close 4001.
    """

    #: Pipelined actions of this socket still running (created with the first one).
    _inflight: set[asyncio.Task[None]] | None = None

    async def connect(self) -> None:
        """Accept; or accept, explain and close with 4001 when the offered token was refused."""
        await self.accept()
        auth_error = self.scope.get("auth_error")
        if auth_error:
            detail = self.scope.get("auth_error_detail", "the token was refused")
            await self.send_error(ErrorCode.UNAUTHENTICATED, detail, reason=auth_error)
            await self.close(CloseCode.UNAUTHENTICATED, auth_error)

    def signed_out_frame(self, reason: str, detail: str) -> None:
        """``error {code: "unauthenticated", reason, detail}`` before close 4002; ``reason``
        is ``logout``, ``password``, ``inactive`` or ``deleted``."""
        metrics.error_sent(ErrorCode.UNAUTHENTICATED)
        self.send_text(encode_error(ErrorCode.UNAUTHENTICATED, detail, reason=reason), "error")

    async def receive_frame(self, frame: dict[str, Any]) -> None:
        """Dispatch a client frame to ``handle_<type>`` or a registered action."""
        type_ = frame.get("type")
        if not isinstance(type_, str):
            raise ProtocolError(ErrorCode.BAD_FRAME, "a frame needs a string 'type'")
        if type_ in actions.RESERVED_TYPES:
            await getattr(self, f"handle_{type_}")(frame)
            return
        handler = actions.get_action(type_)
        if handler is None:
            raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown frame type {type_!r}")
        if actions.is_pipelined(type_):
            await self._pipeline(handler, frame, type_)
            return
        result = await handler(ActionContext(user=self.user, consumer=self), frame)
        self.send_text(encode_ack(frame.get("ref"), type_, **result), "ack")

    async def _pipeline(
        self, handler: ActionHandler, frame: dict[str, Any], type_: str
    ) -> None:
        # Start the action and return to read the next frame; past MAX_PIPELINED (setting)
        # actions in flight, wait for one to finish first (the client's frames then back up
        # into TCP).
        inflight = self._inflight
        if inflight is None:
            inflight = self._inflight = set()
        task = asyncio.get_running_loop().create_task(self._answer(handler, frame, type_))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
        if len(inflight) >= self.limits.MAX_PIPELINED:
            await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)

    async def _answer(
        self, handler: ActionHandler, frame: dict[str, Any], type_: str
    ) -> None:
        ref = frame.get("ref")
        try:
            result = await handler(ActionContext(user=self.user, consumer=self), frame)
        except Exception as exc:
            if not await self.send_error_for(exc, ref):
                logger.exception("action %s failed on a bug; closing the socket", type_)
                await self.abort(CloseCode.INTERNAL_ERROR, "internal error")
            return
        self.send_text(encode_ack(ref, type_, **result), "ack")

    def frame_type(self, frame: dict[str, Any]) -> str:
        """The frame's ``type`` if the server knows it, ``unknown`` for other strings,
        ``invalid`` when there is no string ``type`` (bounded by the registered actions)."""
        type_ = frame.get("type")
        if not isinstance(type_, str):
            return "invalid"
        if type_ in actions.RESERVED_TYPES or actions.get_action(type_) is not None:
            return type_
        return "unknown"

    async def handle_subscribe(self, frame: dict[str, Any]) -> None:
        """``subscribe {stream, since?}`` → ``ack {stream, durable, replayed, truncated,
        degraded?}``, then the snapshot events, then the replayed events (``offset > since``,
        in order), then live events. ``degraded: true`` (only when set): presence was
        unavailable, its ``presence.state`` comes later."""
        stream = frame.get("stream")
        since = frame.get("since")
        if since is not None and (type(since) is not int or since < 0):
            raise ProtocolError(ErrorCode.INVALID, "since must be a non-negative integer")
        if since is not None and self.replay_budget.in_debt():
            wait = self.replay_budget.seconds_to_repay()
            await self.send_error(
                ErrorCode.RATE_LIMITED,
                f"replay budget spent; retry in {wait:.1f} s",
                ref=frame.get("ref"),
                retry_after=round(wait, 1),
            )
            return
        opened = await self.open_subscription(stream, since=since)
        subscription = opened.subscription
        assert isinstance(stream, str) and subscription is not None
        initial = opened.snapshot + opened.replay
        if events.enabled:  # DEBUG and tests: snapshot and replay events are declared too
            try:
                for event in initial:
                    events.check(stream, event.event, event.data, event.offset)
            except events.InvalidEvent:
                await self.close_subscription(stream)
                raise
        self.send_text(
            encode_ack(
                frame.get("ref"),
                "subscribe",
                stream=stream,
                durable=opened.durable,
                replayed=len(opened.replay),
                truncated=opened.truncated,
                **({"degraded": True} if opened.degraded else {}),
            ),
            "ack",
        )
        for event in initial:
            if event.offset is not None:
                subscription.last_offset = max(subscription.last_offset, event.offset)
            text = encode_event(stream, event.event, event.data, event.offset)
            if not await self.outbox.put_wait(text):
                return
        metrics.frames_out("event", len(initial))
        subscription.go_live()

    async def handle_unsubscribe(self, frame: dict[str, Any]) -> None:
        """``unsubscribe {stream}`` → ``ack {stream, was_subscribed}`` (idempotent)."""
        stream = frame.get("stream")
        if not isinstance(stream, str):
            raise ProtocolError(ErrorCode.INVALID, "stream must be a string")
        was = await self.close_subscription(stream)
        self.send_text(
            encode_ack(frame.get("ref"), "unsubscribe", stream=stream, was_subscribed=was), "ack"
        )

    async def handle_ping(self, frame: dict[str, Any]) -> None:
        """``ping`` → ``pong {ref?, time}`` with the server's Unix time in seconds."""
        pong: dict[str, Any] = {"type": "pong", "time": time.time()}
        if frame.get("ref") is not None:
            pong["ref"] = frame["ref"]
        self.send_text(orjson.dumps(pong).decode(), "pong")

    async def handle_typing(self, frame: dict[str, Any]) -> None:
        """``typing {stream}`` → ``presence.typing {user}`` to the stream's subscribers, then
        ``ack {stream, sent}``; ``sent`` is false when the socket already sent one within
        ``TYPING_MIN_INTERVAL`` seconds (extra ones are dropped: typing is a hint).

        Errors: ``invalid`` (not subscribed to that stream, or it has no presence),
        ``unauthenticated``.
        """
        stream = frame.get("stream")
        subscription = self.subscriptions.get(stream) if isinstance(stream, str) else None
        if subscription is None:
            raise ProtocolError(ErrorCode.INVALID, "subscribe to the stream before typing in it")
        if not self.user.is_authenticated:
            raise ProtocolError(ErrorCode.UNAUTHENTICATED, "sign in to type")
        if not subscription.presence:
            raise ProtocolError(ErrorCode.INVALID, f"{stream} has no presence")
        now = time.monotonic()
        sent = now - subscription.last_typing >= self.limits.TYPING_MIN_INTERVAL
        if sent:
            subscription.last_typing = now
            await apublish(subscription.stream, "presence.typing", {"user": self.presence_user})
        self.send_text(encode_ack(frame.get("ref"), "typing", stream=stream, sent=sent), "ack")
