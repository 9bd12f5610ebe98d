from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Dashboard"

    def ready(self) -> None:
        # Registers the `dashboard` and `feed` streams, the change receivers and the leader's
        # background services.
        from realtime.background import register_service

        from . import receivers, streams  # noqa: F401
        from .publisher import run_dashboard_publisher
        from .ticker import run_feed_ticker

        register_service("dashboard-publisher", run_dashboard_publisher, leader_only=True)
        register_service("feed-ticker", run_feed_ticker, leader_only=True)
