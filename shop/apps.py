from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "shop"
    verbose_name = "Shop"

    def ready(self) -> None:
        # Registers the `shop:item` stream kind with the core.
        from . import streams  # noqa: F401
