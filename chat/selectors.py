"""Reads of the chat app: which rooms a user sees, messages after an offset, event payloads."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.db.models import (
    Count,
    Exists,
    Max,
    Min,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce

from .models import Message, MessageChange, Reaction, ReadCursor, Room

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


def room_can_moderate(*, user: AnyUser, room_id: int) -> bool:
    """True when ``user`` may delete any message of the room: staff, or one of the room's
    moderators (at most one query). The rule ``services.message_delete`` enforces and the
    room page follows when it offers Delete on others' messages."""
    if not user.is_authenticated or user.pk is None:
        return False
    if getattr(user, "is_staff", False):
        return True
    moderators = Room.moderators.through.objects
    return moderators.filter(room_id=room_id, user_id=user.pk).exists()


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


def _with_reactions(room_id: int, messages: list[Message]) -> list[Message]:
    """Attach their reactions to ``messages`` (one room's, oldest first) for
    ``message_reactions``, in one query over the offset range they span.

    Replays list up to ``REPLAY_MAX`` messages: ``prefetch_related`` would build a model
    instance and a filtered queryset per message (it doubled a 1,000-row replay's time);
    plain rows grouped here cost next to nothing, and a room without reactions pays one
    empty indexed lookup.
    """
    if not messages:
        return messages
    rows = (
        Reaction.objects.filter(
            message__room_id=room_id,
            message__offset__gte=messages[0].offset,
            message__offset__lte=messages[-1].offset,
        )
        .order_by("created_at", "pk")
        .values_list("message_id", "emoji", "user_id")
    )
    grouped: dict[int, dict[str, list[int]]] = {}
    for message_id, emoji, user_id in rows:
        grouped.setdefault(message_id, {}).setdefault(emoji, []).append(user_id)
    for message in messages:
        message.reaction_map = grouped.get(message.pk, {})
    return messages


def message_list_after(*, room_id: int, since: int, limit: int) -> list[Message]:
    """Messages of a room with ``offset > since``, oldest first, at most ``limit``, with
    their reactions (two queries)."""
    messages = Message.objects.select_related("author").filter(room_id=room_id, offset__gt=since)
    return _with_reactions(room_id, list(messages.order_by("offset")[:limit]))


def message_list_latest(*, room_id: int, limit: int) -> list[Message]:
    """The newest ``limit`` messages of a room, oldest first (for a page's history), with
    their reactions (two queries)."""
    newest = Message.objects.select_related("author").filter(room_id=room_id)
    return _with_reactions(room_id, list(reversed(newest.order_by("-offset")[:limit])))


def change_list_after(*, room_id: int, since: int, limit: int) -> list[MessageChange]:
    """Changes (edits, deletes, reactions) of a room with ``offset > since``, oldest first,
    at most ``limit``."""
    return list(
        MessageChange.objects.filter(room_id=room_id, offset__gt=since).order_by("offset")[:limit]
    )


def message_reactions(message: Message) -> dict[str, list[int]]:
    """A message's reactions now: ``{emoji: [user id, …]}``, emojis in the order of their
    first reaction, users in the order they reacted; ``{}`` for a deleted message.

    Reads the reactions attached by the list selectors or prefetched (``message_queryset``)
    when there are; else one query.
    """
    attached = message.__dict__.get("reaction_map")
    if attached is not None:
        return attached
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


# --- Read cursors and unread counts (docs/protocol.md, "Read cursors") -----------------------
#
# A user's read cursor in a room is ``ReadCursor.offset`` (0 without a row). Unread are the
# room's messages after it that are not deleted and not the user's own: a user's send never
# counts as unread for them, so sending needs no cursor write (the hot path stays per room).
# Changes (edits, deletes, reactions) take offsets too but are not messages: never unread.


