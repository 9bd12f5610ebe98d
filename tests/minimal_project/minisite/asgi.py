"""ASGI entry point: HTTP through Django; ``/ws/`` through the real-time core's stack."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "minisite.settings")
# Set Django up (the app registry) before importing the consumers, which import models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from realtime.lifespan import LifespanMiddleware  # noqa: E402
from realtime.middleware import SocketAuthMiddleware  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402

application = LifespanMiddleware(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": AllowedHostsOriginValidator(
                SocketAuthMiddleware(URLRouter(websocket_urlpatterns))
            ),
        }
    )
)
