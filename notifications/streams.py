"""The ``user:<id>`` stream kind: a user's inbox, durable (offset = the per-user sequence).

Events:
    ``notification.created`` (durable): ``notification_data`` with ``unread``.
    ``notification.unread`` (snapshot on subscribe, and after marking read): ``{unread: int}``.
Only the user may subscribe to their own stream.
"""

from __future__ import annotations

from realtime.protocol import ErrorCode, ProtocolError
from realtime.registry import AnyUser, Event, register_stream

from . import selectors
from .models import Inbox


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
