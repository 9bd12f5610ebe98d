"""``/sse/``: the native protocol over Server-Sent Events, for networks that block WebSockets.

``GET /sse/`` answers ``text/event-stream`` and carries exactly the server frames of
``/ws/`` (docs/protocol.md, "Server-Sent Events"); client frames go by ``POST`` to the
connection's own URL, ``/sse/<connection>/``, and are answered on the stream. Nothing here
re-implements the protocol: ``SSEConnection`` runs the ``/ws/`` consumer itself
(``StreamConsumer``, behind the same ``SocketAuthMiddleware``) and translates between the
HTTP request and the consumer's WebSocket messages:

- in: ``websocket.connect`` when the request arrives; each POSTed body as a
  ``websocket.receive``; ``websocket.disconnect`` when the client goes away;
- out: ``websocket.accept`` → ``200`` with the stream's headers and an ``event: connected``
  record; each ``websocket.send`` → one ``data:`` record; ``websocket.close`` → an
  ``event: close`` record, then the end of the response; a refusal before accept → its HTTP
  answer (429 from the per-user caps, else 403).

So limits (frame size, rate, streams, queued frames), authorization, the slow-reader policy
(the consumer's outbox, 4008) and the fan-out (the process's hub) are the ``/ws/`` code.

Resuming. A browser's ``EventSource`` reconnects by itself and sends back only the last
``id:`` it saw (``Last-Event-ID``), so each ``id:`` is a *cursor*: the connection's position
in every durable stream it holds, ``<stream>@<offset>`` items joined by ``,``
(``chat:room:2@17,shop:item:1@4``). The items are the offsets last written on this response
(a stream's start, ``since`` or its head, from its subscribe ack on). Every frame that moves
the cursor carries it: durable events, and the acks that add or drop a durable stream (and
the ``unsubscribed`` error). A cursor is client input like ``since``: each stream in it is
subscribed again through the same authorization.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import secrets
import signal
import threading
import weakref
from collections import deque
from typing import Any
from urllib.parse import parse_qsl, urlparse

import orjson
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.core import signing
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware

from .conf import rt_settings
from .consumers import StreamConsumer
from .layer import background, layer_call
from .middleware import (
    BEARER_PREFIX,
    SocketAuthMiddleware,
    session_key_from_scope,
    session_user,
)
from .registry import STREAM_NAME_MAX, STREAM_NAME_RE
from .subscription import Opened
from .tokens import TokenError, verify_token

logger = logging.getLogger(__name__)

#: The path of the stream; a connection's POST URL is ``PATH + <connection> + "/"``.
PATH = "/sse/"
POST_PATH = re.compile(r"^/sse/([A-Za-z0-9_\-:.]+)/\Z")
#: ``retry:`` sent first: milliseconds an ``EventSource`` waits before it reconnects.
RETRY_MS = 2000
#: Seconds the final ``event: close`` record may wait on a client that does not read
#: (a slow reader closed with 4008); after it the response is dropped unfinished.
CLOSE_WRITE_SECONDS = 2.0
#: Layer message type of a POSTed frame relayed to the process holding the connection.
POST_MESSAGE_TYPE = "sse.post"
#: Layer message type of the reply: the status the relayed frame got (``SSEConnection.post``).
POSTED_MESSAGE_TYPE = "sse.posted"
#: Seconds a relayed POST waits for its reply before it is answered 503.
RELAY_REPLY_SECONDS = 5.0
#: Salt of the signed connection ids.
ID_SALT = "realtime.sse.connection"
#: The WebSocket close code a vanished HTTP client is reported with (1001 going away).
GONE = 1001
#: The close code of streams ended because the server stops (as uvicorn closes sockets).
SERVICE_RESTART = 1012

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    # Never cached; nginx reads X-Accel-Buffering and passes each record on at once.
    (b"cache-control", b"no-cache, no-store"),
    (b"x-accel-buffering", b"no"),
]


class CursorError(ValueError):
    """A ``?stream=`` value or a ``Last-Event-ID`` that is not a cursor."""


def parse_item(item: str) -> tuple[str, int | None]:
    """``"chat:room:2@17"`` → ``("chat:room:2", 17)``; ``"shop:item:1"`` → ``(…, None)``."""
    stream, at, offset = item.partition("@")
    if len(stream) > STREAM_NAME_MAX or not STREAM_NAME_RE.match(stream):
        raise CursorError(f"not a stream name: {stream[:100]!r}")
    if not at:
        return stream, None
    if not offset.isdigit() or len(offset) > 19:
        raise CursorError(f"not an offset: {offset[:30]!r}")
    return stream, int(offset)


def parse_cursor(text: str) -> dict[str, int]:
    """A ``Last-Event-ID`` cursor → ``{stream: offset}`` ("" → {}).

    Raises:
        CursorError: an item without ``@<offset>``, a bad name or offset, a repeated stream.
    """
    cursor: dict[str, int] = {}
    for item in filter(None, text.strip().split(",")):
        stream, offset = parse_item(item)
        if offset is None or stream in cursor:
            raise CursorError(f"not a cursor item: {item[:100]!r}")
        cursor[stream] = offset
    return cursor


def format_cursor(cursor: dict[str, int]) -> str:
    """``{stream: offset}`` → ``"stream@offset,…"`` (the inverse of ``parse_cursor``)."""
    return ",".join(f"{stream}@{offset}" for stream, offset in cursor.items())


def record(data: str, *, id_: str | None = None, event: str | None = None) -> bytes:
    """One SSE record. ``data`` is one line (compact JSON never holds a raw newline)."""
    head = ""
    if event is not None:
        head += f"event: {event}\n"
    if id_ is not None:
        head += f"id: {id_}\n"
    return f"{head}data: {data}\n\n".encode()


#: Connections of this process, by key (the random part of their id).
_connections: dict[str, SSEConnection] = {}


class SSEStreamConsumer(StreamConsumer):
    """``StreamConsumer`` that notes where each subscription starts (``since``, or the head
    it read), for the cursor: the SSE stream adds the stream to its cursor at that offset
    when the subscribe ack goes out."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.starts: dict[str, int] = {}

    async def open_subscription(self, stream: Any, **kwargs: Any) -> Opened:
        """``RealtimeConsumer.open_subscription``, noting the subscription's start."""
        opened = await super().open_subscription(stream, **kwargs)
        # Before the ack and the replay: last_offset is still the start.
        if opened.durable and opened.subscription is not None:
            self.starts[stream] = opened.subscription.last_offset
        return opened


