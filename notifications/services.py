"""Writes of the inbox. Notifications are created in the caller's transaction and pushed after
it commits, one frame per recipient stream, with no query per recipient."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from realtime.publish import Published, publish, publish_many

from .models import Inbox, Notification
from .selectors import notification_data, unread_count, unread_counts


def user_stream(user_id: int) -> str:
    """The stream of a user's inbox, ``user:<id>``."""
    return f"user:{user_id}"


def notifications_create(
    *,
    recipient_ids: Iterable[int],
    kind: str,
    title: str,
    body: str = "",
    data: dict[str, Any] | None = None,
    url: str = "",
) -> list[Notification]:
    """Create one notification per recipient and push each after commit.

    ``url`` is where the notification leads, a path on this site (``/shop/item/3/``) that the
    inbox and the toasts link its title to; "" for nowhere.

    The same few queries whatever the number of recipients: create missing inbox counters,
    lock the counters (in user-id order, so that writers with overlapping recipients queue
    instead of deadlocking), advance them all in one UPDATE, read the new offsets back, insert
    the notifications in bulk. After commit each recipient's stream gets
    ``notification.created`` at its new offset, with the recipient's unread count.
    """
    recipients = sorted(set(recipient_ids))
    if not recipients:
        return []
    with transaction.atomic():
        Inbox.objects.bulk_create([Inbox(user_id=r) for r in recipients], ignore_conflicts=True)
        counters = Inbox.objects.filter(user_id__in=recipients)
        list(counters.select_for_update().order_by("user_id").values_list("user_id", flat=True))
        counters.update(last_offset=F("last_offset") + 1)
        offsets = dict(counters.values_list("user_id", "last_offset"))
        created = Notification.objects.bulk_create(
            [
                Notification(
                    recipient_id=r,
                    kind=kind,
                    title=title,
                    body=body,
                    data=data or {},
                    url=url,
                    offset=offsets[r],
                )
                for r in recipients
            ]
        )
        transaction.on_commit(partial(_push_created, created))
    return created


# Not publish_on_commit: the unread counts these events carry are read after the commit, so
# that concurrent writers (a mark-read on another socket) are counted; a count read inside
# the transaction could be stale by the time the event leaves. The events are still checked
# against their declarations by publish/publish_many.
def _push_created(created: list[Notification]) -> None:
    counts = unread_counts(user_ids=[n.recipient_id for n in created])
    publish_many(
        Published(
            user_stream(n.recipient_id),
            "notification.created",
            notification_data(n, unread=counts.get(n.recipient_id, 0)),
            n.offset,
        )
        for n in created
    )


def _push_unread(user_id: int) -> None:
    publish(user_stream(user_id), "notification.unread", {"unread": unread_count(user_id=user_id)})


def notification_mark_read(*, user_id: int, notification_id: int) -> Notification:
    """Mark one of the user's notifications read; push the new unread count.

    Raises:
        Notification.DoesNotExist: no such notification for this user.
    """
    with transaction.atomic():
        notification = Notification.objects.select_for_update().get(
            pk=notification_id, recipient_id=user_id
        )
        if notification.read_at is None:
            notification.read_at = timezone.now()
            notification.save(update_fields=["read_at"])
            transaction.on_commit(partial(_push_unread, user_id))
    return notification


def notification_mark_all_read(*, user_id: int) -> int:
    """Mark all the user's notifications read; push the count (0). Returns how many changed."""
    with transaction.atomic():
        changed = Notification.objects.filter(recipient_id=user_id, read_at__isnull=True).update(
            read_at=timezone.now()
        )
        if changed:
            transaction.on_commit(partial(_push_unread, user_id))
    return changed
