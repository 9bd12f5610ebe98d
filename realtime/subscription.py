"""A socket's subscription to one stream: live frames in offset order, gaps held and filled.

``Subscription`` is what the hub delivers frames to (it satisfies ``hub.Subscriber``); the
consumer creates one per subscribed stream (``RealtimeConsumer.open_subscription``) and
``Opened`` carries what the subscribe read before going live (snapshot, replay). The
ordering rules are in ``Subscription``'s docstring and in docs/architecture.md, "Ordering
and recovery".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from . import metrics
from .conf import rt_settings
from .frames import Frame, Renderer
from .hub import Hub
from .outbox import Outbox
from .registry import Event

logger = logging.getLogger(__name__)


class Subscription:
    """One socket's subscription to one stream: what the hub delivers frames to.

    While the subscribe replay runs, live frames wait in ``buffer``; afterwards they pass
    straight to the outbox. On durable streams, frames reach the client in offset order with
    no gap and no duplicate:

    - a frame at or below ``last_offset`` (already sent, e.g. by the replay) is dropped;
    - a frame past a gap (offset n+2 while n+1 is missing) is held; publishes from different
      threads or workers can overtake each other, so the missing one usually arrives within
      ``GAP_WAIT_SECONDS``;
    - if it does not, the hub fetches the gap from the database (one query per gap per
      process, shared by every local subscriber), and the held frames follow.
    """

    __slots__ = (
        "_gap_attempts",
        "_gap_timer",
        "_held",
        "buffer",
        "hub",
        "last_offset",
        "last_typing",
        "on_revoke",
        "outbox",
        "presence",
        "renderer",
        "stream",
        "user_id",
    )

    def __init__(
        self,
        stream: str,
        outbox: Outbox,
        *,
        since: int | None,
        renderer: Renderer | None,
        hub: Hub | None = None,
        user_id: int | None = None,
        on_revoke: Callable[[str, str], None] | None = None,
        presence: bool = False,
    ) -> None:
        self.stream = stream
        self.outbox = outbox
        self.renderer = renderer
        self.hub = hub
        self.user_id = user_id
        self.on_revoke = on_revoke
        self.presence = presence
        self.last_typing = 0.0
        self.last_offset = since if since is not None else -1
        self.buffer: list[Frame] | None = []
        self._held: dict[int, Frame] | None = None
        self._gap_timer: asyncio.TimerHandle | None = None
        self._gap_attempts = 0

    def deliver(self, frame: Frame) -> None:
        """Called by the hub for each frame of the stream (no await, no encoding)."""
        if self.buffer is not None:
            self.buffer.append(frame)
            return
        offset = frame.offset
        if offset is not None:
            last = self.last_offset
            if offset <= last:
                return
            if offset != last + 1 and last >= 0:
                self._hold(frame)
                return
            self.last_offset = offset
        self._put(frame)
        if self._held:
            self._release()

    def _put(self, frame: Frame) -> None:
        text = frame.text if self.renderer is None else frame.render(self.renderer)
        if text is not None:
            self.outbox.put(text)

    def _hold(self, frame: Frame) -> None:
        assert frame.offset is not None
        if self._held is None:
            self._held = {}
        self._held[frame.offset] = frame
        if self._gap_timer is None and self.hub is not None:
            loop = asyncio.get_running_loop()
            self._gap_timer = loop.call_later(rt_settings().GAP_WAIT_SECONDS, self._gap_timeout)

    def _release(self) -> None:
        # Pass on held frames that are now next in line.
        held = self._held
        assert held is not None
        while (frame := held.pop(self.last_offset + 1, None)) is not None:
            self.last_offset += 1
            self._put(frame)
        for stale in [o for o in held if o <= self.last_offset]:
            del held[stale]
        if not held:
            self._gap_attempts = 0
            if self._gap_timer is not None:
                self._gap_timer.cancel()
                self._gap_timer = None

    def _gap_timeout(self) -> None:
        self._gap_timer = None
        if self._held and self.hub is not None:
            self.hub.spawn(self._fill_gap())

    async def _fill_gap(self) -> None:
        held = self._held
        if not held or self.hub is None:
            return
        first_held = min(held)
        try:
            missing = await self.hub.fetch_range(self.stream, self.last_offset, first_held - 1)
        except Exception:
            logger.exception(
                "could not fetch %s offsets %s..%s",
                self.stream,
                self.last_offset + 1,
                first_held - 1,
            )
            missing = []
        filled = 0
        for frame in missing:
            if frame.offset is not None and frame.offset == self.last_offset + 1:
                self.last_offset = frame.offset
                self._put(frame)
                filled += 1
        # Frames fetched for one subscriber: counted here, as Hub.deliver never saw them.
        metrics.frames_out("event" if self.renderer is None else "seed", filled)
        if self._held and self.last_offset + 1 < min(self._held) and self._gap_attempts < 3:
            # Not there yet: the writer's commit may not be visible to this process's
            # connection, or the frame is still on its way. Wait longer, then read again.
            self._gap_attempts += 1
            delay = rt_settings().GAP_WAIT_SECONDS * 2**self._gap_attempts
            self._gap_timer = asyncio.get_running_loop().call_later(delay, self._gap_timeout)
            return
        self._gap_attempts = 0
        if self._held and self.last_offset + 1 < min(self._held):
            # The database has nothing for the gap after several reads (the client can still
            # resubscribe with `since`); waiting longer would only delay everything after it.
            logger.warning(
                "%s: offsets %s..%s not found; skipping",
                self.stream,
                self.last_offset + 1,
                min(self._held) - 1,
            )
            self.last_offset = min(self._held) - 1
        if self._held:
            self._release()

    def revoke(self, detail: str) -> None:
        """Called by the hub when the user's right to the stream was taken away."""
        if self.on_revoke is not None:
            self.on_revoke(self.stream, detail)

    def close(self) -> None:
        """Forget held frames and timers (the socket left the stream)."""
        if self._gap_timer is not None:
            self._gap_timer.cancel()
            self._gap_timer = None
        self._held = None

    def go_live(self) -> None:
        """End buffering: pass on the frames that arrived during the replay, then live ones."""
        buffered, self.buffer = self.buffer or [], None
        for frame in sorted(buffered, key=_offset_key):
            self.deliver(frame)


def _offset_key(frame: Frame) -> int:
    return frame.offset if frame.offset is not None else -1


@dataclass
class Opened:
    """What ``open_subscription`` read: the snapshot and replay events to send first."""

    durable: bool
    snapshot: list[Event] = field(default_factory=list)
    replay: list[Event] = field(default_factory=list)
    truncated: bool = False
    subscription: Subscription | None = None
    #: Presence could not be read or written (Redis hung or down): no ``presence.state`` in
    #: the snapshot; it follows once the store answers (``presence.restore_later``).
    degraded: bool = False
