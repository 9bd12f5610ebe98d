"""A socket's bounded output queue: every frame to one client passes through it, in order.

The hub appends already-encoded frames without awaiting (fan-out never waits on a slow
client); one writer task per socket awaits the ASGI ``send``, which blocks under TCP
backpressure on uvicorn. Output waiting in the queue is bounded by ``max_bytes``: past it the
socket is a slow reader and ``on_overflow`` is called once (the consumer closes with 4008).
The socket's own bulk output (a replay) uses ``put_wait``, which waits for room instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]


class Outbox:
    """Per-socket FIFO of text frames with a byte bound and one writer task.

    Sizes are counted in characters of JSON text (equal to bytes for ASCII), which costs
    nothing per frame; the bound is about memory, not an exact byte count.
    """

    __slots__ = (
        "_bytes",
        "_closing",
        "_max_bytes",
        "_on_overflow",
        "_queue",
        "_room",
        "_send",
        "_task",
        "_wake",
        "overflowed",
    )

    def __init__(self, send: Send, *, max_bytes: int, on_overflow: Callable[[], None]) -> None:
        self._send = send
        self._max_bytes = max_bytes
        self._on_overflow = on_overflow
        self._queue: deque[str] = deque()
        self._bytes = 0
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._task: asyncio.Task[None] | None = None
        self._closing: dict[str, Any] | None = None
        self.overflowed = False

    @property
    def pending_bytes(self) -> int:
        """Characters of encoded frames queued and not yet handed to the server."""
        return self._bytes

    def start(self) -> None:
        """Start the writer task; call once, after the socket is accepted."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    def put(self, text: str) -> bool:
        """Queue one frame without waiting. Returns False if the socket overflowed or closes."""
        if self.overflowed or self._closing is not None:
            return False
        self._queue.append(text)
        self._bytes += len(text)
        if self._bytes > self._max_bytes:
            self.overflowed = True
            self._queue.clear()
            self._bytes = 0
            self._on_overflow()
            return False
        if self._bytes > self._max_bytes // 2:
            self._room.clear()
        self._wake.set()
        return True

    async def put_wait(self, text: str) -> bool:
        """Queue one frame, first waiting while the queue is over half its bound."""
        while not self._room.is_set() and not self.overflowed and self._closing is None:
            await self._room.wait()
        return self.put(text)

    def close(self, code: int, reason: str = "") -> None:
        """Send a close frame after every frame already queued."""
        if self._closing is None:
            self._closing = {"type": "websocket.close", "code": code, "reason": reason}
            self._wake.set()

    async def abort(self, code: int, reason: str = "") -> None:
        """Drop what is queued and close now, even if the writer is stuck in ``send``."""
        self._queue.clear()
        self._bytes = 0
        self._closing = {"type": "websocket.close", "code": code, "reason": reason}
        await self.stop()
        with contextlib.suppress(Exception):
            await self._send(self._closing)

    async def stop(self) -> None:
        """Cancel the writer task (the socket is gone or being aborted)."""
        task, self._task = self._task, None
        self._room.set()
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        queue, send, wake = self._queue, self._send, self._wake
        try:
            while True:
                if not queue:
                    if self._closing is not None:
                        await send(self._closing)
                        return
                    wake.clear()
                    await wake.wait()
                    continue
                text = queue.popleft()
                self._bytes -= len(text)
                if self._bytes <= self._max_bytes // 2:
                    self._room.set()
                await send({"type": "websocket.send", "text": text})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the client went away mid-send; disconnect follows
            logger.debug("outbox writer stopped: %r", exc)
