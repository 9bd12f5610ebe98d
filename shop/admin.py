from typing import Any

from django.contrib import admin
from django.contrib.auth.models import User
from django.http import HttpRequest

from .models import Item, Purchase, Watch


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin[Item]):
    list_display = ["name", "price_cents", "quantity", "version", "updated_at"]
    search_fields = ["name"]
    readonly_fields = ["version", "updated_at"]

    # Stock edited here goes through the service, so watchers are notified and pages update.
    def save_model(self, request: HttpRequest, obj: Item, form: Any, change: bool) -> None:
        if change and "quantity" in form.changed_data:
            assert isinstance(request.user, User)
            from .services import item_stock_set

            quantity = obj.quantity
            obj.quantity = Item.objects.values_list("quantity", flat=True).get(pk=obj.pk)
            super().save_model(request, obj, form, change)
            item_stock_set(item_id=obj.pk, quantity=quantity, actor=request.user)
            obj.refresh_from_db()
        else:
            super().save_model(request, obj, form, change)


@admin.register(Purchase)
class PurchaseAdmin(admin.ModelAdmin[Purchase]):
    list_display = ["created_at", "user", "item", "quantity"]
    list_select_related = ["user", "item"]
    raw_id_fields = ["user"]


@admin.register(Watch)
class WatchAdmin(admin.ModelAdmin[Watch]):
    list_display = ["user", "item", "created_at"]
    list_select_related = ["user", "item"]
