from django.apps import AppConfig


class BoardConfig(AppConfig):
    name = "board"

    def ready(self) -> None:
        from . import streams  # noqa: F401  (registers the board stream kind and its action)
