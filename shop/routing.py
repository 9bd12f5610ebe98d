"""Seed-compatible WebSocket routes of the shop."""

from django.urls import re_path

from .consumers import SeedNotificationCountConsumer

websocket_urlpatterns = [
    re_path(r"^/?notification/count/?$", SeedNotificationCountConsumer.as_asgi()),
]
