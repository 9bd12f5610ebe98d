"""Writes of the chat app. Each runs in one transaction and publishes after commit."""

from __future__ import annotations

from functools import partial

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction

from realtime.publish import publish

from .models import Message, Room
from .selectors import message_event_data, room_is_member

MAX_TEXT_LENGTH = 4000
MAX_CLIENT_ID_LENGTH = 64
ROOM_NAME_MAX = 60


def _user_data(user: User) -> dict[str, object]:
    return {"id": user.pk, "username": user.get_username()}


def _take_offset(room_id: int) -> tuple[int, bool]:
    """Increment the room's ``last_offset`` inside the caller's transaction; return the new
    offset and whether the room is private.

    One ``UPDATE ... RETURNING`` statement (PostgreSQL; SQLite 3.35+) instead of a locking
    read and a write: the row stays locked (PostgreSQL) or the database write-locked
    (SQLite) until the transaction ends, so the offsets of one room are gapless and unique,
    and a rollback gives the offset back. The ORM's ``update()`` returns no values, hence SQL.

    Raises:
        Room.DoesNotExist: no such room.
    """
    table = connection.ops.quote_name(Room._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_offset = last_offset + 1 WHERE id = %s"
            " RETURNING last_offset, is_private",
            [room_id],
        )
        row = cursor.fetchone()
    if row is None:
        raise Room.DoesNotExist(f"no room {room_id}")
    return int(row[0]), bool(row[1])


def message_create(
    *,
    user: AbstractBaseUser | AnonymousUser,
    room_id: int,
    text: object,
    client_id: object = "",
) -> Message:
    """Store a message and publish ``chat.message`` on ``chat:room:<id>`` after commit.

    The room row is locked (PostgreSQL) or the database write-locked (SQLite, IMMEDIATE
    transactions) from the increment of its ``last_offset`` to the commit, so offsets are
    gapless and unique. Four statements: the increment, the membership check of a private
    room, the insert, the commit.

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
        offset, is_private = _take_offset(room_id)
        if (
            is_private
            and not Room.members.through.objects.filter(room_id=room_id, user_id=user.pk).exists()
        ):
            raise PermissionDenied("this room is private to its members")  # rolls back
        message = Message(
            room_id=room_id, author=user, text=text, offset=offset, client_id=client_id
        )
        message.save(force_insert=True)
        transaction.on_commit(
            partial(
                publish,
                f"chat:room:{room_id}",
                "chat.message",
                message_event_data(message),
                offset=offset,
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
