from django.contrib import admin

from .models import Message, Room


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin[Room]):
    list_display = ["name", "is_private", "last_offset", "created_at"]
    list_filter = ["is_private"]
    search_fields = ["name"]
    filter_horizontal = ["members"]
    readonly_fields = ["last_offset", "created_at"]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin[Message]):
    list_display = ["room", "offset", "author", "text", "created_at"]
    list_filter = ["room"]
    search_fields = ["text", "author__username"]
    list_select_related = ["room", "author"]
    raw_id_fields = ["author"]
    readonly_fields = ["offset", "created_at"]