@dataclass(frozen=True, slots=True)
class ReadState:
    """A user's reading of one room: ``last_read`` (offset, 0 = nothing read), ``unread``
    (messages after it, not deleted, not the user's own) and ``first_unread`` (the offset of
    the oldest of those, or None): the room page scrolls there, missed-message mail links
    there."""

    last_read: int
    unread: int
    first_unread: int | None


def _unread_messages(*, user_id: int, room_id: int | Any, after: int | Any) -> QuerySet[Message]:
    """The unread messages of a room for a user: ``offset > after``, not deleted, not theirs
    (``room_id`` and ``after`` may be expressions, for subqueries)."""
    return Message.objects.filter(
        room_id=room_id, offset__gt=after, deleted_at__isnull=True
    ).exclude(author_id=user_id)


def read_cursor_offset(*, user_id: int, room_id: int) -> int:
    """The user's read cursor in the room: the offset read up to, 0 when never read."""
    offset = (
        ReadCursor.objects.filter(user_id=user_id, room_id=room_id)
        .values_list("offset", flat=True)
        .first()
    )
    return offset or 0


def unread_count(*, user_id: int, room_id: int, after: int) -> int:
    """How many of the room's messages after offset ``after`` are unread for the user (one
    query)."""
    return _unread_messages(user_id=user_id, room_id=room_id, after=after).count()


def read_state(*, user: AnyUser, room_id: int) -> ReadState:
    """The user's ``ReadState`` in a room, in two queries (cursor; count with the first
    unread offset). For the room page (scroll to the first unread, a "new" divider) and the
    missed-message mail. No access check: pair it with ``room_get_readable``. An anonymous
    user has read nothing and has nothing unread."""
    if not user.is_authenticated or user.pk is None:
        return ReadState(last_read=0, unread=0, first_unread=None)
    last_read = read_cursor_offset(user_id=user.pk, room_id=room_id)
    found = _unread_messages(user_id=user.pk, room_id=room_id, after=last_read).aggregate(
        unread=Count("pk"), first=Min("offset")
    )
    return ReadState(last_read=last_read, unread=found["unread"], first_unread=found["first"])


def room_annotate_read_state(rooms: QuerySet[Room], *, user: User) -> QuerySet[Room]:
    """Annotate each room with the user's ``last_read`` (int), ``unread`` (int) and
    ``last_message_id`` (the newest message's pk, or None): correlated subqueries, so a page
    of rooms costs the same one query whatever its size (use ``message_map`` for the
    messages themselves, one more)."""
    cursor = ReadCursor.objects.filter(user_id=user.pk, room_id=OuterRef("pk")).values("offset")
    counted = (
        _unread_messages(user_id=user.pk, room_id=OuterRef("pk"), after=OuterRef("last_read"))
        .order_by()
        .values("room_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    newest = Message.objects.filter(room_id=OuterRef("pk")).order_by("-offset").values("pk")[:1]
    return rooms.annotate(
        last_read=Coalesce(Subquery(cursor[:1]), Value(0)),
    ).annotate(
        unread=Coalesce(Subquery(counted), Value(0)),
        last_message_id=Subquery(newest),
    )


def message_map(ids: Iterable[int | None]) -> dict[int, Message]:
    """The messages of ``ids`` (None skipped) by pk, with their authors: one query, none
    when there is no id."""
    wanted = {pk for pk in ids if pk is not None}
    if not wanted:
        return {}
    return {m.pk: m for m in Message.objects.filter(pk__in=wanted).select_related("author")}


def message_preview_data(message: Message | None) -> dict[str, Any] | None:
    """A room's last message as the room list shows it, in its current state: ``{id,
    offset, author: {id, username}, text, created_at, deleted}``; a deleted message is a
    tombstone (``text`` "", ``deleted`` true). None for a room without messages."""
    if message is None:
        return None
    return {
        "id": message.pk,
        "offset": message.offset,
        "author": {"id": message.author_id, "username": message.author.get_username()},
        "text": "" if message.deleted_at is not None else message.text,
        "created_at": message.created_at.isoformat(),
        "deleted": message.deleted_at is not None,
    }
