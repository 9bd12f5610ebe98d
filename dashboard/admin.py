from django.contrib import admin

from .models import FeedRecord, FeedSwitch


@admin.register(FeedSwitch)
class FeedSwitchAdmin(admin.ModelAdmin[FeedSwitch]):
    list_display = ["id", "status", "last_tick_at", "changed_at"]


@admin.register(FeedRecord)
class FeedRecordAdmin(admin.ModelAdmin[FeedRecord]):
    list_display = ["id", "text", "created_at"]
