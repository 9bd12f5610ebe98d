"""Seed-compatible WebSocket routes of the chat app."""

from django.urls import path, re_path

from .consumers import SeedChatConsumer

websocket_urlpatterns = [
    path("ws/chat/room/<int:room_id>", SeedChatConsumer.as_asgi()),
    path("ws/chat/room/<int:room_id>/", SeedChatConsumer.as_asgi()),
    re_path(r"^ws/chat/(?P<room_name>[\w-]{1,60})/$", SeedChatConsumer.as_asgi()),
]
