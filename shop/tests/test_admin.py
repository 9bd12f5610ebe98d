"""The shop admin writes through the services: stock checked, decremented and published."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from django.test import Client

from shop import services
from shop.models import Item, Purchase, Watch
from shop.money import format_cents

from .conftest import Demo

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client(demo: Demo) -> Client:
    """A client signed in as alice (staff, superuser)."""
    client = Client()
    client.force_login(demo.alice)
    return client


def moka() -> Item:
    return Item.objects.get(name="Moka pot")


def item_form(item: Item, **changes: Any) -> dict[str, Any]:
    return {
        "name": item.name,
        "description": item.description,
        "price_cents": item.price_cents,
        "quantity": item.quantity,
        "initial-quantity": item.quantity,  # the value the page showed
        **changes,
    }


def test_a_purchase_over_the_stock_is_a_form_error_and_changes_nothing(
    demo: Demo, admin_client: Client
) -> None:
    item = moka()
    services.item_stock_set(item_id=item.pk, quantity=8, actor=None)
    with mock.patch("realtime.publish.publish") as publish:
        response = admin_client.post(
            "/admin/shop/purchase/add/", {"user": demo.dave.pk, "item": item.pk, "quantity": 100}
        )
    assert response.status_code == 200
    assert "Only 8 left; 100 asked for." in response.content.decode()
    assert Purchase.objects.count() == 0
    assert (moka().quantity, moka().version) == (8, 1)
    assert not Watch.objects.filter(user=demo.dave, item=item).exists()
    publish.assert_not_called()


def test_a_purchase_in_the_admin_takes_stock_and_publishes(
    demo: Demo, admin_client: Client
) -> None:
    item = moka()
    with mock.patch("realtime.publish.publish") as publish:
        response = admin_client.post(
            "/admin/shop/purchase/add/", {"user": demo.dave.pk, "item": item.pk, "quantity": 3}
        )
    assert response.status_code == 302, response.content.decode()[-2000:]
    purchase = Purchase.objects.get()
    assert (purchase.user, purchase.item, purchase.quantity) == (demo.dave, item, 3)
    assert (moka().quantity, moka().version) == (7, 1)
    assert purchase.price_cents == 3500  # the item's price, recorded by the service
    assert not Watch.objects.filter(user=demo.dave, item=item).exists()
    publish.assert_called_once_with(
        item.stream,
        "shop.stock",
        {"item": item.pk, "name": "Moka pot", "quantity": 7, "version": 1},
        offset=None,
    )


def test_purchases_are_read_only(demo: Demo, admin_client: Client) -> None:
    purchase = services.purchase_create(user=demo.dave, item_id=moka().pk, quantity=2)
    url = f"/admin/shop/purchase/{purchase.pk}/"
    assert admin_client.get(url + "change/").status_code == 200
    assert admin_client.post(url + "change/", {"quantity": 1}).status_code == 403
    assert admin_client.post(url + "delete/", {"post": "yes"}).status_code == 403
    assert Purchase.objects.get().quantity == 2
    assert moka().quantity == 8


def test_a_stock_edit_goes_through_the_service(demo: Demo, admin_client: Client) -> None:
    item = moka()
    with mock.patch("realtime.publish.publish") as publish:
        response = admin_client.post(
            f"/admin/shop/item/{item.pk}/change/", item_form(item, quantity=25)
        )
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert (moka().quantity, moka().version) == (25, 1)
    publish.assert_called_once_with(
        item.stream,
        "shop.stock",
        {"item": item.pk, "name": "Moka pot", "quantity": 25, "version": 1},
        offset=None,
    )


def test_saving_an_item_keeps_a_purchase_made_while_the_page_was_open(
    demo: Demo, admin_client: Client
) -> None:
    item = moka()  # the page shows 10
    services.purchase_create(user=demo.dave, item_id=item.pk, quantity=4)  # now 6
    with mock.patch("realtime.publish.publish") as publish:
        response = admin_client.post(
            f"/admin/shop/item/{item.pk}/change/", item_form(item, description="Now in red.")
        )
    assert response.status_code == 302, response.content.decode()[-2000:]
    stored = moka()
    assert (stored.description, stored.quantity, stored.version) == ("Now in red.", 6, 1)
    publish.assert_not_called()


def test_an_out_of_range_stock_is_a_form_error(demo: Demo, admin_client: Client) -> None:
    item = moka()
    response = admin_client.post(
        f"/admin/shop/item/{item.pk}/change/", item_form(item, quantity=2_000_000, name="Moka")
    )
    assert response.status_code == 200
    assert "quantity must be an integer from 0 to 1000000" in response.content.decode()
    assert (moka().quantity, moka().version) == (10, 0)  # the rename rolled back too


def test_watches_are_added_through_the_service_and_never_twice(
    demo: Demo, admin_client: Client
) -> None:
    item = moka()
    add = admin_client.post("/admin/shop/watch/add/", {"user": demo.dave.pk, "item": item.pk})
    assert add.status_code == 302
    again = admin_client.post("/admin/shop/watch/add/", {"user": demo.dave.pk, "item": item.pk})
    assert again.status_code == 200
    assert "already exists" in again.content.decode()
    assert Watch.objects.filter(user=demo.dave, item=item).count() == 1


@pytest.mark.parametrize(
    ("cents", "shown"), [(0, "$0.00"), (5, "$0.05"), (1234, "$12.34"), (123456789, "$1,234,567.89")]
)
def test_format_cents(cents: int, shown: str) -> None:
    assert format_cents(cents) == shown


def test_labels_and_prices_read_well(demo: Demo, admin_client: Client) -> None:
    index = admin_client.get("/admin/").content.decode()
    for label in ("Feed switches", "Watches", "Purchases", "Items", "Notifications", "Rooms"):
        assert f">{label}</a>" in index
    for wrong in ("switchs", "Watchs"):
        assert wrong not in index
    items = admin_client.get("/admin/shop/item/").content.decode()
    assert f">{format_cents(moka().price_cents)}</td>" in items
    assert ">Price</a>" in items  # the column, sortable by price_cents
    form = admin_client.get(f"/admin/shop/item/{moka().pk}/change/").content.decode()
    assert "Price (cents)" in form
    purchase = services.purchase_create(user=demo.dave, item_id=moka().pk, quantity=2)
    assert str(purchase) == "dave bought 2 × Moka pot"
    services.watch_set(user=demo.dave, item_id=moka().pk, watching=True)
    assert str(Watch.objects.get(user=demo.dave)) == "dave watches Moka pot"


def test_a_user_with_purchases_and_notifications_can_still_be_deleted(
    demo: Demo, admin_client: Client
) -> None:
    from django.contrib.auth.models import User

    from notifications.models import Notification

    services.purchase_create(user=demo.dave, item_id=moka().pk, quantity=2)
    services.watch_set(user=demo.dave, item_id=moka().pk, watching=True)
    services.purchase_create(user=demo.bob, item_id=moka().pk, quantity=1)  # dave is told
    assert Notification.objects.filter(recipient=demo.dave).count() == 1
    page = admin_client.get(f"/admin/auth/user/{demo.dave.pk}/delete/")
    assert page.status_code == 200
    assert "dave bought 2 × Moka pot</a>" in page.content.decode()
    response = admin_client.post(f"/admin/auth/user/{demo.dave.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not User.objects.filter(username="dave").exists()
    assert list(Purchase.objects.values_list("user__username", "quantity")) == [("bob", 1)]
    assert moka().quantity == 7  # a deleted purchase gives no stock back
