"""Writes of the chat app. Each runs in one transaction and publishes after commit."""

from __future__ import annotations

from functools import partial

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from realtime.publish import publish

from .models import Message, Room
from .selectors import message_event_data, room_is_member

MAX_TEXT_LENGTH = 4000
MAX_CLIENT_ID_LENGTH = 64
ROOM_NAME_MAX = 60


def _user_data(user: User) -> dict[str, object]:
    return {"id": user.pk, "username": user.get_username()}


def message_create(
    *,
    user: AbstractBaseUser | AnonymousUser,
    room_id: int,
    text: object,
    client_id: object = "",
) -> Message:
    """Store a message and publish ``chat.message`` on ``chat:room:<id>`` after commit.

    The room row is locked (PostgreSQL) or the database write-locked (SQLite, IMMEDIATE
    transactions) while its ``last_offset`` is incremented, so offsets are gapless and unique.

    Raises:
        ValidationError: ``text`` is not a non-blank string of at most 4,000 characters, or
            ``client_id`` is not a string of at most 64.
        PermissionDenied: anonymous user, or a non-member of a private room.
        Room.DoesNotExist: no such room.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("text must be a non-empty string")
    text = text.strip()
    if len(text) > MAX_TEXT_LENGTH:
        raise ValidationError(f"text must be at most {MAX_TEXT_LENGTH} characters")
    if client_id is None:
        client_id = ""
    if not isinstance(client_id, str) or len(client_id) > MAX_CLIENT_ID_LENGTH:
        raise ValidationError(f"client_id must be a string of at most {MAX_CLIENT_ID_LENGTH}")
    if not user.is_authenticated:
        raise PermissionDenied("sign in to send messages")
    assert isinstance(user, User)
    with transaction.atomic():
        room = Room.objects.select_for_update().get(pk=room_id)
        if room.is_private and not room_is_member(user=user, room=room):
            raise PermissionDenied("this room is private to its members")
        room.last_offset += 1
        room.save(update_fields=["last_offset"])
        message = Message.objects.create(
            room=room, author=user, text=text, offset=room.last_offset, client_id=client_id
        )
        transaction.on_commit(
            partial(
                publish,
                room.stream,
                "chat.message",
                message_event_data(message),
                offset=message.offset,
            )
        )
    return message


def room_join(*, user: User, room_id: int) -> Room:
    """Make ``user`` a member of a public room; publish ``chat.member_joined`` if new.

    Raises:
        Room.DoesNotExist: no such room.
        PermissionDenied: the room is private (members are added by staff).
    """
    with transaction.atomic():
        room = Room.objects.get(pk=room_id)
        if room_is_member(user=user, room=room):
            return room
        if room.is_private:
            raise PermissionDenied("private rooms are joined by invitation")
        room.members.add(user)
        transaction.on_commit(
            partial(publish, room.stream, "chat.member_joined", {"user": _user_data(user)})
        )
    return room


def room_leave(*, user: User, room_id: int) -> Room:
    """Remove ``user`` from a room's members; publish ``chat.member_left`` if they were one.

    Raises:
        Room.DoesNotExist: no such room.
    """
    with transaction.atomic():
        room = Room.objects.get(pk=room_id)
        if not room_is_member(user=user, room=room):
            return room
        room.members.remove(user)
        transaction.on_commit(
            partial(publish, room.stream, "chat.member_left", {"user": _user_data(user)})
        )
    return room


def room_get_or_create_public(*, name: str) -> Room:
    """Return the room called ``name``, creating it as a public room if there is none.

    Raises:
        ValidationError: ``name`` is blank or longer than 60 characters.
    """
    name = name.strip()
    if not name or len(name) > ROOM_NAME_MAX:
        raise ValidationError(f"a room name has 1 to {ROOM_NAME_MAX} characters")
    room, _ = Room.objects.get_or_create(name=name, defaults={"is_private": False})
    return room