class SSEConnection:
    """One ``GET /sse/``: the consumer's ``receive``/``send`` over an HTTP response.

    Args:
        scope, receive, send: the HTTP request's ASGI triple.
        initial: the subscriptions to make once accepted, ``[(stream, since or None)]``.
    """

    def __init__(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        initial: list[tuple[str, int | None]],
    ) -> None:
        self.http_receive = receive
        self.http_send = send
        self.key = secrets.token_urlsafe(18)
        self.id = ""
        self.user_id: int | None = None
        self.cursor: dict[str, int] = {}
        self.started = False
        self.finished = False
        self.disconnected = False
        self.consumer = SSEStreamConsumer()
        self._inbox: deque[dict[str, Any]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._frames = 0
        self._initial = initial
        self._heartbeat: asyncio.Task[None] | None = None
        self.scope = self._socket_scope(scope)

    @staticmethod
    def _socket_scope(scope: dict[str, Any]) -> dict[str, Any]:
        # The scope the /ws/ stack expects; a JWT in Authorization is offered as the
        # ``bearer.<token>`` subprotocol, as a browser's socket offers it.
        subprotocols = []
        for name, value in scope.get("headers") or ():
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and token.strip():
                    subprotocols.append(BEARER_PREFIX + token.strip())
        return {
            "type": "websocket",
            "transport": "sse",
            "asgi": scope.get("asgi", {}),
            "http_version": scope.get("http_version", "1.1"),
            "scheme": "wss" if scope.get("scheme") == "https" else "ws",
            "path": scope["path"],
            "raw_path": scope.get("raw_path"),
            "root_path": scope.get("root_path", ""),
            "query_string": scope.get("query_string", b""),
            "headers": scope.get("headers", []),
            "client": scope.get("client"),
            "server": scope.get("server"),
            "subprotocols": subprotocols,
            "extensions": {"websocket.http.response": {}},
            "state": scope.get("state", {}),
        }

    # --- running --------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the request until the consumer ends; then finish or drop the response."""
        _connections[self.key] = self
        watcher = asyncio.get_running_loop().create_task(self._watch_disconnect())
        self._push({"type": "websocket.connect"})
        try:
            await SocketAuthMiddleware(self.consumer)(self.scope, self.receive, self.send)
        finally:
            _connections.pop(self.key, None)
            watcher.cancel()
            if self._heartbeat is not None:
                self._heartbeat.cancel()
            if self.started and not self.finished and not self.disconnected:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(CLOSE_WRITE_SECONDS):
                        await self.http_send({"type": "http.response.body", "body": b""})
                self.finished = True

    async def _watch_disconnect(self) -> None:
        while True:
            message = await self.http_receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                self._push({"type": "websocket.disconnect", "code": GONE})
                return

    async def _beat(self, seconds: float) -> None:
        # Through the outbox, so a beat never cuts into a frame and a stuck client is still
        # found by the outbox's bound; "" is never a frame (they are JSON objects).
        while True:
            await asyncio.sleep(seconds)
            self.consumer.outbox.put("")

    # --- the consumer's receive -------------------------------------------------------------
    async def receive(self) -> dict[str, Any]:
        """The consumer's ASGI ``receive``: the next message of the inbox."""
        while not self._inbox:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        message = self._inbox.popleft()
        if message["type"] == "websocket.receive":
            self._frames -= 1
        return message

    def _push(self, message: dict[str, Any]) -> None:
        self._inbox.append(message)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def post(self, body: bytes) -> int:
        """Hand one POSTed frame to the consumer. Returns the HTTP status the poster gets:
        202 (queued: its answer comes on the stream), 429 (``MAX_QUEUED_FRAMES`` frames
        already wait in front of the consumer's own queue; retry later), 404 (the stream has
        ended: nothing would answer the frame, so it is refused rather than dropped)."""
        if self.finished or self.disconnected:
            return 404
        if self._frames >= rt_settings().MAX_QUEUED_FRAMES:
            return 429
        self._frames += 1
        self._push(receive_message(body))
        return 202

    # --- the consumer's send ----------------------------------------------------------------
    async def send(self, message: dict[str, Any]) -> None:
        """The consumer's ASGI ``send`` (and its outbox's), translated to the response."""
        kind = message["type"]
        if kind == "websocket.send":
            if self.finished:
                return
            await self.http_send(
                {"type": "http.response.body", "body": self._frame(message), "more_body": True}
            )
        elif kind == "websocket.accept":
            await self._accept()
        elif kind == "websocket.close":
            await self._close(message)
        elif kind == "websocket.http.response.start":
            self.started = True
            await self.http_send({**message, "type": "http.response.start"})
        elif kind == "websocket.http.response.body":
            self.finished = True
            await self.http_send({**message, "type": "http.response.body"})
            self._push({"type": "websocket.disconnect", "code": 1000})

    async def _accept(self) -> None:
        user = self.consumer.scope.get("user")
        self.user_id = user.pk if user is not None and user.is_authenticated else None
        self.id = signing.dumps([relay_channel(), self.key, self.user_id], salt=ID_SALT)
        self.started = True
        await self.http_send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        hello = orjson.dumps({"connection": self.id, "post": f"{PATH}{self.id}/"}).decode()
        body = f"retry: {RETRY_MS}\n".encode() + record(hello, event="connected")
        await self.http_send({"type": "http.response.body", "body": body, "more_body": True})
        seconds = heartbeat_seconds()
        if seconds > 0:
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat(seconds))
        # The URL's (and the cursor's) subscriptions, as if the client had sent them; the
        # stream name is the ref, so an error frame says which one failed.
        for stream, since in self._initial:
            frame: dict[str, Any] = {"type": "subscribe", "stream": stream, "ref": stream}
            if since is not None:
                frame["since"] = since
            self._frames += 1
            self._push({"type": "websocket.receive", "text": orjson.dumps(frame).decode()})

    async def _close(self, message: dict[str, Any]) -> None:
        if not self.started:
            # Refused before accept (the Origin, a token the consumer closed on at once).
            self.started = self.finished = True
            await self.http_send(
                {
                    "type": "http.response.start",
                    "status": 403,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            body = orjson.dumps({"code": "forbidden", "detail": "the connection was refused"})
            await self.http_send({"type": "http.response.body", "body": body})
            self._push({"type": "websocket.disconnect", "code": message.get("code", 1000)})
            return
        if self.finished:
            return
        self.finished = True
        code = message.get("code", 1000)
        data = orjson.dumps({"code": code, "reason": message.get("reason") or ""}).decode()
        try:
            # A slow reader's close waits behind output it does not read: give up after a
            # while and drop the response (the server then closes the connection).
            async with asyncio.timeout(CLOSE_WRITE_SECONDS):
                await self.http_send(
                    {"type": "http.response.body", "body": record(data, event="close")}
                )
        except Exception as exc:
            logger.info("event=sse.close_unsent code=%s error=%r", code, exc)
        # As a WebSocket server reports the end of the close handshake.
        self._push({"type": "websocket.disconnect", "code": code})

    def _frame(self, message: dict[str, Any]) -> bytes:
        text = message.get("text")
        if not text:
            return b": ping\n\n"
        if self._moves_cursor(text):
            return record(text, id_=format_cursor(self.cursor))
        return record(text)

    def _moves_cursor(self, text: str) -> bool:
        # Frames are built by realtime.protocol with "type" first: most are told apart
        # without decoding them.
        if text.startswith('{"type":"event"'):
            if '"offset":' not in text:
                return False
            frame = orjson.loads(text)
            self.cursor[frame["stream"]] = frame["offset"]
            return True
        if text.startswith('{"type":"ack"'):
            if '"for":"subscribe"' in text:
                frame = orjson.loads(text)
                start = self.consumer.starts.pop(frame.get("stream"), None)
                if not frame.get("durable") or start is None:
                    return False
                if start >= 0:
                    self.cursor[frame["stream"]] = start
                return True
            if '"for":"unsubscribe"' in text:
                frame = orjson.loads(text)
                return self.cursor.pop(frame.get("stream"), None) is not None
            return False
        if text.startswith('{"type":"error"') and '"unsubscribed"' in text:
            frame = orjson.loads(text)
            return self.cursor.pop(frame.get("stream"), None) is not None
        return False


# --- the server stopping ---------------------------------------------------------------------

#: Tasks closing streams at shutdown (kept referenced until done).
_closing: set[asyncio.Task[None]] = set()


def close_all(code: int = SERVICE_RESTART, reason: str = "the server is restarting") -> int:
    """Close every stream of this process as its consumer closes a socket: an ``event:
    close`` record with ``code``, then the end of the response. Returns how many."""
    loop = asyncio.get_running_loop()
    connections = [c for c in _connections.values() if c.consumer.accepted and not c.finished]
    for connection in connections:
        task = loop.create_task(connection.consumer.close(code, reason))
        _closing.add(task)
        task.add_done_callback(_closing.discard)
    return len(connections)


def hook_shutdown() -> None:
    """Close this process's streams with 1012 when it is told to stop (SIGTERM, SIGINT).

    uvicorn closes its WebSockets (1012) when it shuts down, but it waits for an HTTP
    response still being written without telling the application ("Waiting for connections
    to close"): an open ``/sse/`` stream would keep a stopping worker alive for as long as
    its client stays. So the handler the server installed is wrapped: ours schedules
    ``close_all`` on this loop, then calls the server's. Only where signal handlers can be
    set (the main thread); idempotent.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if previous in (signal.SIG_IGN, None) or getattr(previous, "closes_sse", False):
            continue
        signal.signal(signum, _shutdown_handler(loop, previous))


def _shutdown_handler(loop: asyncio.AbstractEventLoop, previous: Any) -> Any:
    def handler(signum: int, frame: Any) -> None:
        if not loop.is_closed():
            loop.call_soon_threadsafe(close_all)
        if callable(previous):
            previous(signum, frame)
        else:  # SIG_DFL: what the signal did before
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    handler.closes_sse = True  # type: ignore[attr-defined]
    return handler


def heartbeat_seconds() -> float:
    """``SSE_HEARTBEAT_SECONDS`` (``TOWNSQUARE_REALTIME``, env ``RT_SSE_HEARTBEAT_SECONDS``)."""
    return float(getattr(rt_settings(), "SSE_HEARTBEAT_SECONDS", 15.0))


def receive_message(body: bytes) -> dict[str, Any]:
    """A POSTed body as the ``websocket.receive`` a socket would have read: text when it is
    UTF-8, else bytes (the consumer closes with 1003). A body over ``MAX_FRAME_BYTES`` is
    cut to one byte over (the consumer closes with 1009 whatever it holds)."""
    limit = rt_settings().MAX_FRAME_BYTES
    if len(body) > limit:
        return {"type": "websocket.receive", "text": body[: limit + 1].decode("latin-1")}
    try:
        return {"type": "websocket.receive", "text": body.decode()}
    except UnicodeDecodeError:
        return {"type": "websocket.receive", "bytes": body}


# --- the ASGI entry -------------------------------------------------------------------------


class SSEMiddleware:
    """Serve ``GET /sse/`` and ``POST /sse/<connection>/`` (``post_frame``); pass every
    other HTTP request to ``inner`` (Django).

    Query: ``stream=<name>`` or ``stream=<name>@<since>``, repeatable. A ``Last-Event-ID``
    header (a cursor) overrides the URL's ``since`` for the streams it names and adds the
    others. Answers 400 for a malformed one, 403 when an ``Origin`` header names a host
    outside ``ALLOWED_HOSTS`` (browsers send it on cross-site requests; other clients send
    none), else the stream.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "http" or not scope["path"].startswith(PATH):
            return await self.inner(scope, receive, send)
        if scope["path"] != PATH:
            posted = POST_PATH.match(scope["path"])
            if posted is None or scope["method"] != "POST":
                return await self.inner(scope, receive, send)
            return await post_frame(scope, receive, send, posted.group(1))
        if scope["method"] != "GET":
            return await self.inner(scope, receive, send)
        headers = dict(scope.get("headers") or ())
        origin = headers.get(b"origin")
        if origin is not None and not _origin_allowed(origin.decode("latin-1")):
            return await _answer(send, 403, "forbidden", "Origin not allowed")
        try:
            initial = _initial_streams(
                scope.get("query_string", b"").decode("latin-1"),
                headers.get(b"last-event-id", b"").decode("latin-1"),
            )
        except CursorError as exc:
            return await _answer(send, 400, "invalid", str(exc))
        await ensure_relay()
        hook_shutdown()
        await SSEConnection(scope, receive, send, initial).run()


def _origin_allowed(origin: str) -> bool:
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = ["localhost", "127.0.0.1", "[::1]"]
    return bool(OriginValidator(None, allowed).valid_origin(urlparse(origin)))


def _initial_streams(query: str, last_event_id: str) -> list[tuple[str, int | None]]:
    wanted: dict[str, int | None] = {}
    for name, value in parse_qsl(query):
        if name == "stream":
            stream, since = parse_item(value)
            wanted[stream] = since
    wanted.update(parse_cursor(last_event_id))
    limit = rt_settings().MAX_STREAMS_PER_SOCKET
    if len(wanted) > limit:
        raise CursorError(f"at most {limit} streams per connection")
    return list(wanted.items())


async def _answer(send: Any, status: int, code: str = "", detail: str = "") -> None:
    """A JSON answer ``{code, detail}`` (none for a 202), as the HTTP API's errors."""
    headers = [(b"content-type", b"application/json")] if code else []
    if status == 429:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    body = orjson.dumps({"code": code, "detail": detail}) if code else b""
    await send({"type": "http.response.body", "body": body})


# --- POSTed frames, and their relay between processes ----------------------------------------


class _Relay:
    """This event loop's layer channel for POSTed frames between processes: a frame POSTed
    to a connection held by another process is sent to that process's relay channel, which
    hands it to the connection and replies with the status (``SSEConnection.post``) to the
    poster's relay channel, where the waiting POST picks it up.

    The channel is named with the hub's prefix (``hub``): channels_redis' core layer reads
    the process-local channels of one prefix with one blocking pop, one reader at a time, so
    a second prefix would wait behind the hub's reader for up to its pop timeout (5 s) per
    frame. With one prefix, whichever reader holds the pop hands each message to its channel.
    """

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.channel = ""
        self.lock = asyncio.Lock()
        self.reader: asyncio.Task[None] | None = None
        #: POSTs relayed from here and waiting for their status, by number.
        self.waiting: dict[int, asyncio.Future[int]] = {}
        self._sent = 0
        self._replies: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        async with self.lock:
            if not self.channel:
                layer = self.layer
                self.channel = await layer_call(lambda: layer.new_channel(prefix="hub"))
                self.reader = background(self._read())

    async def relay(self, channel: str, key: str, user: int | None, body: bytes) -> int:
        """Send one frame to the connection ``key`` of the process reading ``channel``; the
        status it was answered with there (202, 404, 429).

        Raises:
            TimeoutError: no reply within ``RELAY_REPLY_SECONDS``; Exception: the layer's.
        """
        self._sent += 1
        number = self._sent
        reply: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiting[number] = reply
        message = {
            "type": POST_MESSAGE_TYPE,
            "key": key,
            "user": user,
            "body": body,
            "reply": self.channel,
            "n": number,
        }
        layer = self.layer
        try:
            await layer_call(lambda: layer.send(channel, message))
            async with asyncio.timeout(RELAY_REPLY_SECONDS):
                return await reply
        finally:
            self.waiting.pop(number, None)

    async def _read(self) -> None:
        layer, channel = self.layer, self.channel
        while True:
            try:
                message = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("sse: relay receive failed (%r); retrying in 1 s", exc)
                await asyncio.sleep(1)
                continue
            kind = message.get("type")
            if kind == POST_MESSAGE_TYPE:
                status = 404
                connection = _connections.get(message.get("key", ""))
                if connection is not None and connection.user_id == message.get("user"):
                    status = connection.post(message["body"])
                # Replied from a task of its own: the reader never waits on the layer's send.
                task = background(self._reply(message.get("reply"), message.get("n"), status))
                self._replies.add(task)
                task.add_done_callback(self._replies.discard)
            elif kind == POSTED_MESSAGE_TYPE:
                waiting = self.waiting.get(message.get("n", -1))
                if waiting is not None and not waiting.done():
                    waiting.set_result(int(message["status"]))

    async def _reply(self, channel: Any, number: Any, status: int) -> None:
        if not isinstance(channel, str) or not isinstance(number, int):
            return
        layer = self.layer
        reply = {"type": POSTED_MESSAGE_TYPE, "n": number, "status": status}
        try:
            await layer_call(lambda: layer.send(channel, reply))
        except Exception as exc:  # the poster times out and answers 503
            logger.warning("sse: replying to a relayed frame failed: %r", exc)


_relays: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Relay] = weakref.WeakKeyDictionary()


def _relay() -> _Relay | None:
    layer = get_channel_layer()
    if layer is None or isinstance(layer, InMemoryChannelLayer):
        return None  # one process: every connection is local
    loop = asyncio.get_running_loop()
    relay = _relays.get(loop)
    if relay is None:
        relay = _relays[loop] = _Relay(layer)
    return relay


async def ensure_relay() -> None:
    """Open this process's relay channel if the layer reaches other processes."""
    relay = _relay()
    if relay is not None and not relay.channel:
        await relay.start()


def relay_channel() -> str:
    """This process's relay channel ("" with a single-process layer)."""
    relay = _relay()
    return relay.channel if relay is not None else ""


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request: HttpRequest, reason: str) -> HttpResponse:
        return HttpResponse(reason, status=403)


