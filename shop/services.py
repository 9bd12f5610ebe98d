"""Writes of the shop: purchases, stock updates, watching.

Stock never goes below zero, whatever the concurrency: a purchase is one conditional
``UPDATE item SET quantity = quantity - n WHERE id = ? AND quantity >= n`` and succeeds only
when it changed a row (``select_for_update`` alone would be a no-op on SQLite, and a
read-check-save oversells under concurrency). The ``quantity >= 0`` check constraint is the
last line of defence.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F
from django.urls import reverse

from notifications.services import notifications_create
from realtime.publish import publish_on_commit

from .models import Item, Purchase, Watch
from .selectors import stock_data

MAX_QUANTITY = 1_000_000


class OutOfStock(Exception):
    """A purchase asked for more than is in stock. Nothing was written."""

    def __init__(self, *, item_id: int, requested: int, available: int) -> None:
        super().__init__(f"only {available} left of item {item_id}, {requested} requested")
        self.item_id = item_id
        self.requested = requested
        self.available = available


def _check_quantity(quantity: object, *, minimum: int) -> int:
    if type(quantity) is not int or not minimum <= quantity <= MAX_QUANTITY:
        raise ValidationError(f"quantity must be an integer from {minimum} to {MAX_QUANTITY}")
    return quantity


def purchase_create(*, user: User, item_id: int, quantity: object) -> Purchase:
    """Take ``quantity`` units of an item for ``user`` at its current price.

    Buying does not make the buyer a watcher: watching is their choice (``watch_set``). In
    the same transaction every other watcher gets a ``stock`` notification; after commit
    ``shop.stock`` goes to the item's stream and each notification to its recipient's.

    Raises:
        ValidationError: ``quantity`` is not an integer from 1 to 1,000,000.
        OutOfStock: fewer than ``quantity`` units left (nothing written).
        Item.DoesNotExist: no such item.
    """
    quantity = _check_quantity(quantity, minimum=1)
    with transaction.atomic():
        taken = Item.objects.filter(pk=item_id, quantity__gte=quantity).update(
            quantity=F("quantity") - quantity, version=F("version") + 1
        )
        if not taken:
            available = Item.objects.filter(pk=item_id).values_list("quantity", flat=True).first()
            if available is None:
                raise Item.DoesNotExist(f"no item {item_id}")
            raise OutOfStock(item_id=item_id, requested=quantity, available=available)
        item = Item.objects.get(pk=item_id)
        purchase = Purchase.objects.create(
            user=user, item=item, quantity=quantity, price_cents=item.price_cents
        )
        _stock_changed(item, actor=user)
    return purchase


def item_stock_set(*, item_id: int, quantity: object, actor: User | None) -> Item:
    """Set an item's stock (seed 001's "API that we will call to update the quantity").

    A change notifies every watcher but the actor and publishes ``shop.stock``; setting the
    same quantity again changes nothing.

    Raises:
        ValidationError: ``quantity`` is not an integer from 0 to 1,000,000.
        PermissionDenied: ``actor`` is not staff (``None`` means the system itself).
        Item.DoesNotExist: no such item.
    """
    quantity = _check_quantity(quantity, minimum=0)
    if actor is not None and not actor.is_staff:
        raise PermissionDenied("only staff may set stock")
    with transaction.atomic():
        item = Item.objects.select_for_update().get(pk=item_id)
        if item.quantity == quantity:
            return item
        item.quantity = quantity
        item.version = F("version") + 1
        item.save(update_fields=["quantity", "version", "updated_at"])
        item.refresh_from_db()
        _stock_changed(item, actor=actor)
    return item


def _stock_changed(item: Item, *, actor: User | None) -> None:
    # One query for the watchers, one bulk insert for their notifications, one frame each.
    watchers = Watch.objects.filter(item=item)
    if actor is not None:
        watchers = watchers.exclude(user=actor)
    notifications_create(
        recipient_ids=watchers.values_list("user_id", flat=True),
        kind="stock",
        title=f"{item.name}: {item.quantity} left",
        body=f"The stock of {item.name} changed to {item.quantity}.",
        data={"item": item.pk, "quantity": item.quantity},
        url=reverse("shop:item", args=[item.pk]),
    )
    publish_on_commit(item.stream, "shop.stock", stock_data(item))


def watch_set(*, user: User, item_id: int, watching: bool) -> bool:
    """Start or stop watching an item; returns the new state. Idempotent both ways.

    Raises:
        Item.DoesNotExist: no such item.
    """
    item = Item.objects.get(pk=item_id)
    if watching:
        Watch.objects.bulk_create([Watch(user=user, item=item)], ignore_conflicts=True)
    else:
        Watch.objects.filter(user=user, item=item).delete()
    return watching
