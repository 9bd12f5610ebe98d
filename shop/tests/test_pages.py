"""Shop pages: "My purchases" (own only, newest first, paginated, sign-in), the item page."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from shop import services, views
from shop.models import Item, Purchase

from .conftest import Demo

pytestmark = pytest.mark.django_db


def signed_in(user: object) -> Client:
    client = Client()
    client.force_login(user)  # type: ignore[arg-type]
    return client


def rows(html: str) -> list[tuple[str, str, str]]:
    """``(item name, quantity, total)`` of each purchase row, in page order."""
    found = re.findall(
        r'<tr data-purchase-id="\d+">\s*<td><a href="/shop/item/\d+/">([^<]+)</a></td>\s*'
        r'<td class="num">(\d+)</td>\s*<td class="num" data-total-cents="\d+">([^<]+)</td>',
        html,
    )
    return [(name, qty, total) for name, qty, total in found]


def test_purchases_page_needs_sign_in() -> None:
    response = Client().get("/shop/purchases/?page=2")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/shop/purchases/%3Fpage%3D2"


def test_purchases_are_own_newest_first_with_item_link_total_and_time(demo: Demo) -> None:
    moka = Item.objects.get(name="Moka pot")  # $35.00
    mug = Item.objects.get(name="Ceramic mug")  # $12.00
    first = services.purchase_create(user=demo.dave, item_id=moka.pk, quantity=2)
    services.purchase_create(user=demo.bob, item_id=mug.pk, quantity=5)  # not dave's
    services.purchase_create(user=demo.dave, item_id=mug.pk, quantity=3)
    # An older purchase made later by id: the order is by time, not by id.
    older = services.purchase_create(user=demo.dave, item_id=moka.pk, quantity=1)
    Purchase.objects.filter(pk=older.pk).update(created_at=first.created_at - timedelta(days=1))

    html = signed_in(demo.dave).get("/shop/purchases/").content.decode()
    assert rows(html) == [
        ("Ceramic mug", "3", "$36.00"),
        ("Moka pot", "2", "$70.00"),
        ("Moka pot", "1", "$35.00"),
    ]
    assert f'<a href="/shop/item/{mug.pk}/">Ceramic mug</a>' in html
    when = timezone.localtime(first.created_at)
    shown = f"{when:%b} {when.day}, {when:%Y, %H:%M} UTC"
    assert f'<time datetime="{when.isoformat()}">{shown}</time>' in html
    assert 'class="pager"' not in html  # one page only
    # bob sees his own only; someone with none gets a sentence, not an empty table.
    assert rows(signed_in(demo.bob).get("/shop/purchases/").content.decode()) == [
        ("Ceramic mug", "5", "$60.00")
    ]
    empty = signed_in(demo.carol).get("/shop/purchases/").content.decode()
    assert "You have not bought anything yet." in empty and 'id="purchases"' not in empty


def test_purchases_are_paginated(demo: Demo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views, "PURCHASES_PER_PAGE", 2)
    mug = Item.objects.get(name="Ceramic mug")
    for quantity in range(1, 6):  # 1..5, the 5 newest
        services.purchase_create(user=demo.dave, item_id=mug.pk, quantity=quantity)
    client = signed_in(demo.dave)
    pages = {n: client.get(f"/shop/purchases/?page={n}").content.decode() for n in ("1", "2", "3")}
    assert [[r[1] for r in rows(pages[n])] for n in ("1", "2", "3")] == [
        ["5", "4"],
        ["3", "2"],
        ["1"],
    ]
    assert "Page 2 of 3" in pages["2"]
    assert '<a rel="prev" href="?page=1">Newer</a>' in pages["2"]
    assert '<a rel="next" href="?page=3">Older</a>' in pages["2"]
    assert 'rel="prev"' not in pages["1"] and 'rel="next"' not in pages["3"]
    # A forged page number never errors: past the end is the last page, junk the first.
    for forged, quantities in (("99", ["1"]), ("x", ["5", "4"]), ("-1", ["1"])):
        response = client.get(f"/shop/purchases/?page={forged}")
        assert response.status_code == 200
        assert [r[1] for r in rows(response.content.decode())] == quantities


def test_item_page_caps_the_quantity_at_the_stock_and_disables_buying_when_sold_out(
    demo: Demo,
) -> None:
    moka = Item.objects.get(name="Moka pot")  # 10 in stock; dave does not watch it
    client = signed_in(demo.dave)
    html = client.get(f"/shop/item/{moka.pk}/").content.decode()
    assert re.search(r'<input id="buy-quantity"[^>]* min="1" max="10"[^>]*>', html)
    assert re.search(r'<button type="submit" id="buy-submit" class="primary">Buy</button>', html)
    assert 'aria-pressed="false" aria-describedby="watch-state">Watch this item</button>' in html
    assert '<span id="watch-state" class="watch-state">Not watching.</span>' in html
    assert 'data-currency="USD">$35.00</span>' in html
    assert '<a href="/shop/purchases/">My purchases</a>' in html

    services.item_stock_set(item_id=moka.pk, quantity=0, actor=None)
    services.watch_set(user=demo.dave, item_id=moka.pk, watching=True)
    html = client.get(f"/shop/item/{moka.pk}/").content.decode()
    assert re.search(r'<input id="buy-quantity"[^>]* max="0"[^>]* disabled>', html)
    assert '<button type="submit" id="buy-submit" class="primary" disabled>Buy</button>' in html
    assert 'aria-pressed="true"' in html and "Watching: you get a notification" in html
    assert 'class="card item-detail out"' in html
    listing = client.get("/shop/").content.decode()
    assert f'<li class="card item out" data-item-id="{moka.pk}">' in listing
    assert '<a class="my-purchases" href="/shop/purchases/">My purchases</a>' in listing
    assert "My purchases" not in Client().get("/shop/").content.decode()
