"""Reads of the chat app: which rooms a user sees, messages after an offset, event payloads."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Q, QuerySet

from .models import Message, Room

AnyUser = AbstractBaseUser | AnonymousUser


def room_list_for_user(*, user: User) -> QuerySet[Room]:
    """The rooms ``user`` has joined and every public room, each annotated ``is_member``."""
    membership = Room.members.through.objects.filter(room_id=OuterRef("pk"), user_id=user.id)
    return (
        Room.objects.filter(Q(is_private=False) | Q(members=user))
        .distinct()
        .annotate(is_member=Exists(membership))
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
        Room.DoesNotExist: no such room.
        PermissionDenied: anonymous user, or a non-member of a private room.
    """
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


def message_list_after(*, room_id: int, since: int, limit: int) -> list[Message]:
    """Messages of a room with ``offset > since``, oldest first, at most ``limit``."""
    return list(
        Message.objects.filter(room_id=room_id, offset__gt=since)
        .select_related("author")
        .order_by("offset")[:limit]
    )


def message_list_latest(*, room_id: int, limit: int) -> list[Message]:
    """The newest ``limit`` messages of a room, oldest first (for a page's history)."""
    newest = (
        Message.objects.filter(room_id=room_id).select_related("author").order_by("-offset")[:limit]
    )
    return list(reversed(newest))


def message_event_data(message: Message) -> dict[str, Any]:
    """The ``data`` of a ``chat.message`` event.

    Shape: ``{id: int, room: int, offset: int, author: {id: int, username: str},
    text: str, client_id: str, created_at: str (RFC 3339, UTC)}``.
    """
    return {
        "id": message.pk,
        "room": message.room_id,
        "offset": message.offset,
        "author": {"id": message.author_id, "username": message.author.get_username()},
        "text": message.text,
        "client_id": message.client_id,
        "created_at": message.created_at.isoformat(),
    }
