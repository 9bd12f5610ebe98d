"""A socket's bounded output queue: every frame to one client passes through it, in order.

The hub hands already-encoded frames to ``put``, which never waits (fan-out never waits on a
slow client). When nothing is queued the frame is written at once: the server's ASGI
``send`` coroutine is driven in place and, on uvicorn, finishes without suspending (it
frames the text and writes it to the transport). Only when ``send`` suspends, which uvicorn
does under TCP backpressure (the transport paused writing), does the socket get a writer
task: it finishes that ``send``, writes what queued up meanwhile, and ends when the queue is
empty. So fan-out to a socket that keeps up costs no task wake-up and no queue, and an idle
socket holds no task (about 2 KiB each).

Output waiting in the queue is bounded by ``max_bytes``: past it the socket is a slow reader
and ``on_overflow`` is called once (the consumer closes with 4008). The socket's own bulk
output (a replay) uses ``put_wait``, which waits for room instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

logger = logging.getLogger(__name__)

#: The server's ASGI ``send`` (uvicorn's and daphne's are ``async def``: a coroutine a call).
Send = Callable[[dict[str, Any]], Awaitable[None]]


@types.coroutine
def finish(coro: Coroutine[Any, Any, Any], blocked_on: Any) -> Generator[Any, Any, Any]:
    """Await the rest of ``coro``, which was started outside any task and suspended on
    ``blocked_on`` (what its first ``send(None)`` yielded).

    This is what ``await`` does for a coroutine it started itself (PEP 380's ``yield from``
    expansion): pass each future ``coro`` yields up to the running task, and the task's
    results or exceptions (cancellation included) back down into it.
    """
    while True:
        try:
            value = yield blocked_on
        except BaseException as exc:
            try:
                blocked_on = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                blocked_on = coro.send(value)
            except StopIteration as stop:
                return stop.value


class Outbox:
    """Per-socket FIFO of text frames with a byte bound; writes at once when it can.

    Sizes are counted in characters of JSON text (equal to bytes for ASCII), which costs
    nothing per frame; the bound is about memory, not an exact byte count. Frames are sent
    in the order ``put`` was called, whether written at once or by the writer task.
    """

    __slots__ = (
        "_bytes",
        "_closing",
        "_drained",
        "_failed",
        "_inflight",
        "_max_bytes",
        "_on_overflow",
        "_queue",
        "_send",
        "_writer",
        "overflowed",
    )

    def __init__(self, send: Send, *, max_bytes: int, on_overflow: Callable[[], None]) -> None:
        self._send = send
        self._max_bytes = max_bytes
        self._on_overflow = on_overflow
        # Created with the first writer task: an idle socket's deque would cost 0.6 KiB.
        self._queue: deque[str] | None = None
        self._bytes = 0
        # The writer task, while one is needed (a send suspended, or frames are queued).
        self._writer: asyncio.Task[None] | None = None
        # A send that suspended inside put(), until the writer task has finished it.
        self._inflight: Coroutine[Any, Any, Any] | None = None
        # Resolved when queued output falls to half the bound (put_wait waits on it).
        self._drained: asyncio.Future[None] | None = None
        self._closing: dict[str, Any] | None = None
        self._failed = False
        self.overflowed = False

    @property
    def pending_bytes(self) -> int:
        """Characters of encoded frames queued and not yet handed to the server."""
        return self._bytes

    @property
    def writing(self) -> bool:
        """True while a writer task exists: a send is suspended or frames are queued."""
        return self._writer is not None

    def put(self, text: str) -> bool:
        """Send one frame, or queue it behind those waiting; never waits.

        Returns False if the socket overflowed, closes, or its connection failed.
        """
        if self.overflowed or self._closing is not None or self._failed:
            return False
        queue = self._queue
        if self._writer is None or queue is None:
            self._write_now({"type": "websocket.send", "text": text})
            return not self._failed
        queue.append(text)
        self._bytes += len(text)
        if self._bytes > self._max_bytes:
            self.overflowed = True
            queue.clear()
            self._bytes = 0
            self._on_overflow()
            return False
        return True

    async def put_wait(self, text: str) -> bool:
        """Queue one frame, first waiting while queued output is over half its bound."""
        while (
            self._bytes > self._max_bytes // 2
            and not self.overflowed
            and self._closing is None
            and not self._failed
        ):
            if self._drained is None or self._drained.done():
                self._drained = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._drained)
        return self.put(text)

    async def flush(self) -> None:
        """Wait until every frame queued so far was handed to the server (or failed)."""
        while (writer := self._writer) is not None and not writer.done():
            await asyncio.wait([writer])  # neither cancels the writer nor raises its error

    def close(self, code: int, reason: str = "") -> None:
        """Send a close frame after every frame already queued."""
        if self._closing is not None:
            return
        self._closing = {"type": "websocket.close", "code": code, "reason": reason}
        if self._writer is None and not self._failed:
            self._write_now(self._closing)

    async def abort(self, code: int, reason: str = "") -> None:
        """Drop what is queued and close now, even if a send is stuck under backpressure."""
        if self._queue:
            self._queue.clear()
        self._bytes = 0
        self._closing = {"type": "websocket.close", "code": code, "reason": reason}
        await self.stop()
        with contextlib.suppress(Exception):
            await self._send(self._closing)

    async def stop(self) -> None:
        """Cancel the writer task if there is one (the socket is gone or being aborted)."""
        writer, self._writer = self._writer, None
        self._wake_put_wait()
        if writer is not None and not writer.done():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        # A writer cancelled before its first step never reached the suspended send.
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            inflight.close()

    def _write_now(self, message: dict[str, Any]) -> None:
        # Drive the server's send in place. If it finishes without suspending (the usual
        # case) nothing else happens; if it suspends (backpressure), a writer task takes the
        # suspended coroutine over, and every later frame queues behind it. A server whose
        # send returns some other awaitable (granian's) gets the writer task for each frame.
        awaitable = self._send(message)
        if type(awaitable) is not types.CoroutineType:
            self._start_writer(awaitable, None)
            return
        coro = awaitable
        try:
            blocked_on = coro.send(None)
        except StopIteration:
            return
        except Exception as exc:  # the client went away; its disconnect follows
            self._fail(exc)
            return
        self._inflight = coro
        self._start_writer(coro, blocked_on)

    def _start_writer(self, first: Awaitable[Any], blocked_on: Any) -> None:
        if self._queue is None:
            self._queue = deque()
        self._writer = asyncio.get_running_loop().create_task(self._run(first, blocked_on))

    async def _run(self, first: Awaitable[Any], blocked_on: Any) -> None:
        # ``first``: the send that put() started and that suspended on ``blocked_on``, or
        # (blocked_on None) an awaitable send not started yet.
        queue, send = self._queue, self._send
        assert queue is not None
        try:
            try:
                if self._inflight is first:
                    await finish(self._inflight, blocked_on)
                else:
                    await first
            finally:
                self._inflight = None
            while queue:
                text = queue.popleft()
                self._bytes -= len(text)
                if self._bytes <= self._max_bytes // 2:
                    self._wake_put_wait()
                await send({"type": "websocket.send", "text": text})
            if self._closing is not None:
                await send(self._closing)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)
        finally:
            if self._writer is asyncio.current_task():
                self._writer = None
            self._wake_put_wait()

    def _wake_put_wait(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _fail(self, exc: Exception) -> None:
        logger.debug("outbox: send failed, dropping output: %r", exc)
        self._failed = True
        if self._queue:
            self._queue.clear()
        self._bytes = 0
