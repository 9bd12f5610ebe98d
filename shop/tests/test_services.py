"""Shop services: stock never negative, notifications for watchers only, not for the actor."""

from __future__ import annotations

import threading
from typing import Any
from unittest import mock

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, close_old_connections, transaction

from notifications.models import Notification
from shop import services
from shop.models import Item, Purchase, Watch

from .conftest import Demo

pytestmark = pytest.mark.django_db(transaction=True)


def moka() -> Item:
    return Item.objects.get(name="Moka pot")


def test_purchase_takes_stock_and_records_it_at_the_price_then(demo: Demo) -> None:
    item = moka()  # $35.00
    purchase = services.purchase_create(user=demo.dave, item_id=item.pk, quantity=3)
    item.refresh_from_db()
    assert (item.quantity, item.version) == (7, 1)
    assert (purchase.user, purchase.item, purchase.quantity) == (demo.dave, item, 3)
    assert (purchase.price_cents, purchase.total_cents) == (3500, 10500)
    Item.objects.filter(pk=item.pk).update(price_cents=4000)
    purchase.refresh_from_db()
    assert purchase.total_cents == 10500  # a later price change does not rewrite it
    assert services.purchase_create(user=demo.dave, item_id=item.pk, quantity=1).price_cents == 4000


def test_buying_does_not_make_the_buyer_a_watcher(demo: Demo) -> None:
    item = moka()
    services.purchase_create(user=demo.dave, item_id=item.pk, quantity=3)
    assert not Watch.objects.filter(user=demo.dave, item=item).exists()
    # So dave hears nothing of the next change, until he chooses to watch.
    services.item_stock_set(item_id=item.pk, quantity=20, actor=None)
    assert not Notification.objects.filter(recipient=demo.dave).exists()
    assert services.watch_set(user=demo.dave, item_id=item.pk, watching=True) is True
    services.item_stock_set(item_id=item.pk, quantity=0, actor=None)
    assert list(Notification.objects.filter(recipient=demo.dave).values_list("title", "url")) == [
        ("Moka pot: 0 left", f"/shop/item/{item.pk}/")
    ]
    # Watching a watched item again and unwatching twice are no-ops, not errors.
    assert services.watch_set(user=demo.dave, item_id=item.pk, watching=True) is True
    assert Watch.objects.filter(user=demo.dave, item=item).count() == 1
    assert services.watch_set(user=demo.dave, item_id=item.pk, watching=False) is False
    assert services.watch_set(user=demo.dave, item_id=item.pk, watching=False) is False
    assert not Watch.objects.filter(user=demo.dave, item=item).exists()
    with pytest.raises(Item.DoesNotExist):
        services.watch_set(user=demo.dave, item_id=99999, watching=True)


def test_purchase_beyond_stock_raises_out_of_stock_and_writes_nothing(demo: Demo) -> None:
    item = moka()
    with pytest.raises(services.OutOfStock) as raised:
        services.purchase_create(user=demo.dave, item_id=item.pk, quantity=11)
    assert (raised.value.requested, raised.value.available) == (11, 10)
    item.refresh_from_db()
    assert (item.quantity, item.version) == (10, 0)
    assert Purchase.objects.count() == 0
    assert Notification.objects.count() == 0
    assert not Watch.objects.filter(user=demo.dave, item=item).exists()


@pytest.mark.parametrize("quantity", [0, -1, 1.5, "2", None, True, 1_000_001])
def test_purchase_quantity_must_be_a_positive_integer(demo: Demo, quantity: object) -> None:
    with pytest.raises(ValidationError):
        services.purchase_create(user=demo.dave, item_id=moka().pk, quantity=quantity)
    assert moka().quantity == 10


def test_unknown_item(demo: Demo) -> None:
    with pytest.raises(Item.DoesNotExist):
        services.purchase_create(user=demo.dave, item_id=99999, quantity=1)


def test_the_database_refuses_negative_stock(demo: Demo) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Item.objects.filter(pk=moka().pk).update(quantity=-1)


def test_a_change_notifies_every_watcher_but_the_actor(demo: Demo) -> None:
    item = moka()  # watched by alice and bob
    services.purchase_create(user=demo.bob, item_id=item.pk, quantity=2)
    notes = list(Notification.objects.values_list("recipient__username", "kind", "data", "url"))
    assert notes == [("alice", "stock", {"item": item.pk, "quantity": 8}, f"/shop/item/{item.pk}/")]
    Notification.objects.all().delete()
    services.item_stock_set(item_id=item.pk, quantity=20, actor=demo.alice)
    recipients = sorted(Notification.objects.values_list("recipient__username", flat=True))
    assert recipients == ["bob"]  # bob watches; dave never watched; alice acted


def test_non_watchers_get_nothing(demo: Demo) -> None:
    mug = Item.objects.get(name="Ceramic mug")  # watched by carol only
    services.purchase_create(user=demo.carol, item_id=mug.pk, quantity=1)
    assert Notification.objects.count() == 0


def test_stock_set_is_staff_only_and_validated(demo: Demo) -> None:
    item = moka()
    with pytest.raises(PermissionDenied):
        services.item_stock_set(item_id=item.pk, quantity=5, actor=demo.bob)
    with pytest.raises(ValidationError):
        services.item_stock_set(item_id=item.pk, quantity=-1, actor=demo.alice)
    same = services.item_stock_set(item_id=item.pk, quantity=10, actor=demo.alice)
    assert same.version == 0
    assert Notification.objects.count() == 0
    services.item_stock_set(item_id=item.pk, quantity=0, actor=None)
    assert sorted(Notification.objects.values_list("recipient__username", flat=True)) == [
        "alice",
        "bob",
    ]


def test_stock_is_published_after_commit_with_the_new_version(demo: Demo) -> None:
    item = moka()
    with mock.patch("realtime.publish.publish") as publish, transaction.atomic():
        services.purchase_create(user=demo.dave, item_id=item.pk, quantity=4)
        publish.assert_not_called()
    publish.assert_called_once_with(
        item.stream,
        "shop.stock",
        {"item": item.pk, "name": "Moka pot", "quantity": 6, "version": 1},
        offset=None,
    )


def test_many_watchers_take_constant_queries(
    demo: Demo, django_assert_max_num_queries: Any
) -> None:
    from django.contrib.auth.models import User

    item = moka()
    users = User.objects.bulk_create([User(username=f"w{i}") for i in range(200)])
    Watch.objects.bulk_create([Watch(user=u, item=item) for u in users])
    with (
        mock.patch("notifications.services.publish_many") as publish_many,
        django_assert_max_num_queries(14),
    ):
        services.item_stock_set(item_id=item.pk, quantity=3, actor=demo.alice)
    assert Notification.objects.filter(kind="stock").count() == 201  # 200 + bob
    published = list(publish_many.call_args.args[0])
    assert len(published) == 201
    assert len({p.stream for p in published}) == 201
    assert all(p.offset == p.data["offset"] == 1 and p.data["unread"] == 1 for p in published)


def test_concurrent_purchases_on_sqlite_never_oversell(demo: Demo) -> None:
    item = moka()
    services.item_stock_set(item_id=item.pk, quantity=10, actor=None)
    results: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(40)

    def buy() -> None:
        start.wait()
        try:
            services.purchase_create(user=demo.dave, item_id=item.pk, quantity=1)
            outcome = "ok"
        except services.OutOfStock:
            outcome = "out"
        finally:
            close_old_connections()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=buy) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ok"] * 10 + ["out"] * 30
    assert moka().quantity == 0
    assert Purchase.objects.filter(item=item).count() == 10
