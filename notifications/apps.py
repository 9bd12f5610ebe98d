from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        # Registers the `user:<id>` stream kind with the core.
        from . import streams  # noqa: F401
