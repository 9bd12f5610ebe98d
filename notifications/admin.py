"""The inbox's admin page. Writes go through ``notifications.services``.

- ``Notification``: added through ``notifications_create`` (the recipient's next offset on
  ``user:<id>``, ``notification.created`` with the unread count after commit). Marked read by
  the "Mark as read" action (``notification_mark_read``: the recipient's bell updates at
  once). Otherwise read-only and never deleted: an edit would reach no open page and no
  replay, and a deletion would leave a hole in the recipient's gapless offsets.
- ``Inbox`` (the per-user offset counter) is not shown: only ``notifications_create``
  advances it.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from . import services
from .models import Notification


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin[Notification]):
    """Notifications: added through ``notifications_create``, marked read by an action,
    otherwise read-only; see the module's docstring."""

    list_display = ["recipient", "offset", "kind", "title", "created_at", "read_at"]
    list_filter = ["kind", "read_at"]
    search_fields = ["title", "recipient__username"]
    list_select_related = ["recipient"]
    raw_id_fields = ["recipient"]
    actions = ["mark_read"]

    def get_fields(self, request: HttpRequest, obj: Notification | None = None) -> tuple[str, ...]:
        """What a new notification says; everything, read-only, to view one."""
        fields = ("recipient", "kind", "title", "body", "data")
        return fields if obj is None else (*fields, "offset", "created_at", "read_at")

    def has_change_permission(self, request: HttpRequest, obj: Notification | None = None) -> bool:
        """Never: no event tells an open inbox or a replay that a notification changed."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Notification | None = None) -> bool:
        """Never: a deleted notification is a hole in the recipient's offsets."""
        return False

    def save_model(self, request: HttpRequest, obj: Notification, form: Any, change: bool) -> None:
        """Called to store a new notification: ``notifications_create``."""
        (made,) = services.notifications_create(
            recipient_ids=[obj.recipient_id],
            kind=obj.kind,
            title=obj.title,
            body=obj.body,
            data=obj.data,
        )
        for field in ("pk", "offset", "created_at"):
            setattr(obj, field, getattr(made, field))

    @admin.action(description="Mark as read (updates the recipient's bell)")
    def mark_read(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        """``notification_mark_read`` for each selected unread notification."""
        unread = list(queryset.filter(read_at__isnull=True).values_list("pk", "recipient_id"))
        for pk, recipient_id in unread:
            services.notification_mark_read(user_id=recipient_id, notification_id=pk)
        self.message_user(request, f"{len(unread)} marked as read.", messages.SUCCESS)
