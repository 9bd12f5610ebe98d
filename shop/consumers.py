"""Seed 001's ``notification/count?token=<JWT>`` socket.

After connect it sends ``{"grouped": <user id>}``; whenever an item the user watches changes
quantity (a ``stock`` notification reaches their inbox) it sends ``{"text": "UPDATE_COUNT"}``,
as seed 001's ``update_count`` handler does. Only a valid token signs in here: a missing,
forged or expired one is refused at the handshake (HTTP 403), session or not.
"""

from __future__ import annotations

from realtime.consumers import RealtimeConsumer
from realtime.frames import Frame
from realtime.middleware import token_from_scope
from realtime.protocol import CloseCode, dumps

UPDATE_COUNT = dumps({"text": "UPDATE_COUNT"})


def render_update_count(frame: Frame) -> str | None:
    """``notification.created`` of kind ``stock`` → ``{"text": "UPDATE_COUNT"}``; else nothing."""
    payload = frame.payload
    if payload.get("event") == "notification.created" and payload["data"].get("kind") == "stock":
        return UPDATE_COUNT
    return None


class SeedNotificationCountConsumer(RealtimeConsumer):
    """Seed 001's ``NotificationConsumer``, on the core's hub (see the module docstring)."""

    async def connect(self) -> None:
        """Refuse unless a valid token signed the socket in; else greet and join the inbox."""
        user = self.user
        if token_from_scope(self.scope) is None or self.scope.get("auth_error"):
            await self.close(CloseCode.UNAUTHENTICATED)
            return
        assert user.is_authenticated
        # Joined before the handshake completes (and before the greeting), so the client
        # hears every change after it; frames published meanwhile wait for go_live().
        opened = await self.open_subscription(f"user:{user.pk}", renderer=render_update_count)
        assert opened.subscription is not None
        await self.accept()
        self.send_text(dumps({"grouped": user.pk}))
        opened.subscription.go_live()
