"""The shop's admin pages. Every write that moves stock goes through ``shop.services``.

- ``Item``: added and edited here. Name, description and price are saved as they are; a stock
  change goes through ``item_stock_set`` (version + 1, ``shop.stock`` on the item's stream and
  ``stock`` notifications to watchers, after commit). The stock counts as changed only when
  the operator changed the number the page showed (a hidden initial value): saving a new
  description never writes back the stock the page was opened with, so a purchase made
  while it was open is kept. Items are deleted freely (one with purchases is protected).
- ``Purchase``: added through ``purchase_create`` (stock checked by the conditional ``UPDATE``,
  decremented, the unit price recorded, events after commit); over the stock, the form says
  how many are left and nothing is stored. Read-only once made, and never deleted: a purchase
  is a record, and editing or deleting it would not give the stock back.
- ``Watch``: added through ``watch_set``; deleted freely (a watch has no stream and no
  counter); not edited (delete one and add another).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest

from townsquare.admin_writes import AdminRefused, ServiceWritesAdmin

from . import services
from .models import Item, Purchase, Watch
from .money import format_cents


def _staff(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # the admin admits signed-in staff only
    return request.user


@admin.register(Item)
class ItemAdmin(ServiceWritesAdmin[Item]):
    """Items: stock changes through ``item_stock_set``; see the module's docstring."""

    list_display = ["name", "price", "quantity", "version", "updated_at"]
    search_fields = ["name"]
    readonly_fields = ["version", "updated_at"]

    def formfield_for_dbfield(
        self, db_field: models.Field[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> forms.Field | None:
        """The stock field remembers the value the page showed (a hidden initial), so that
        "changed" means the operator changed it, not that a purchase moved it since."""
        if db_field.name == "quantity":
            kwargs["show_hidden_initial"] = True
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    @admin.display(description="price", ordering="price_cents")
    def price(self, obj: Item) -> str:
        """The price as money (``$12.34``)."""
        return format_cents(obj.price_cents)

    def save_model(self, request: HttpRequest, obj: Item, form: Any, change: bool) -> None:
        """Called to store the item; the stock of an existing item only through the service."""
        if not change:
            super().save_model(request, obj, form, change)
            return
        # Every edited field but the stock: a concurrent purchase's decrement stays.
        fields = [f for f in form.changed_data if f != "quantity"]
        if fields:
            obj.save(update_fields=[*fields, "updated_at"])
        if "quantity" in form.changed_data:
            try:
                services.item_stock_set(
                    item_id=obj.pk, quantity=obj.quantity, actor=_staff(request)
                )
            except ValidationError as exc:
                raise AdminRefused.from_validation_error(exc, field="quantity") from exc
        obj.refresh_from_db()


@admin.register(Purchase)
class PurchaseAdmin(ServiceWritesAdmin[Purchase]):
    """Purchases: added through ``purchase_create``, then read-only; see the module's
    docstring."""

    list_display = ["created_at", "user", "item", "quantity", "total"]
    list_select_related = ["user", "item"]
    raw_id_fields = ["user"]
    fields = ["user", "item", "quantity", "price_cents", "created_at"]
    readonly_fields = ["price_cents", "created_at"]

    @admin.display(description="total")
    def total(self, obj: Purchase) -> str:
        """What it cost in all, as money (``$70.00``)."""
        return format_cents(obj.total_cents)

    def has_change_permission(self, request: HttpRequest, obj: Purchase | None = None) -> bool:
        """Never: editing a purchase would not move the stock."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Purchase | None = None) -> bool:
        """Never: deleting a purchase would not give the stock back."""
        return False

    def save_model(self, request: HttpRequest, obj: Purchase, form: Any, change: bool) -> None:
        """Called to store a new purchase: ``purchase_create``; a refusal is a form error."""
        try:
            made = services.purchase_create(
                user=obj.user, item_id=obj.item_id, quantity=obj.quantity
            )
        except services.OutOfStock as exc:
            raise AdminRefused(
                f"Only {exc.available} left; {exc.requested} asked for.", field="quantity"
            ) from exc
        except ValidationError as exc:
            raise AdminRefused.from_validation_error(exc, field="quantity") from exc
        except Item.DoesNotExist as exc:
            raise AdminRefused("This item no longer exists.", field="item") from exc
        obj.pk, obj.created_at, obj.price_cents = made.pk, made.created_at, made.price_cents


@admin.register(Watch)
class WatchAdmin(admin.ModelAdmin[Watch]):
    """Watches: added through ``watch_set``, deleted, never edited; see the module's
    docstring."""

    list_display = ["user", "item", "created_at"]
    list_select_related = ["user", "item"]
    raw_id_fields = ["user"]
    readonly_fields = ["created_at"]

    def has_change_permission(self, request: HttpRequest, obj: Watch | None = None) -> bool:
        """Never: a watch is a (user, item) pair; delete one and add another."""
        return False

    def save_model(self, request: HttpRequest, obj: Watch, form: Any, change: bool) -> None:
        """Called to store a new watch: ``watch_set``."""
        services.watch_set(user=obj.user, item_id=obj.item_id, watching=True)
        made = Watch.objects.get(user=obj.user, item_id=obj.item_id)
        obj.pk, obj.created_at = made.pk, made.created_at

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Watch]) -> None:
        """Called by the "delete selected" action: ``watch_set(watching=False)`` per watch."""
        for watch in queryset.select_related("user"):
            services.watch_set(user=watch.user, item_id=watch.item_id, watching=False)

    def delete_model(self, request: HttpRequest, obj: Watch) -> None:
        """Called to delete one watch: ``watch_set(watching=False)``."""
        services.watch_set(user=obj.user, item_id=obj.item_id, watching=False)
