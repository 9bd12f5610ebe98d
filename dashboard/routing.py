"""Seed-compatible WebSocket route of the dashboard."""

from django.urls import path

from .consumers import SeedFeedConsumer

websocket_urlpatterns = [path("ws/test/", SeedFeedConsumer.as_asgi())]
