"""Writes of the chat app. Each runs in one transaction and publishes after commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction

from realtime.publish import Published, publish, publish_many

from .models import Message, Room
from .selectors import message_event_data, room_is_member

MAX_TEXT_LENGTH = 4000
MAX_CLIENT_ID_LENGTH = 64
ROOM_NAME_MAX = 60


def _user_data(user: User) -> dict[str, object]:
    return {"id": user.pk, "username": user.get_username()}


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message checked by ``message_check`` and not yet stored."""

    user: User
    room_id: int
    text: str
    client_id: str


def message_check(
    *,
    user: AbstractBaseUser | AnonymousUser,
    room_id: int,
    text: object,
    client_id: object = "",
) -> NewMessage:
    """Validate a message to send (no database access).

    Raises:
        ValidationError: ``text`` is not a non-blank string of at most 4,000 characters, or
            ``client_id`` is not a string of at most 64.
        PermissionDenied: anonymous user.
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
    return NewMessage(user=user, room_id=room_id, text=text, client_id=client_id)


def message_create(
    *,
    user: AbstractBaseUser | AnonymousUser,
    room_id: int,
    text: object,
    client_id: object = "",
) -> Message:
    """Store a message and publish ``chat.message`` on ``chat:room:<id>`` after commit.

    ``message_check``, then ``message_create_many`` with that one message.

    Raises:
        ValidationError: ``text`` is not a non-blank string of at most 4,000 characters, or
            ``client_id`` is not a string of at most 64.
        PermissionDenied: anonymous user, or a non-member of a private room.
        Room.DoesNotExist: no such room.
        DatabaseError: the database failed; nothing was stored.
    """
    checked = message_check(user=user, room_id=room_id, text=text, client_id=client_id)
    (result,) = message_create_many([checked])
    if isinstance(result, Exception):
        raise result
    return result


def message_create_many(batch: Sequence[NewMessage]) -> list[Message | Exception]:
    """Store checked messages, in order, in one transaction (group commit); publish each
    ``chat.message`` after commit, in offset order per room.

    Per room, one ``UPDATE ... RETURNING`` takes as many offsets as the batch has messages
    for it: the row stays locked (PostgreSQL) or the database write-locked (SQLite, IMMEDIATE
    transactions) until commit, so a room's offsets are gapless and unique, and a rollback
    gives them back. Rooms are taken in id order, so two batches never wait on each other
    in a cycle (PostgreSQL deadlocks). Then one multi-row ``INSERT`` for the whole batch.
    Statements for a batch of n messages in r public rooms: r + 2 (with the commit), where
    one transaction per message took 3n: the database thread that every socket shares
    spends its time on a few statements and one commit per batch (docs/performance.md).

    Returns, for each message in ``batch``, the stored ``Message`` or the exception that
    refused it: ``Room.DoesNotExist`` (no such room), ``PermissionDenied`` (a non-member of
    a private room). The others are stored all the same.

    Raises:
        DatabaseError: the database failed; nothing of the batch was stored.
    """
    results: list[Message | Exception | None] = [None] * len(batch)
    by_room: dict[int, list[int]] = {}
    for index, item in enumerate(batch):
        by_room.setdefault(item.room_id, []).append(index)
    messages: list[Message] = []
    with transaction.atomic():
        for room_id in sorted(by_room):
            indexes = by_room[room_id]
            taken = _take_offsets(room_id, len(indexes))
            if taken is None:
                for index in indexes:
                    results[index] = Room.DoesNotExist(f"no room {room_id}")
                continue
            last, is_private = taken
            if is_private:
                members = _members(room_id, {batch[i].user.pk for i in indexes})
                refused = [i for i in indexes if batch[i].user.pk not in members]
                for index in refused:
                    results[index] = PermissionDenied("this room is private to its members")
                if refused:
                    indexes = [i for i in indexes if i not in refused]
                    last -= len(refused)
                    Room.objects.filter(pk=room_id).update(last_offset=last)
            first = last - len(indexes) + 1
            for offset, index in enumerate(indexes, start=first):
                item = batch[index]
                message = Message(
                    room_id=room_id,
                    author=item.user,
                    text=item.text,
                    offset=offset,
                    client_id=item.client_id,
                )
                results[index] = message
                messages.append(message)
        if messages:
            Message.objects.bulk_create(messages)
            events = [
                Published(f"chat:room:{m.room_id}", "chat.message", message_event_data(m), m.offset)
                for m in messages
            ]
            transaction.on_commit(partial(publish_many, events))
    return [r for r in results if r is not None]  # every index was given its result


def _take_offsets(room_id: int, count: int) -> tuple[int, bool] | None:
    """Add ``count`` to the room's ``last_offset`` inside the caller's transaction; return
    the new ``last_offset`` and whether the room is private, or None if there is no room.

    One statement, where a locking read and a write took two. The ORM's ``update()``
    returns no values, hence SQL (``RETURNING``: PostgreSQL; SQLite 3.35+).
    """
    table = connection.ops.quote_name(Room._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_offset = last_offset + %s WHERE id = %s"
            " RETURNING last_offset, is_private",
            [count, room_id],
        )
        row = cursor.fetchone()
    return None if row is None else (int(row[0]), bool(row[1]))


def _members(room_id: int, user_ids: set[int]) -> set[int]:
    """Which of ``user_ids`` are members of the room (one query)."""
    through = Room.members.through.objects
    return set(
        through.filter(room_id=room_id, user_id__in=user_ids).values_list("user_id", flat=True)
    )


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
