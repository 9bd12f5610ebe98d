"""ASGI entry point: HTTP through Django, WebSockets through Channels.

The lifespan middleware starts the background services (worker stats, and on the leader
the feed ticker and the dashboard publisher) with the server. ``GET /sse/`` and its POSTs
are served by ``realtime.sse`` (the ``/ws/`` consumer over Server-Sent Events), every
other HTTP request by Django. WebSocket connections pass
the origin check (``AllowedHostsOriginValidator``: the Origin header must name one of
``ALLOWED_HOSTS``), then sign-in by token or session (``SocketAuthMiddleware``).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "townsquare.settings")
# Set up Django (and the app registry) before importing consumers that import models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from realtime.lifespan import LifespanMiddleware  # noqa: E402
from realtime.middleware import SocketAuthMiddleware  # noqa: E402
from realtime.sse import SSEMiddleware  # noqa: E402
from townsquare.routing import websocket_urlpatterns  # noqa: E402

application = LifespanMiddleware(
    ProtocolTypeRouter(
        {
            # /sse/: the same protocol over Server-Sent Events (realtime.sse).
            "http": SSEMiddleware(django_asgi_app),
            "websocket": AllowedHostsOriginValidator(
                SocketAuthMiddleware(URLRouter(websocket_urlpatterns))
            ),
        }
    )
)
