from __future__ import annotations

from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Real-time core"

    def ready(self) -> None:
        # Imported here, not at the top: Django imports this module while it loads the apps,
        # before the models exist, and these modules reach the ORM (presence, worker
        # statistics) or settings; not for an import cycle.
        from .background import register_service
        from .presence import run_heartbeat, run_reaper
        from .signout import run_listener
        from .signout_receivers import connect as connect_signout
        from .worker_stats import run_flusher

        # Every process writes its socket and user counts for the whole deployment to see.
        register_service("worker-stats", run_flusher, leader_only=False)
        # Every process keeps its sockets' presence entries alive; the leader announces the
        # users of a worker that died as gone.
        register_service("presence-heartbeat", run_heartbeat, leader_only=False)
        register_service("presence-reaper", run_reaper, leader_only=True)
        # The leader deletes the HTTP API's expired idempotency keys.
        from .idempotency import run_expiry

        register_service("idempotency-expiry", run_expiry, leader_only=True)
        # Sockets end with the sign-in: Django's logout and the user model's saves and
        # deletions become sign-outs, which every process hears from startup on.
        connect_signout()
        register_service("signout-listener", run_listener, leader_only=False)
