from django.contrib import admin

from .models import Notification


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin[Notification]):
    list_display = ["recipient", "kind", "title", "created_at", "read_at"]
    list_filter = ["kind", "read_at"]
    search_fields = ["title", "recipient__username"]
    list_select_related = ["recipient"]
    raw_id_fields = ["recipient"]
