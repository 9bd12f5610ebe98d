"""The ``user:<id>`` stream kind: a user's inbox, durable (offset = the per-user sequence).

Events:
    ``notification.created`` (durable): ``notification_data`` with ``unread``.
    ``notification.unread`` (snapshot on subscribe, and after marking read): ``{unread: int}``.
Only the user may subscribe to their own stream.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from realtime.events import Payload, declare, describe_kind
from realtime.protocol import ErrorCode, ProtocolError
from realtime.registry import AnyUser, Event, register_stream

from . import selectors
from .models import Inbox

RFC3339 = msgspec.Meta(extra_json_schema={"format": "date-time"})


class NotificationCreated(Payload):
    """``notification.created`` data (``selectors.notification_data``)."""

    id: int
    #: Equals the frame's ``offset``.
    offset: int
    kind: str
    title: str
    body: str
    #: Kind-specific; for ``stock``: ``{item, quantity}``.
    data: dict[str, Any]
    #: Where it leads, a path on this site (``/shop/item/3/`` for ``stock``); "" for nowhere.
    url: str
    created_at: Annotated[str, RFC3339]
    read_at: Annotated[str, RFC3339] | None
    #: The unread count right after this notification; live events only.
    unread: int | msgspec.UnsetType = msgspec.UNSET


class Unread(Payload):
    """``notification.unread`` data."""

    unread: int


describe_kind(
    "user", address="user:{id}", description="A user's notification inbox; the owner only."
)
declare(
    "user",
    "notification.created",
    NotificationCreated,
    durable=True,
    summary="A notification, at its offset: the user's inbox sequence, 1, 2, 3, … no gaps.",
)
declare(
    "user",
    "notification.unread",
    Unread,
    snapshot=True,
    summary="The unread count: snapshot on every subscribe, and after marking read.",
)


def _user_id(key: str) -> int:
    if not key.isdigit():
        raise ProtocolError(ErrorCode.NOT_FOUND, "user streams are named user:<id>")
    return int(key)


def authorize_user_stream(user: AnyUser, key: str) -> None:
    """Only the owner of an inbox may read it."""
    if not user.is_authenticated:
        raise ProtocolError(ErrorCode.UNAUTHENTICATED, "sign in to read your notifications")
    if user.pk != _user_id(key):
        raise ProtocolError(ErrorCode.FORBIDDEN, "this is another user's inbox")


def replay_user_stream(key: str, since: int, limit: int) -> list[Event]:
    """The user's notifications with offset > ``since``, oldest first."""
    found = selectors.notification_list_after(user_id=_user_id(key), since=since, limit=limit)
    return [Event("notification.created", selectors.notification_data(n), n.offset) for n in found]


def snapshot_user_stream(user: AnyUser, key: str) -> list[Event]:
    """The unread count."""
    return [Event("notification.unread", {"unread": selectors.unread_count(user_id=_user_id(key))})]


def head_user_stream(key: str) -> int:
    """The inbox's newest offset."""
    offset = Inbox.objects.filter(pk=_user_id(key)).values_list("last_offset", flat=True).first()
    return offset or 0


register_stream(
    "user",
    authorize=authorize_user_stream,
    replay=replay_user_stream,
    snapshot=snapshot_user_stream,
    head=head_user_stream,
)
