"""Rooms and their durable messages (seed 002's ``Room`` and ``Alert``)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import models

#: Username of the account that keeps a deleted user's messages (``deleted_user``).
DELETED_USERNAME = "[deleted]"


def deleted_user() -> int:
    """The pk of the inactive placeholder account that a deleted user's messages move to.

    Deleting a user must not delete their messages: offsets are gapless per room, and a hole
    would read as a lost message to every client (``ForeignKey.on_delete=SET``, the pattern
    of Django's documentation for ``on_delete``).
    """
    user, created = get_user_model().objects.get_or_create(
        username=DELETED_USERNAME, defaults={"is_active": False}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return int(user.pk)


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
    # May delete any message of the room (besides staff and the message's author).
    moderators = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="rooms_moderated", blank=True
    )
    # Who created the room (for the per-user creation quota); kept when they are deleted.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="rooms_created",
    )
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
    """One chat message; ``offset`` is its sequence number within the room.

    The row holds the message's current state: ``text`` after the latest edit
    (``edited_at``), emptied when deleted (``deleted_at``, a tombstone that keeps the offset).
    Each edit, delete or reaction change is also a ``MessageChange`` at an offset of its own.
    """

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET(deleted_user),
        related_name="chat_messages",
    )
    text = models.TextField(max_length=4000)
    offset = models.PositiveBigIntegerField()
    client_id = models.CharField(max_length=64, blank=True, default="")
    # Indexed for the dashboard's "last hour", "last minute" and per-second counts.
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    #: ``{emoji: [user id]}`` when a list selector attached the reactions
    #: (``selectors.message_reactions`` reads it); absent otherwise.
    reaction_map: dict[str, list[int]]

    #: Set on a ``Message`` that ``message_create_many`` returns for a repeated ``client_id``:
    #: the message stored by the first send (nothing new was stored or published).
    duplicate = False

    class Meta:
        ordering = ["room", "offset"]
        constraints = [
            models.UniqueConstraint(fields=["room", "offset"], name="chat_message_room_offset"),
            # One message per (room, client_id, author): a send repeated after a lost ack
            # finds the first instead of storing a second (idempotent chat.send).
            models.UniqueConstraint(
                fields=["room", "client_id", "author"],
                condition=~models.Q(client_id=""),
                name="chat_message_room_client_id_author",
            ),
        ]

    def __str__(self) -> str:
        """``lobby #3 alice: the first 40 characters``."""
        return f"{self.room} #{self.offset} {self.author}: {self.text[:40]}"


class MessageChange(models.Model):
    """A change to a message, stored at an offset of the room's stream like a message.

    The room's offsets count messages and changes together (both take the next
    ``Room.last_offset``), so a client replaying with ``since`` receives ``chat.message`` and
    these events interleaved in the order they happened. ``event`` is the event type
    (``chat.message_edited``, ``chat.message_deleted``, ``chat.reactions``) and ``data`` its
    payload as published.
    """

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="changes")
    offset = models.PositiveBigIntegerField()
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="changes")
    event = models.CharField(max_length=40)
    data = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["room", "offset"]
        constraints = [
            models.UniqueConstraint(fields=["room", "offset"], name="chat_change_room_offset"),
        ]

    def __str__(self) -> str:
        return f"{self.room_id} #{self.offset} {self.event} of message {self.message_id}"


class Reaction(models.Model):
    """One user's emoji on one message (``chat.react`` toggles it)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reactions")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_reactions"
    )
    emoji = models.CharField(max_length=32)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["message", "created_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["message", "user", "emoji"], name="chat_reaction_message_user_emoji"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.emoji} by {self.user_id} on message {self.message_id}"


class ReadCursor(models.Model):
    """How far a user has read a room: the offset of the last event they have seen.

    Moves forward only (``services.read_cursor_advance``). A room without a row for a user
    has been read up to offset 0.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_read_cursors"
    )
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="read_cursors")
    offset = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "room"], name="chat_read_cursor_user_room"),
        ]

    def __str__(self) -> str:
        return f"user {self.user_id} read room {self.room_id} to #{self.offset}"


class MailPreference(models.Model):
    """A user's choice about chat mail. Without a row, missed-message mail is on (opt-out)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_mail_preference"
    )
    missed_messages = models.BooleanField(
        default=True,
        help_text="Mail a summary of unread messages in the user's rooms while they are away.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        state = "on" if self.missed_messages else "off"
        return f"missed-message mail {state} for user {self.user_id}"


class MissedMessageMail(models.Model):
    """The last missed-message mail a user got about a room: when (at most one per
    ``MISSED_MAIL_PERIOD_SECONDS``) and up to which offset it listed (later mails list only
    newer messages). Claimed with a conditional write before the mail goes out
    (``chat.missed_mail``), so two leaders overlapping never both send."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_missed_mails"
    )
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="missed_mails")
    sent_at = models.DateTimeField()
    offset = models.PositiveBigIntegerField(help_text="the newest message offset listed")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "room"], name="chat_missed_mail_user_room"),
        ]

    def __str__(self) -> str:
        return f"mail to user {self.user_id} about room {self.room_id} up to #{self.offset}"
