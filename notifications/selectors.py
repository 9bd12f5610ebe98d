"""Reads of the inbox: lists, unread counts, event payloads."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Count, QuerySet

from .models import Notification


def notification_list(*, user_id: int) -> QuerySet[Notification]:
    """A user's notifications, newest first."""
    return Notification.objects.filter(recipient_id=user_id).order_by("-id")


def unread_count(*, user_id: int) -> int:
    """How many of a user's notifications are unread."""
    return Notification.objects.filter(recipient_id=user_id, read_at__isnull=True).count()


def unread_counts(*, user_ids: Iterable[int]) -> dict[int, int]:
    """Unread counts of many users in one query (users with none are absent)."""
    rows = (
        Notification.objects.filter(recipient_id__in=list(user_ids), read_at__isnull=True)
        .values("recipient_id")
        .annotate(n=Count("id"))
        .values_list("recipient_id", "n")
    )
    return dict(rows)


def notification_list_after(*, user_id: int, since: int, limit: int) -> list[Notification]:
    """A user's notifications with ``offset > since``, oldest first, at most ``limit``."""
    return list(
        Notification.objects.filter(recipient_id=user_id, offset__gt=since).order_by("offset")[
            :limit
        ]
    )


def notification_data(notification: Notification, *, unread: int | None = None) -> dict[str, Any]:
    """The ``data`` of a ``notification.created`` event and the API's notification shape.

    Shape: ``{id: int, offset: int, kind: str, title: str, body: str, data: object,
    url: str, created_at: str (RFC 3339), read_at: str | null, unread?: int}`` — ``url`` is
    the path the notification leads to ("" for none); ``unread`` is the recipient's unread
    count right after this notification, on live events only.
    """
    payload: dict[str, Any] = {
        "id": notification.pk,
        "offset": notification.offset,
        "kind": notification.kind,
        "title": notification.title,
        "body": notification.body,
        "data": notification.data,
        "url": notification.url,
        "created_at": notification.created_at.isoformat(),
        "read_at": notification.read_at.isoformat() if notification.read_at else None,
    }
    if unread is not None:
        payload["unread"] = unread
    return payload
