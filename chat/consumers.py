"""Seed-compatible chat sockets: the message shapes of seeds 002 and 003.

``ws/chat/<room_name>/`` (seed 003) and ``ws/chat/room/<room_id>`` (seed 002) take
``{"message": str}`` from the client (a ``username`` field is ignored: the author is the
signed-in user) and send ``{"message": str, "username": str}`` for every message of the room,
including those sent through ``/ws/`` or the HTTP API. Messages sent here are stored and
published like any other.

Anonymous sockets, unknown rooms and non-members of private rooms are refused at the
handshake (HTTP 403).

Connecting to ``ws/chat/<room_name>/`` with a new name creates that public room, as seed 003
did, through ``services.room_create``: the same name rule and per-user ``ROOM_CREATE_QUOTA``
as the page's confirm button and ``POST /api/rooms/``. This is not a write another site can
trigger: the socket is origin-checked (``AllowedHostsOriginValidator`` in townsquare/asgi.py
refuses a foreign ``Origin``, so a cross-site page cannot open it with the visitor's cookie)
and signed in (anonymous sockets are refused before any query). Over the quota, or with a name
outside the rule, the handshake is refused (HTTP 403), and nothing is created.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError

from realtime.consumers import RealtimeConsumer
from realtime.frames import Frame
from realtime.protocol import CloseCode, ErrorCode, ProtocolError, dumps

from . import selectors, services
from .models import Room
from .services import RoomQuotaExceeded
from .writer import get_writer


def render_seed_message(frame: Frame) -> str | None:
    """Render a ``chat.message`` event as seed 003's ``{message, username}``; skip others."""
    payload = frame.payload
    if payload.get("event") != "chat.message":
        return None
    data = payload["data"]
    return dumps({"message": data["text"], "username": data["author"]["username"]})


class SeedChatConsumer(RealtimeConsumer):
    """One room per socket, in the seeds' message shape (see the module docstring)."""

    room_id: int

    async def connect(self) -> None:
        """Refuse anonymous users and unreadable rooms; else join the room and accept."""
        user = self.user
        if not user.is_authenticated:
            await self.close(CloseCode.UNAUTHENTICATED)
            return
        kwargs = self.scope["url_route"]["kwargs"]
        try:
            room = await database_sync_to_async(self._room)(kwargs)
        except (ObjectDoesNotExist, PermissionDenied, ValidationError, RoomQuotaExceeded):
            await self.close(CloseCode.FORBIDDEN)
            return
        self.room_id = room.pk
        # Join before accepting, as seed 003 joins its group in connect(): once the client's
        # handshake completes it hears every message sent after it. Frames published
        # meanwhile wait in the subscription's buffer until go_live().
        opened = await self.open_subscription(room.stream, renderer=render_seed_message)
        assert opened.subscription is not None
        await self.accept()
        opened.subscription.go_live()

    def _room(self, kwargs: dict[str, Any]) -> Room:
        if "room_id" in kwargs:
            return selectors.room_get_readable(user=self.user, room_id=int(kwargs["room_id"]))
        room = services.room_open_by_name(user=self.user, name=kwargs["room_name"])
        return selectors.room_get_readable(user=self.user, room_id=room.pk)

    async def receive_frame(self, frame: dict[str, Any]) -> None:
        """``{"message": str}`` → store and publish; the echo comes back as a room event."""
        if "message" not in frame:
            raise ProtocolError(ErrorCode.INVALID, 'a seed chat frame is {"message": str}')
        await get_writer().write(user=self.user, room_id=self.room_id, text=frame["message"])
