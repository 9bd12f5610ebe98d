"""An asyncio client for Townsquare's `/ws/` protocol (docs/protocol.md), for Python programs.

The Python twin of the browser's ``RealtimeClient`` (``realtime/static/realtime/client.js``),
built on the ``websockets`` library; it imports nothing of Django, so any program can use it::

    async with Client("ws://127.0.0.1:8000/ws/", token=get_token) as client:
        await client.subscribe("chat:room:1", since=0)
        ack = await client.send("chat.send", room=1, text="hello")
        async for event in client.events("chat:room:1"):
            print(event.offset, event.event, event.data)

What it does for the caller, as the browser client does:

- **Reconnects** after every drop except a final one, waiting a random delay between 0 and
  ``min(max_delay, base_delay × 2^attempt)`` seconds (full jitter); the attempt counter resets
  once a connection has stayed open ``STABLE_AFTER`` seconds. Final: close 4003, 1003 and
  1008, an HTTP 403 at the handshake, and 4001/4002 unless ``token`` is a callable that
  gives a new token (see ``Client``).
- **Recovers** durable streams: it remembers the highest ``offset`` delivered on each stream
  and resubscribes with ``since`` = that offset after every reconnect; an event whose offset
  is not above it is dropped, so no offset is delivered twice and none is skipped.
- **Sends exactly once**: ``chat.send`` gets a ``client_id`` (a fresh UUID) when it has none,
  and is written again with the same ``client_id`` after a reconnect, or after
  ``unavailable``/``rate_limited``/no answer, until an ack comes; the server stores a
  ``client_id`` once and acks a repeat with ``"duplicate": true``.
- **Notices dead links**: a ``ping`` every ``ping_interval`` seconds; a socket on which
  nothing at all arrived for ``dead_after`` seconds is dropped and replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import random
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Origin, Subprotocol

__all__ = [
    "IDEMPOTENCY_FIELDS",
    "Client",
    "ClientClosed",
    "ClientError",
    "ConnectionState",
    "Event",
    "EventStream",
    "TokenSource",
]

logger = logging.getLogger(__name__)

#: What ``token`` may be: a JWT (from ``POST /api/token/``), a callable returning one (or an
#: awaitable of one), called before every connection attempt, or None (no token: anonymous,
#: or signed in by a ``Cookie`` in ``headers``).
TokenSource = str | Callable[[], str | Awaitable[str]] | None

#: ``connecting``: the first attempt is under way; ``open``: connected and every stream
#: (re)subscribed; ``reconnecting``: waiting for or making the next attempt; ``closed``:
#: final (``aclose()``, or a final close code).
ConnectionState = Literal["connecting", "open", "reconnecting", "closed"]

#: Actions whose field is an idempotency key: generated when absent, kept across resends.
IDEMPOTENCY_FIELDS: Final[Mapping[str, str]] = {"chat.send": "client_id"}

#: Close codes after which reconnecting cannot help (protocol.md, Close codes): 4003 forbidden
#: (seed endpoints), 1003 binary frame and 1008 policy violation (a client bug).
FATAL_CLOSE_CODES: Final = frozenset({4003, 1003, 1008})
#: Close codes of an ended sign-in: 4001 token refused, 4002 signed out.
AUTH_CLOSE_CODES: Final = frozenset({4001, 4002})
#: Errors worth trying again after a delay, on the same socket.
TRANSIENT_ERRORS: Final = frozenset({"unavailable", "rate_limited"})
#: The connection counts as healthy (backoff resets) after staying open this long, in seconds.
STABLE_AFTER: Final = 5.0
#: Resendable actions are paced by a token bucket (capacity, refill per second) well inside
#: the server's default frame limit (burst 40, 20/s), as client.js paces its outbox.
SEND_BURST: Final = 16
SEND_PER_SECOND: Final = 10.0


@dataclass(frozen=True, slots=True)
class Event:
    """One ``event`` frame: ``{"type": "event", "stream", "event", "data", "offset"?}``.

    ``offset`` is the event's position in a durable stream (1, 2, 3, …), None for snapshot
    and ephemeral events.
    """

    stream: str
    event: str
    data: Any
    offset: int | None = None


class ClientError(Exception):
    """An error frame from the server, or a local failure with a code of its own.

    ``code`` is a server error code (``invalid``, ``forbidden``, ``not_found``,
    ``unauthenticated``, ``unavailable``, ``rate_limited``, ``unsubscribed``, …; protocol.md,
    Error codes) or a local one: ``disconnected`` (the socket closed before the answer; the
    action may or may not have been carried out), ``timeout`` (no answer in time),
    ``too_big`` (the frame exceeds ``max_frame_bytes``; nothing was sent), ``closed`` (see
    ``ClientClosed``). ``frame`` is the error frame as received (``{}`` for local errors).
    """

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        ref: int | str | None = None,
        stream: str | None = None,
        reason: str | None = None,
        frame: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.ref = ref
        self.stream = stream
        self.reason = reason
        self.frame: dict[str, Any] = dict(frame or {})

    @classmethod
    def from_frame(cls, frame: Mapping[str, Any]) -> ClientError:
        """Build one from an ``error`` frame ``{code, detail, ref?, stream?, reason?}``."""
        return cls(
            str(frame.get("code", "")),
            str(frame.get("detail", "")),
            ref=frame.get("ref"),
            stream=frame.get("stream"),
            reason=frame.get("reason"),
            frame=frame,
        )


class ClientClosed(ClientError):
    """The client stopped for good (code ``closed``): no more reconnects.

    ``close_code`` is the WebSocket close code that ended it (4001 token refused, 4002 signed
    out, 4003, 1003, 1008), the HTTP status of a refused handshake (403), or None after
    ``aclose()``. ``error`` is the ``unauthenticated`` error frame that came before a 4001 or
    4002 close (its ``reason``: ``token_expired``, ``token_invalid``, ``logout``,
    ``password``, ``inactive``, ``deleted``), when one came.
    """

    def __init__(
        self, detail: str, *, close_code: int | None, error: ClientError | None = None
    ) -> None:
        super().__init__("closed", detail, reason=error.reason if error else None)
        self.close_code = close_code
        self.error = error


class _Disconnected(Exception):
    """The socket a frame was written on closed before its answer came."""


@dataclass(eq=False)
class _Stream:
    """One subscription: what to resubscribe with, and its first answer."""

    name: str
    last_offset: int | None
    first: asyncio.Future[dict[str, Any]]
    durable: bool = False
    retries: int = 0


@dataclass(eq=False)
class _Listener:
    """One ``events()`` iterator: the streams it wants (None: all) and its queue."""

    streams: frozenset[str] | None
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)

    def wants(self, stream: str) -> bool:
        return self.streams is None or stream in self.streams


class _Bucket:
    """A token bucket: ``take()`` waits until one of ``capacity`` tokens, refilled at
    ``rate`` per second, is free."""

    def __init__(self, capacity: int, rate: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self.tokens = float(capacity)
        self.at = asyncio.get_running_loop().time()

    async def take(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / self.rate)


def default_origin(url: str) -> str:
    """The ``Origin`` for a socket URL: ``ws://h:p/ws/`` → ``http://h:p`` (``wss`` → ``https``).

    The server refuses a handshake without an ``Origin`` whose host is in ``ALLOWED_HOSTS``.
    """
    parts = urlsplit(url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return f"{scheme}://{parts.netloc}"


class Client:
    """One WebSocket connection to Townsquare's ``/ws/``, carrying any number of streams,
    that reconnects by itself and sends actions exactly once.

    Use it as an async context manager (``async with Client(...) as client``), which connects
    on entry (waiting until the first connection is open, retrying with backoff meanwhile)
    and closes on exit; or call ``connect()`` and ``aclose()``.

    Args:
        url: the socket URL, e.g. ``ws://127.0.0.1:8000/ws/``.
        token: a JWT, offered as the subprotocol ``bearer.<token>`` (beside ``townsquare``);
            or a callable returning one (or an awaitable of one), called before every
            connection attempt, so a fresh token is used on each reconnect. After a close
            4001 (token refused) or 4002 (signed out) the client reconnects only when the
            callable gives a token other than the refused one, and only once in a row;
            otherwise it stops with ``ClientClosed``. A callable that raises ``ClientError``
            stops the client with it; any other exception counts as a failed attempt
            (backoff, then again).
        origin: the ``Origin`` header; default: from ``url`` (``default_origin``).
        headers: extra handshake headers, e.g. ``{"Cookie": "sessionid=…"}``.
        base_delay: reconnect backoff base, in seconds.
        max_delay: reconnect backoff cap, in seconds.
        ping_interval: seconds between pings while open.
        dead_after: an open socket on which nothing at all arrived for this many seconds is
            dead: it is dropped and replaced.
        open_timeout: seconds one handshake may take.
        ack_timeout: a resendable action (``chat.send``) not answered within this many
            seconds is written again (a ``rate_limited`` error carries no ``ref``).
        send_timeout: ``send()`` gives up with ``timeout`` after this many seconds in all
            (waiting for a connection included).
        max_attempts: a resendable action written this many times without an ack fails with
            the last error.
        max_frame_bytes: the server's ``MAX_FRAME_BYTES``; a larger frame is refused locally
            (``too_big``) instead of getting the socket closed with 1009.
        buffer: events kept, at most, while no ``events()`` iterator wants them (the oldest
            are dropped beyond it, with a warning).
        on_state: called with the new ``ConnectionState`` on every change.
        on_error: called with a ``ClientError`` for errors that answer no call: a
            subscription the server ended (``unsubscribed``), a resubscribe refused after a
            reconnect, a ``rate_limited`` without ``ref``. Default: logged as a warning.
        idempotency_fields: actions whose key field makes a resend safe (default
            ``IDEMPOTENCY_FIELDS``); other actions are never written twice.
    """

    def __init__(
        self,
        url: str,
        *,
        token: TokenSource = None,
        origin: str | None = None,
        headers: Mapping[str, str] | None = None,
        base_delay: float = 0.5,
        max_delay: float = 4.0,
        ping_interval: float = 5.0,
        dead_after: float = 15.0,
        open_timeout: float = 10.0,
        ack_timeout: float = 10.0,
        send_timeout: float = 60.0,
        max_attempts: int = 5,
        max_frame_bytes: int = 65536,
        buffer: int = 10_000,
        on_state: Callable[[ConnectionState], None] | None = None,
        on_error: Callable[[ClientError], None] | None = None,
        idempotency_fields: Mapping[str, str] = IDEMPOTENCY_FIELDS,
    ) -> None:
        self.url = url
        self.origin = origin or default_origin(url)
        self.headers = dict(headers or {})
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.ping_interval = ping_interval
        self.dead_after = dead_after
        self.open_timeout = open_timeout
        self.ack_timeout = ack_timeout
        self.send_timeout = send_timeout
        self.max_attempts = max_attempts
        self.max_frame_bytes = max_frame_bytes
        self.idempotency_fields = dict(idempotency_fields)
        self._token = token
        self._on_state = on_state
        self._on_error = on_error
        #: The current ``ConnectionState``.
        self.state: ConnectionState = "closed"
        #: The close code of the last socket that closed (1006 when none was received).
        self.close_code: int | None = None
        #: How many connections were opened so far (1 after the first, 2 after a reconnect…).
        self.connections = 0
        self._ws: ClientConnection | None = None
        self._opened = asyncio.Event()
        self._ended: ClientClosed | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._streams: dict[str, _Stream] = {}
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: list[_Listener] = []
        self._backlog: deque[Event] = deque()
        self._buffer = buffer
        self._refs = itertools.count(1)
        self._attempt = 0
        self._auth_strikes = 0
        self._auth_error: ClientError | None = None
        #: After a 4001/4002 close: the token refused and the close code.
        self._refused: tuple[str | None, int] | None = None
        self._closed_by_caller = False
        self._last_received = 0.0
        self._bucket: _Bucket | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def connect(self) -> None:
        """Start connecting (state ``connecting``) and wait until the first connection is open.

        Failed attempts are retried with backoff, for as long as it takes (wrap the call in
        ``asyncio.timeout`` to bound it).

        Raises:
            ClientClosed: the server refused for good (an HTTP 403 at the handshake, a final
                close code) before a connection was open.
        """
        if self._supervisor is None:
            self._bucket = _Bucket(SEND_BURST, SEND_PER_SECOND)
            self._set_state("connecting")
            self._supervisor = asyncio.create_task(self._run(), name=f"realtime client {self.url}")
        await self._wait_open(None)

    async def aclose(self) -> None:
        """Close the connection for good (close code 1000); no reconnect. Calls waiting for
        an answer raise ``ClientClosed``; ``events()`` iterators end."""
        self._closed_by_caller = True
        self._finish(ClientClosed("the client was closed", close_code=None))
        supervisor, self._supervisor = self._supervisor, None
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(1000, "client closed"), 2)
        for task in [*self._tasks, *([supervisor] if supervisor else [])]:
            task.cancel()
        for task in [*self._tasks, *([supervisor] if supervisor else [])]:
            with contextlib.suppress(BaseException):
                await task

    @property
    def is_open(self) -> bool:
        """True while a socket is open and its streams have been resubscribed."""
        return self._opened.is_set()

    # --- subscriptions --------------------------------------------------------------------

    async def subscribe(self, stream: str, since: int | None = None) -> dict[str, Any]:
        """Subscribe to ``stream``, now if open, else on the next connection; and again after
        every reconnect, with ``since`` = the highest offset delivered on it.

        Args:
            stream: a stream name, e.g. ``chat:room:42`` (protocol.md, Stream names).
            since: durable streams only: replay the events with ``offset > since`` first
                (``0``: from the first event). Events with an offset at or below it are
                never delivered. Subscribing again to a held stream replaces the
                subscription (and its ``since``).

        Returns:
            The ack: ``{"type": "ack", "ref", "for": "subscribe", "stream", "durable",
            "replayed", "truncated", "degraded"?}``. The snapshot and replayed events follow
            through ``events()``.

        Raises:
            ClientError: the server refused (``invalid``, ``unknown_stream``, ``forbidden``,
                ``not_found``, ``unauthenticated``, ``too_many_streams``); ``unavailable`` and
                ``rate_limited`` are retried with backoff first.
            ClientClosed: the client stopped for good first.
            ValueError: ``since`` is not an integer ≥ 0.
        """
        if since is not None and (type(since) is not int or since < 0):
            raise ValueError(f"since must be an integer >= 0, not {since!r}")
        self._raise_if_ended()
        sub = _Stream(stream, since, asyncio.get_running_loop().create_future())
        self._streams[stream] = sub
        ws = self._ws
        if ws is not None and self.is_open:
            self._spawn(self._subscribe_on(ws, sub))
        return await asyncio.shield(sub.first)

    async def unsubscribe(self, stream: str) -> dict[str, Any] | None:
        """Stop receiving ``stream`` (also after reconnects).

        Returns:
            The ack ``{"type": "ack", "for": "unsubscribe", "stream", "was_subscribed"}``, or
            None when no socket is open (there is nothing to tell the server).

        Raises:
            ClientError: the server refused (``invalid`` for a malformed name), or
                ``disconnected``.
        """
        sub = self._streams.pop(stream, None)
        if sub is not None and not sub.first.done():
            sub.first.set_exception(ClientError("unsubscribed", "unsubscribed before the ack"))
            sub.first.exception()  # retrieved: the subscribe() call raises it, if any
        ws = self._ws
        if ws is None or not self.is_open:
            return None
        reply = await self._request_once(ws, {"type": "unsubscribe", "stream": stream})
        if reply["type"] == "error":
            raise ClientError.from_frame(reply)
        return reply

    def last_offset(self, stream: str) -> int | None:
        """The highest offset delivered on ``stream`` (or its ``since``), None if none."""
        sub = self._streams.get(stream)
        return sub.last_offset if sub else None

    # --- actions --------------------------------------------------------------------------

    async def send(self, action_type: str, /, **fields: Any) -> dict[str, Any]:
        """Send an action (or ``typing``, ``ping``) and return the server's answer.

        ``send("chat.send", room=1, text="hi")`` writes
        ``{"room": 1, "text": "hi", "client_id": "<uuid>", "type": "chat.send", "ref": <n>}``.
        Waits for an open socket first. An action named in ``idempotency_fields``
        (``chat.send``) gets its key (``client_id``) generated when absent and is written
        again, with the same key, after a reconnect, after ``unavailable`` or
        ``rate_limited`` (with backoff) and after ``ack_timeout`` without an answer, up to
        ``max_attempts`` writes: the server stores it once (a repeat is acked with
        ``"duplicate": true``). Other frames are written once.

        Returns:
            The ``ack`` frame, e.g. for ``chat.send`` ``{"type": "ack", "ref", "for":
            "chat.send", "client_id", "stream", "id", "offset", "duplicate"}``; for ``ping``
            the ``pong`` ``{"type": "pong", "time", "ref"}``.

        Raises:
            ClientError: the server's error frame (``code``, ``detail``), or a local
                ``disconnected`` (a frame written once lost its socket before the answer),
                ``timeout`` (no answer within ``send_timeout`` s, or ``max_attempts``
                writes), ``too_big`` (over ``max_frame_bytes``; nothing sent).
            ClientClosed: the client stopped for good first.
            ValueError: ``subscribe``/``unsubscribe`` (use those methods).
        """
        if action_type in ("subscribe", "unsubscribe"):
            raise ValueError(f"use Client.{action_type}() for {action_type!r}")
        key = self.idempotency_fields.get(action_type)
        if key is not None and not fields.get(key):
            fields[key] = uuid.uuid4().hex
        frame = {**fields, "type": action_type}
        self._check_size(frame)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.send_timeout
        attempts = 0
        last_error = ClientError("timeout", f"no answer within {self.send_timeout} s")
        while True:
            ws = await self._wait_open(deadline)
            if key is not None and self._bucket is not None:
                await self._bucket.take()
            attempts += 1
            try:
                reply = await self._request_once(
                    ws,
                    frame,
                    timeout=self.ack_timeout if key is not None else None,
                    deadline=deadline,
                )
            except _Disconnected:
                if key is None:
                    raise ClientError(
                        "disconnected",
                        f"the connection closed ({self.close_code}) before the answer; "
                        "the action may or may not have been carried out",
                    ) from None
                last_error = ClientError("disconnected", "the connection closed")
            except TimeoutError:
                if key is None or loop.time() >= deadline:
                    raise last_error from None
                last_error = ClientError("timeout", f"no answer within {self.ack_timeout} s")
            else:
                if reply["type"] != "error":
                    return reply
                error = ClientError.from_frame(reply)
                if key is None or error.code not in TRANSIENT_ERRORS:
                    raise error
                last_error = error
                await asyncio.sleep(self._delay(attempts - 1))
            if attempts >= self.max_attempts:
                raise last_error

    # --- events ---------------------------------------------------------------------------

    def events(self, *streams: str) -> EventStream:
        """The events of ``streams`` (all streams when none is named), in arrival order.

        Use it as ``async for event in client.events(...)``, or, to stop early and resume
        later without losing what arrives in between, keep one ``EventStream`` and read it
        several times (``async with client.events() as stream: ...``). Events that arrived
        while no ``EventStream`` wanted them (e.g. between ``subscribe()`` returning and this
        call) come first. Each event goes to every open ``EventStream`` that wants it.
        Durable events come in offset order, each offset once, across reconnects.
        """
        listener = _Listener(frozenset(streams) if streams else None)
        kept: deque[Event] = deque()
        for old in self._backlog:
            if listener.wants(old.stream):
                listener.queue.put_nowait(old)
            else:
                kept.append(old)
        self._backlog = kept
        if self._ended is not None:
            listener.queue.put_nowait(None)
        self._listeners.append(listener)
        return EventStream(self, listener)

    def _unlisten(self, listener: _Listener) -> None:
        """Stop feeding ``listener``; what it received but did not yield goes back to the
        backlog, for the next reader (it holds no event of its streams older than those)."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)
        while not listener.queue.empty():
            if (event := listener.queue.get_nowait()) is not None:
                self._backlog.append(event)

    def _end_of_events(self) -> ClientClosed | None:
        """What an ended ``EventStream`` raises: the reason the client stopped, unless
        ``aclose()`` stopped it."""
        return None if self._closed_by_caller else self._ended

    # --- the connection loop --------------------------------------------------------------

    async def _run(self) -> None:
        """Connect, serve the socket until it closes, back off, again; until final."""
        loop = asyncio.get_running_loop()
        while self._ended is None:
            try:
                token = await self._fresh_token()
            except ClientError as exc:
                self._finish(ClientClosed(exc.detail, close_code=None, error=exc))
                return
            except Exception as exc:  # the caller's token source failed: try again later
                logger.warning("realtime client: the token source failed: %r", exc)
                await self._back_off()
                continue
            if self._refused is not None and token == self._refused[0]:
                self._finish(self._auth_closed(self._refused[1], "no new token"))
                return
            try:
                ws = await self._open(token)
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status == 403:
                    self._finish(
                        ClientClosed("the handshake was refused (HTTP 403)", close_code=403)
                    )
                    return
                retry_after = exc.response.headers.get("Retry-After", "")
                await self._back_off(float(retry_after) if retry_after.isdigit() else 0.0)
                continue
            except InvalidURI as exc:
                self._finish(ClientClosed(str(exc), close_code=None))
                return
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                logger.debug("realtime client: connection attempt failed: %r", exc)
                await self._back_off()
                continue
            self.connections += 1
            self._ws = ws
            self._auth_error = None
            opened_at = loop.time()
            await self._serve(ws)
            self._ws = None
            self._opened.clear()
            code = ws.close_code if ws.close_code is not None else 1006
            self.close_code = code
            self._fail_pending()
            if loop.time() - opened_at >= STABLE_AFTER:
                self._attempt = 0
            if self._ended is not None:
                return
            if code in FATAL_CLOSE_CODES:
                self._finish(ClientClosed(f"closed by the server ({code})", close_code=code))
                return
            if code in AUTH_CLOSE_CODES:
                # A new token may help, once: a second refusal in a row is final.
                self._auth_strikes += 1
                if not callable(self._token) or self._auth_strikes > 1:
                    self._finish(self._auth_closed(code, ws.close_reason or ""))
                    return
                self._refused = (token, code)
            self._set_state("reconnecting")
            await self._back_off()

    async def _fresh_token(self) -> str | None:
        source = self._token
        if source is None or isinstance(source, str):
            return source
        result = source()
        token = await result if inspect.isawaitable(result) else result
        return str(token)

    def _auth_closed(self, code: int, detail: str) -> ClientClosed:
        error = self._auth_error
        return ClientClosed(
            f"closed by the server ({code}): {error.detail if error else detail}",
            close_code=code,
            error=error,
        )

    async def _open(self, token: str | None) -> ClientConnection:
        protocols = [Subprotocol("townsquare")]
        if token:
            protocols.append(Subprotocol(f"bearer.{token}"))
        return await connect(
            self.url,
            origin=Origin(self.origin),
            subprotocols=protocols,
            additional_headers=self.headers,
            open_timeout=self.open_timeout,
            # Our own application-level pings (below), as client.js: they also prove that
            # the server's frame loop, not only its TCP stack, is alive.
            ping_interval=None,
            max_size=2**24,
        )

    async def _serve(self, ws: ClientConnection) -> None:
        """Resubscribe, release waiting sends, then read until the socket closes."""
        self._last_received = asyncio.get_running_loop().time()
        heartbeat = self._spawn(self._heartbeat(ws))
        try:
            for sub in list(self._streams.values()):
                self._spawn(self._subscribe_on(ws, sub))
            # Subscribes are written first: a send released now is written after them.
            await asyncio.sleep(0)
            self._opened.set()
            self._set_state("open")
            async for message in ws:
                self._receive(message)
        except ConnectionClosed:
            pass
        finally:
            heartbeat.cancel()

    async def _heartbeat(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.ping_interval)
            if loop.time() - self._last_received >= self.dead_after:
                logger.info(
                    "realtime client: nothing received for %s s; reconnecting", self.dead_after
                )
                ws.transport.abort()
                return
            with contextlib.suppress(ConnectionClosed):
                await ws.send(_encode({"type": "ping", "ref": next(self._refs)}))

    async def _back_off(self, at_least: float = 0.0) -> None:
        if self._ended is None:
            self._set_state("reconnecting" if self.connections else "connecting")
        delay = max(at_least, self._delay(self._attempt))
        self._attempt += 1
        await asyncio.sleep(delay)

    def _delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max_delay, base_delay × 2^attempt)] seconds."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** min(attempt, 30)))

    # --- frames ---------------------------------------------------------------------------

    def _receive(self, message: str | bytes) -> None:
        self._last_received = asyncio.get_running_loop().time()
        try:
            frame = orjson.loads(message)
        except orjson.JSONDecodeError:
            logger.warning("realtime client: a frame that is not JSON was ignored")
            return
        if not isinstance(frame, dict):
            return
        kind = frame.get("type")
        if kind == "event":
            self._deliver(frame)
        elif kind in ("ack", "error", "pong"):
            if kind == "ack":
                self._auth_strikes = 0  # this sign-in works
                self._refused = None
            waiter = self._pending.pop(frame["ref"], None) if frame.get("ref") is not None else None
            if waiter is not None:
                if not waiter.done():
                    waiter.set_result(frame)
            elif kind == "error":
                self._unrequested_error(frame)

    def _deliver(self, frame: dict[str, Any]) -> None:
        stream = frame.get("stream")
        sub = self._streams.get(stream) if isinstance(stream, str) else None
        if sub is None or not isinstance(stream, str):
            return
        offset = frame.get("offset")
        if type(offset) is int:
            if sub.last_offset is not None and offset <= sub.last_offset:
                return
            sub.last_offset = offset
        else:
            offset = None
        event = Event(stream, str(frame.get("event")), frame.get("data"), offset)
        wanting = [listener for listener in self._listeners if listener.wants(stream)]
        for listener in wanting:
            listener.queue.put_nowait(event)
        if not wanting:
            if len(self._backlog) >= self._buffer:
                self._backlog.popleft()
                logger.warning("realtime client: no events() reader; an event was dropped")
            self._backlog.append(event)

    def _unrequested_error(self, frame: dict[str, Any]) -> None:
        error = ClientError.from_frame(frame)
        if error.code == "unauthenticated" and error.reason:
            self._auth_error = error  # the close 4001 / 4002 that follows is explained
            return
        if error.stream is not None:
            # The server ended the subscription (e.g. membership revoked): do not resubscribe.
            self._streams.pop(error.stream, None)
        self._report(error)

    def _report(self, error: ClientError) -> None:
        if self._on_error is not None:
            self._on_error(error)
        else:
            logger.warning("realtime client: %s", error)

    async def _subscribe_on(self, ws: ClientConnection, sub: _Stream) -> None:
        """Write ``subscribe`` for ``sub`` on ``ws``; settle ``sub.first`` with the outcome."""
        while self._streams.get(sub.name) is sub and self._ws is ws:
            frame: dict[str, Any] = {"type": "subscribe", "stream": sub.name}
            if sub.last_offset is not None:
                frame["since"] = sub.last_offset
            try:
                reply = await self._request_once(ws, frame)
            except _Disconnected:
                return  # the next connection subscribes again
            if self._streams.get(sub.name) is not sub:
                return
            if reply["type"] == "ack":
                sub.retries = 0
                sub.durable = bool(reply.get("durable"))
                if not sub.first.done():
                    sub.first.set_result(reply)
                return
            error = ClientError.from_frame(reply)
            if error.code in TRANSIENT_ERRORS:
                retry_after = reply.get("retry_after")
                delay = self._delay(sub.retries)
                if isinstance(retry_after, int | float):
                    delay = max(delay, float(retry_after))
                sub.retries += 1
                await asyncio.sleep(delay)
                continue
            self._streams.pop(sub.name, None)
            if sub.first.done():
                self._report(error)
            else:
                sub.first.set_exception(error)
            return

    async def _request_once(
        self,
        ws: ClientConnection,
        frame: dict[str, Any],
        *,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> dict[str, Any]:
        """Write ``frame`` with a fresh ``ref`` on ``ws`` and return the frame answering it.

        Raises:
            _Disconnected: ``ws`` closed first.
            TimeoutError: ``timeout`` seconds (or ``deadline``, loop time) passed first.
        """
        loop = asyncio.get_running_loop()
        ref = next(self._refs)
        waiter: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending[ref] = waiter
        if deadline is not None:
            left = max(0.0, deadline - loop.time())
            timeout = left if timeout is None else min(timeout, left)
        try:
            try:
                await ws.send(_encode({**frame, "ref": ref}))
            except ConnectionClosed:
                raise _Disconnected from None
            async with asyncio.timeout(timeout):
                return await waiter
        finally:
            self._pending.pop(ref, None)

    def _fail_pending(self) -> None:
        pending = list(self._pending.values())
        self._pending.clear()
        for waiter in pending:
            if not waiter.done():
                waiter.set_exception(_Disconnected())

    async def _wait_open(self, deadline: float | None) -> ClientConnection:
        """The open socket, once there is one.

        Raises:
            ClientClosed: the client stopped for good first.
            ClientError: ``timeout`` at ``deadline`` (loop time).
        """
        loop = asyncio.get_running_loop()
        while True:
            self._raise_if_ended()
            ws = self._ws
            if ws is not None and self._opened.is_set():
                return ws
            wait_open = asyncio.ensure_future(self._opened.wait())
            ended = self._supervisor if self._supervisor is not None else wait_open
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            done, _ = await asyncio.wait(
                {wait_open, ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            wait_open.cancel()
            if not done:
                raise ClientError("timeout", "no connection to the server in time")
            supervisor = self._supervisor
            if supervisor is not None and supervisor.done() and self._ended is None:
                # The connection loop failed on a bug: stop rather than spin.
                failure = supervisor.exception() if not supervisor.cancelled() else None
                self._finish(
                    ClientClosed(f"the connection loop ended: {failure!r}", close_code=None)
                )

    def _check_size(self, frame: dict[str, Any]) -> None:
        size = len(_encode({**frame, "ref": 2**53}).encode())
        if size > self.max_frame_bytes:
            raise ClientError(
                "too_big", f"the frame is {size} bytes; the server takes {self.max_frame_bytes}"
            )

    # --- bookkeeping ----------------------------------------------------------------------

    def _raise_if_ended(self) -> None:
        if self._ended is not None:
            raise self._ended

    def _finish(self, ended: ClientClosed) -> None:
        """Stop for good: fail what waits, end the iterators (which raise ``ended`` unless
        ``aclose()`` was called)."""
        if self._ended is not None:
            return
        self._ended = ended
        self._opened.clear()
        self._set_state("closed")
        for sub in self._streams.values():
            if not sub.first.done():
                sub.first.set_exception(ended)
                sub.first.exception()  # retrieved: nobody may be awaiting it
        self._fail_pending()
        for listener in self._listeners:
            listener.queue.put_nowait(None)

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _set_state(self, state: ConnectionState) -> None:
        if state == self.state:
            return
        self.state = state
        if self._on_state is not None:
            self._on_state(state)


class EventStream:
    """An async iterator of ``Event`` (``Client.events()``); also an async context manager.

    It receives events from its creation until ``close()`` (or the end of its ``async
    with``, or its garbage collection); what it has not yielded then goes back to the
    client, for the next ``events()``. Iterating it ends when the client is closed by
    ``aclose()``.

    Raises (from iteration):
        ClientClosed: the client stopped for good (a final close code, a refused handshake).
    """

    def __init__(self, client: Client, listener: _Listener) -> None:
        self._client = client
        self._listener: _Listener | None = listener

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        listener = self._listener
        if listener is None:
            raise StopAsyncIteration
        event = await listener.queue.get()
        if event is None:
            self.close()
            ended = self._client._end_of_events()
            if ended is not None:
                raise ended
            raise StopAsyncIteration
        return event

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop receiving events; those received but not yet yielded are kept for the next
        ``Client.events()``."""
        if self._listener is not None:
            self._client._unlisten(self._listener)
            self._listener = None

    def __del__(self) -> None:
        # A loop left by `break` drops its last reference here: stop taking events at once,
        # so they go to the backlog for the next reader instead of a dead queue.
        self.close()


def _encode(frame: Mapping[str, Any]) -> str:
    return orjson.dumps(frame).decode()
