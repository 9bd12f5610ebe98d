"""The channel layer's wire format between processes: what a publish sends, what a hub reads.

A publish crosses the layer as one message to the stream's group (``group_name``); every hub
serving the stream reads it from its one layer channel (``realtime.layer``) and hands a
``Frame`` to its local subscribers (``realtime.hub``). This module holds the shapes both
sides agree on, and the ``Frame`` itself, so that publish and the hub depend on it and not on
each other. The client's wire format is ``realtime.protocol``.

Layer messages (``type`` first):

- ``hub.frame``: ``{stream, offset: int | None, text: str, ts: float}``, one event frame;
- ``hub.frames``: ``{stream, frames: [[offset | None, text], ...], ts}``, consecutive events
  of one stream (``publish_many``), delivered in order;
- ``hub.revoke``: ``{stream, user: int, detail: str}``, end one user's subscriptions;
- ``hub.probe``: ``{n: int}``, a hub's probe of the layer, sent to its own channel.

A sign-out (``realtime.signout``) crosses as a ``hub.frame`` on the internal stream
``SIGNOUT_STREAM``, whose text is ``{"type": "signout", "data": {user, reason, ...}}``.

``ts`` is the publish time in Unix seconds, for the publish-to-send latency histogram.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

#: Channel-layer message type carrying one published frame between processes.
FRAME_MESSAGE_TYPE = "hub.frame"
#: Channel-layer message type carrying consecutive frames of one stream (``publish_many``):
#: ``{stream, frames: [[offset | None, text], ...], ts}``, delivered in order.
FRAMES_MESSAGE_TYPE = "hub.frames"
#: Channel-layer message type ending one user's subscriptions to a stream on every worker.
REVOKE_MESSAGE_TYPE = "hub.revoke"
#: Channel-layer message type of a hub's probe of the layer, sent to its own channel.
PROBE_MESSAGE_TYPE = "hub.probe"
#: The internal stream of ended sign-ins (``realtime.signout``): every process with a
#: signed-in socket listens to it; its frames carry a sign-out, never an event for a client.
SIGNOUT_STREAM = "sys:signout"


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
