"""Rooms and their durable messages (seed 002's ``Room`` and ``Alert``)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Room(models.Model):
    """A chat room. Public rooms are open to every signed-in user; private ones to members.

    ``last_offset`` is the offset of the room's newest message; a writer increments it in the
    transaction that inserts the message, so offsets run 1, 2, 3, … with no gaps.
    """

    name = models.CharField(max_length=60, unique=True)
    is_private = models.BooleanField(default=False)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="rooms_joined", blank=True
    )
    last_offset = models.PositiveBigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def stream(self) -> str:
        """The room's stream name, ``chat:room:<id>``."""
        return f"chat:room:{self.pk}"


class Message(models.Model):
    """One chat message; ``offset`` is its sequence number within the room."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_messages"
    )
    text = models.TextField(max_length=4000)
    offset = models.PositiveBigIntegerField()
    client_id = models.CharField(max_length=64, blank=True, default="")
    # Indexed for the dashboard's "last hour", "last minute" and per-second counts.
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["room", "offset"]
        constraints = [
            models.UniqueConstraint(fields=["room", "offset"], name="chat_message_room_offset")
        ]

    def __str__(self) -> str:
        return f"{self.room_id}#{self.offset} {self.text[:40]}"
