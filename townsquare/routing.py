"""All WebSocket routes: the native protocol and the seed-compatible endpoints."""

from chat.routing import websocket_urlpatterns as chat_patterns
from dashboard.routing import websocket_urlpatterns as dashboard_patterns
from realtime.routing import websocket_urlpatterns as realtime_patterns
from shop.routing import websocket_urlpatterns as shop_patterns

websocket_urlpatterns = realtime_patterns + chat_patterns + shop_patterns + dashboard_patterns
