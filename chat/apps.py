from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        # Registers the `chat:room` stream kind and the `chat.send` action with the core, and
        # the membership receiver that revokes removed members' subscriptions.
        from realtime.background import register_service

        from . import receivers, streams  # noqa: F401
        from .missed_mail import run_missed_mail

        # Missed-message mail: one leader per deployment looks every minute (chat.missed_mail).
        register_service("missed-mail", run_missed_mail, leader_only=True)