def _no_view(request: HttpRequest) -> HttpResponse:
    """The view ``_csrf_refusal`` names to the CSRF check (any view not ``csrf_exempt``)."""
    return HttpResponse()


def _csrf_refusal(scope: dict[str, Any], body: bytes) -> str | None:
    """Why Django's CSRF check refuses this request (None: it passes)."""
    request = ASGIRequest(scope, io.BytesIO(body))
    check = _CsrfCheck(lambda request: HttpResponse())
    check.process_request(request)
    refused = check.process_view(request, _no_view, (), {})
    return None if refused is None else refused.content.decode()


async def _poster(scope: dict[str, Any], body: bytes) -> tuple[int | None, tuple[int, str, str]]:
    """``(user id or None, (0, "", ""))`` for the user behind a POST, or ``(None, (status,
    code, detail))`` when it is refused: a bearer token in ``Authorization`` (no CSRF: no
    cookie signs it), else the session cookie (or no one), with Django's CSRF check."""
    headers = dict(scope.get("headers") or ())
    scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    if scheme.lower() == "bearer":
        try:
            user, _claim = await database_sync_to_async(verify_token)(token.strip())
        except TokenError as exc:
            return None, (401, exc.code, exc.detail)
        return user.pk, (0, "", "")
    try:
        refusal = _csrf_refusal(scope, body)  # no database, no I/O: the body is read
    except DisallowedHost as exc:
        return None, (400, "invalid", str(exc))
    if refusal is not None:
        return None, (403, "forbidden", f"CSRF: {refusal}")
    user = await session_user(session_key_from_scope(scope))
    return (user.pk if user.is_authenticated else None), (0, "", "")


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The request body, cut to ``limit`` bytes (the rest is read and dropped); None if the
    client went away."""
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        if len(body) < limit:
            body += message.get("body", b"")[: limit - len(body)]
        if not message.get("more_body", False):
            return body


async def post_frame(scope: dict[str, Any], receive: Any, send: Any, connection: str) -> None:
    """``POST /sse/<connection>/``: one client frame (its JSON text, as on ``/ws/``) for the
    stream ``connection``; the answer (ack, error) comes on that stream.

    Answers 202 (handed to the connection: an ``ack`` or ``error`` for it, or the stream's
    ``close``, follows on the stream), 401 (a refused token), 403 (CSRF, or not the
    connection's user), 404 (no such connection, or it has ended), 429
    (``MAX_QUEUED_FRAMES`` frames already wait), 503 (relaying it to the process holding
    the connection failed, or that process did not reply within ``RELAY_REPLY_SECONDS``:
    it may have been handed over; resend it as after a reconnect). Nothing is accepted and
    then dropped: a frame for a connection on another process is answered with the status
    that process gave it.
    """
    body = await _read_body(receive, rt_settings().MAX_FRAME_BYTES + 1)
    if body is None:
        return
    try:
        channel, key, owner = signing.loads(connection, salt=ID_SALT)
    except (signing.BadSignature, ValueError, TypeError):
        return await _answer(send, 404, "not_found", "no such connection")
    poster, (status, code, detail) = await _poster(scope, body)
    if status:
        return await _answer(send, status, code, detail)
    if poster != owner:
        return await _answer(send, 403, "forbidden", "not this connection's user")
    if not channel or channel == relay_channel():
        local = _connections.get(key)
        status = 404 if local is None else local.post(body)
    else:
        await ensure_relay()
        relay = _relay()
        try:
            assert relay is not None, "a relayed connection id needs a channel layer"
            status = await relay.relay(channel, key, owner, body)
        except Exception as exc:
            logger.warning("sse: relaying a frame failed: %r", exc)
            return await _answer(send, 503, "unavailable", "the frame could not be relayed; retry")
    if status == 404:
        return await _answer(send, 404, "not_found", "no such connection (or it has ended)")
    if status == 429:
        return await _answer(send, 429, "rate_limited", "too many frames waiting; retry")
    await _answer(send, 202)
