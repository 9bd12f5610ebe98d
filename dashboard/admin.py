"""The feed's admin pages (seed 000's ``Queue`` and ``Random``). Writes go through
``dashboard.services``.

- ``FeedSwitch``: there is one switch (row 1). Turning it on or off here is
  ``feed_switch_set`` (``feed.state`` on the ``feed`` stream after commit, as the dashboard's
  button does). It can be added only while it does not exist yet (then as row 1), and never
  deleted (the ticker and the dashboard read row 1).
- ``FeedRecord``: read-only. Records are the ticker's (``feed_tick``, one per interval,
  ``feed.count`` after commit); one added or deleted here would change the count that open
  pages show without telling them.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.models import User
from django.http import HttpRequest

from . import services
from .models import FeedRecord, FeedSwitch


@admin.register(FeedSwitch)
class FeedSwitchAdmin(admin.ModelAdmin[FeedSwitch]):
    """The feed switch: flipped through ``feed_switch_set``; see the module's docstring."""

    list_display = ["id", "status", "last_tick_at", "changed_at"]
    fields = ["status", "last_tick_at", "changed_at"]
    readonly_fields = ["last_tick_at", "changed_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Only while there is no switch: the feed reads row 1 and no other."""
        return super().has_add_permission(request) and not FeedSwitch.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: FeedSwitch | None = None) -> bool:
        """Never: the ticker and the dashboard read row 1."""
        return False

    def save_model(self, request: HttpRequest, obj: FeedSwitch, form: Any, change: bool) -> None:
        """Called to store the switch: ``feed_switch_set`` (creates row 1 if missing)."""
        assert isinstance(request.user, User)  # the admin admits signed-in staff only
        services.feed_switch_set(on=obj.status == FeedSwitch.ON, actor=request.user)
        stored = FeedSwitch.objects.get(pk=1)
        for field in ("pk", "status", "last_tick_at", "changed_at"):
            setattr(obj, field, getattr(stored, field))


@admin.register(FeedRecord)
class FeedRecordAdmin(admin.ModelAdmin[FeedRecord]):
    """Feed records: read-only; see the module's docstring."""

    list_display = ["id", "text", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Never: records are the ticker's."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: FeedRecord | None = None) -> bool:
        """Never: records are the ticker's."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: FeedRecord | None = None) -> bool:
        """Never: the feed's count would change without telling open pages."""
        return False
