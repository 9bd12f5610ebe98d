"""Items with stock, purchases and watchers (seed 001's shop)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Item(models.Model):
    """Something for sale. ``quantity >= 0`` is a database constraint, not only a check in code.

    ``version`` grows by one with every stock change, so a client can ignore a ``shop.stock``
    event older than what it shows.
    """

    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True, default="")
    price_cents = models.PositiveIntegerField(
        "price (cents)", help_text="In cents: 1234 is $12.34."
    )
    quantity = models.IntegerField(default=0)
    version = models.PositiveBigIntegerField(default=0, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(quantity__gte=0), name="item_quantity_gte_0")
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def stream(self) -> str:
        """The item's stock stream, ``shop:item:<id>``."""
        return f"shop:item:{self.pk}"


class Purchase(models.Model):
    """One successful purchase of ``quantity`` units at ``price_cents`` each.

    The unit price is copied from the item when bought, so a later price change does not
    rewrite what a past purchase cost.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="purchases"
    )
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="purchases")
    quantity = models.PositiveIntegerField()
    price_cents = models.PositiveIntegerField(
        "unit price (cents)", default=0, help_text="The item's price when bought, in cents."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        """``bob bought 2 × Moka pot``."""
        return f"{self.user} bought {self.quantity} × {self.item}"

    @property
    def total_cents(self) -> int:
        """What the purchase cost in all, in cents."""
        return self.quantity * self.price_cents


class Watch(models.Model):
    """A user follows an item's stock: each change notifies them. Only ``watch_set`` adds one."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="watches"
    )
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="watches")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "watches"
        constraints = [models.UniqueConstraint(fields=["user", "item"], name="watch_user_item")]

    def __str__(self) -> str:
        """``alice watches Moka pot``."""
        return f"{self.user} watches {self.item}"
