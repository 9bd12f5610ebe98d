"""Demo items for ``manage.py demo``."""

from __future__ import annotations

from django.contrib.auth.models import User

from .models import Item, Watch

ITEMS = [
    ("Espresso beans, 1 kg", "Dark roast from a small roaster.", 2400, 25),
    ("Moka pot", "Six cups, aluminium.", 3500, 10),
    ("Ceramic mug", "Hand-glazed, 350 ml.", 1200, 40),
    ("Milk frother", "Battery powered.", 1500, 8),
    ("Limited print", "Signed; there are only three.", 9900, 3),
]
WATCHES = {"alice": ["Moka pot", "Limited print"], "bob": ["Moka pot"], "carol": ["Ceramic mug"]}


def load(users: dict[str, User]) -> str:
    """A handful of items (stock set only when created) and some watchers. Idempotent."""
    items = {}
    for name, description, price, quantity in ITEMS:
        items[name], _ = Item.objects.get_or_create(
            name=name,
            defaults={"description": description, "price_cents": price, "quantity": quantity},
        )
    Watch.objects.bulk_create(
        [Watch(user=users[u], item=items[i]) for u, names in WATCHES.items() for i in names],
        ignore_conflicts=True,
    )
    return f"Items: {len(ITEMS)}; alice and bob watch the Moka pot."
