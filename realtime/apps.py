from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core import checks


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Real-time core"

    def ready(self) -> None:
        checks.register(check_secret_key, checks.Tags.security, deploy=False)
        from .background import register_service
        from .presence import run_heartbeat, run_reaper
        from .workers import run_flusher

        # Every process writes its socket and user counts for the whole deployment to see.
        register_service("worker-stats", run_flusher, leader_only=False)
        # Every process keeps its sockets' presence entries alive; the leader announces the
        # users of a worker that died as gone.
        register_service("presence-heartbeat", run_heartbeat, leader_only=False)
        register_service("presence-reaper", run_reaper, leader_only=True)


def check_secret_key(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Warn when the built-in development SECRET_KEY signs sessions and tokens in production."""
    from django.conf import settings

    if not settings.DEBUG and settings.SECRET_KEY == settings.INSECURE_DEV_SECRET_KEY:
        return [
            checks.Warning(
                "SECRET_KEY is the built-in development key.",
                hint="Set SECRET_KEY in the environment or in .env (./run writes one).",
                id="townsquare.W001",
            )
        ]
    return []
