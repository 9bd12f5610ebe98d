"""Reads of the shop."""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef, QuerySet

from .models import Item, Purchase, Watch


def item_list(*, user_id: int | None = None) -> QuerySet[Item]:
    """Every item by name, annotated ``is_watching`` for ``user_id`` (False when anonymous)."""
    watching = Watch.objects.filter(item_id=OuterRef("pk"), user_id=user_id or 0)
    return Item.objects.annotate(is_watching=Exists(watching)).order_by("name")


def purchase_list(*, user_id: int) -> QuerySet[Purchase]:
    """A user's purchases with their items, newest first (ties: the later id first)."""
    return (
        Purchase.objects.filter(user_id=user_id)
        .select_related("item")
        .order_by("-created_at", "-id")
    )


def stock_data(item: Item) -> dict[str, Any]:
    """The ``data`` of a ``shop.stock`` event.

    Shape: ``{item: int, name: str, quantity: int, version: int}``; ``version`` grows with
    every change, so a client keeps the event with the highest one.
    """
    return {"item": item.pk, "name": item.name, "quantity": item.quantity, "version": item.version}
