from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        # Registers the `chat:room` stream kind and the `chat.send` action with the core, and
        # the membership receiver that revokes removed members' subscriptions.
        from . import receivers, streams  # noqa: F401
