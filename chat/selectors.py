"""Reads of the chat app: which rooms a user sees, messages after an offset, event payloads."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, Max, OuterRef, Prefetch, Q, QuerySet, Value

from .models import Message, MessageChange, Reaction, Room

AnyUser = AbstractBaseUser | AnonymousUser

#: Largest id a room can have: a signed 64-bit integer (``BigAutoField``; SQLite's INTEGER).
#: Larger ids from a URL or a frame name no room, and are refused before any query (a raw
#: query with one fails with ``OverflowError`` on SQLite, a 500).
ROOM_ID_MAX = 2**63 - 1
#: Longest room name stored (``Room.name``'s ``max_length``).
ROOM_NAME_LOOKUP_MAX = 60


def room_id_valid(room_id: object) -> bool:
    """True when ``room_id`` is an int (not a bool) in ``1..ROOM_ID_MAX``."""
    return type(room_id) is int and 1 <= room_id <= ROOM_ID_MAX


def room_name_lookup_valid(name: object) -> bool:
    """True when ``name`` could be a stored room's name: a string of 1 to 60 characters with
    no control character or lone surrogate (PostgreSQL refuses NUL in text, and UTF-8 has
    no surrogates: either would be a 500 from the query, not "no such room")."""
    return (
        isinstance(name, str)
        and 1 <= len(name) <= ROOM_NAME_LOOKUP_MAX
        and not any(c < " " or "\x7f" <= c <= "\x9f" or "\ud800" <= c <= "\udfff" for c in name)
    )


def room_get_by_name(*, name: object) -> Room:
    """The room called exactly ``name``, else the oldest whose name equals it ignoring case.

    No access check: pair it with ``room_get_readable``.

    Raises:
        Room.DoesNotExist: no such room, or ``name`` fails ``room_name_lookup_valid`` (then
            without a query).
    """
    if not room_name_lookup_valid(name):
        raise Room.DoesNotExist("not a room name")
    room = Room.objects.filter(name=name).first()
    if room is None:
        room = Room.objects.filter(name__iexact=name).order_by("pk").first()
    if room is None:
        raise Room.DoesNotExist(f"no room called {name!r}")
    return room


def room_list_for_user(*, user: User) -> QuerySet[Room]:
    """The rooms ``user`` has joined and every public room, each annotated ``is_member``."""
    membership = Room.members.through.objects.filter(room_id=OuterRef("pk"), user_id=user.id)
    return (
        Room.objects.filter(Q(is_private=False) | Q(members=user))
        .distinct()
        .annotate(is_member=Exists(membership))
        .order_by("name")
    )


def room_list_joined(*, user: User) -> QuerySet[Room]:
    """The rooms ``user`` is a member of, by name, each annotated ``is_member`` (True)."""
    return user.rooms_joined.annotate(is_member=Value(True)).order_by("name")


def room_list_public_not_joined(*, user: User) -> QuerySet[Room]:
    """The public rooms ``user`` is not a member of, by name, annotated ``is_member`` (False)."""
    membership = Room.members.through.objects.filter(room_id=OuterRef("pk"), user_id=user.id)
    return (
        Room.objects.filter(is_private=False)
        .exclude(Exists(membership))
        .annotate(is_member=Value(False))
        .order_by("name")
    )


def room_is_member(*, user: AnyUser, room: Room) -> bool:
    """True when ``user`` is a member of ``room`` (one query)."""
    if not user.is_authenticated or user.pk is None:
        return False
    return room.members.filter(pk=user.pk).exists()


def room_get_readable(*, user: AnyUser, room_id: int) -> Room:
    """Return the room if ``user`` may read it: signed in, and a member if it is private.

    Raises:
        Room.DoesNotExist: no such room (an id outside ``1..ROOM_ID_MAX``: without a query).
        PermissionDenied: anonymous user, or a non-member of a private room.
    """
    if not room_id_valid(room_id):
        raise Room.DoesNotExist(f"no room {room_id}")
    room = Room.objects.get(pk=room_id)
    if not user.is_authenticated:
        raise PermissionDenied("sign in to read rooms")
    if room.is_private and not room_is_member(user=user, room=room):
        raise PermissionDenied("this room is private to its members")
    return room


def room_member_names(*, room: Room) -> list[dict[str, Any]]:
    """The members of ``room`` as ``[{id, username}]``, by username."""
    return [
        {"id": pk, "username": username}
        for pk, username in room.members.order_by("username").values_list("id", "username")
    ]


def reactions_prefetch() -> Prefetch:
    """``prefetch_related`` argument for ``message_event_data``: every reaction of the
    messages listed, in one query, oldest first (so ``message_reactions`` needs none)."""
    return Prefetch("reactions", queryset=Reaction.objects.order_by("created_at", "pk"))


def message_queryset() -> QuerySet[Message]:
    """Messages with what ``message_event_data`` reads: the author (joined) and the
    reactions (one more query for the whole list, whatever its length)."""
    return Message.objects.select_related("author").prefetch_related(reactions_prefetch())


def message_list_after(*, room_id: int, since: int, limit: int) -> list[Message]:
    """Messages of a room with ``offset > since``, oldest first, at most ``limit``."""
    return list(
        message_queryset().filter(room_id=room_id, offset__gt=since).order_by("offset")[:limit]
    )


def message_list_latest(*, room_id: int, limit: int) -> list[Message]:
    """The newest ``limit`` messages of a room, oldest first (for a page's history)."""
    newest = message_queryset().filter(room_id=room_id).order_by("-offset")[:limit]
    return list(reversed(newest))


def change_list_after(*, room_id: int, since: int, limit: int) -> list[MessageChange]:
    """Changes (edits, deletes, reactions) of a room with ``offset > since``, oldest first,
    at most ``limit``."""
    return list(
        MessageChange.objects.filter(room_id=room_id, offset__gt=since).order_by("offset")[:limit]
    )


def message_reactions(message: Message) -> dict[str, list[int]]:
    """A message's reactions now: ``{emoji: [user id, …]}``, emojis in the order of their
    first reaction, users in the order they reacted; ``{}`` for a deleted message.

    Reads the prefetched reactions (``message_queryset``) when there are; else one query.
    """
    cache = getattr(message, "_prefetched_objects_cache", {})
    rows = (
        cache["reactions"]
        if "reactions" in cache
        else message.reactions.order_by("created_at", "pk")
    )
    grouped: dict[str, list[int]] = {}
    for reaction in rows:
        grouped.setdefault(reaction.emoji, []).append(reaction.user_id)
    return grouped


def message_latest_offset(message: Message) -> int:
    """The offset of the message's latest event: its newest change's, else its own."""
    newest = MessageChange.objects.filter(message=message).aggregate(newest=Max("offset"))
    return max(message.offset, newest["newest"] or 0)


def message_event_data(
    message: Message, *, reactions: dict[str, list[int]] | None = None
) -> dict[str, Any]:
    """The ``data`` of a ``chat.message`` event: the message's current state.

    Shape: ``{id: int, room: int, offset: int, author: {id: int, username: str},
    text: str, client_id: str, created_at: str (RFC 3339, UTC), edited_at: str | None,
    deleted: bool, reactions: {emoji: [user id]}}``; a deleted message's ``text`` is ``""``.
    ``reactions`` given (``{}`` for a message just stored) saves looking them up
    (``message_reactions``: the prefetched ones, else a query).
    """
    if reactions is None:
        reactions = message_reactions(message)
    return {
        "id": message.pk,
        "room": message.room_id,
        "offset": message.offset,
        "author": {"id": message.author_id, "username": message.author.get_username()},
        "text": message.text,
        "client_id": message.client_id,
        "created_at": message.created_at.isoformat(),
        "edited_at": None if message.edited_at is None else message.edited_at.isoformat(),
        "deleted": message.deleted_at is not None,
        "reactions": reactions,
    }
