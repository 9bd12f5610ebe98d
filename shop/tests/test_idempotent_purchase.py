"""``POST /api/items/<id>/purchase/`` with an ``Idempotency-Key``: a purchase retried any
number of times buys once; answers are replayed as they were (``realtime.idempotency``)."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from realtime.models import IdempotencyKey
from realtime.tokens import issue_token
from shop.models import Item, Purchase

from .conftest import Demo

pytestmark = pytest.mark.django_db


def api(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token(user)[0]}")
    return client


def buy(client: APIClient, item: Item, quantity: Any, key: str | None) -> Any:
    headers = {} if key is None else {"Idempotency-Key": key}
    return client.post(
        f"/api/items/{item.pk}/purchase/", {"quantity": quantity}, format="json", headers=headers
    )


@pytest.fixture
def moka(demo: Demo) -> Item:
    return Item.objects.get(name="Moka pot")


def test_five_retries_with_one_key_buy_once_and_answer_alike(demo: Demo, moka: Item) -> None:
    stock = moka.quantity
    client = api(demo.bob)
    answers = [buy(client, moka, 2, "order-17") for _ in range(6)]
    assert [a.status_code for a in answers] == [201] * 6
    first = answers[0]
    assert first.json()["quantity"] == 2
    assert first.json()["remaining"] == stock - 2
    assert "Idempotent-Replayed" not in first
    for again in answers[1:]:
        assert again.content == first.content
        assert again["Idempotent-Replayed"] == "true"
    assert Purchase.objects.filter(user=demo.bob).count() == 1
    moka.refresh_from_db()
    assert (moka.quantity, moka.version) == (stock - 2, 1)


def test_without_a_key_each_request_buys(demo: Demo, moka: Item) -> None:
    client = api(demo.bob)
    assert [buy(client, moka, 1, None).status_code for _ in range(2)] == [201, 201]
    assert Purchase.objects.filter(user=demo.bob).count() == 2


def test_another_quantity_with_the_same_key_is_422(demo: Demo, moka: Item) -> None:
    client = api(demo.bob)
    assert buy(client, moka, 1, "k").status_code == 201
    reused = buy(client, moka, 3, "k")
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    assert Purchase.objects.count() == 1


def test_the_key_of_another_user_is_not_mine(demo: Demo, moka: Item) -> None:
    assert buy(api(demo.bob), moka, 1, "shared").status_code == 201
    carol = buy(api(demo.carol), moka, 1, "shared")
    assert carol.status_code == 201
    assert "Idempotent-Replayed" not in carol
    assert sorted(Purchase.objects.values_list("user__username", flat=True)) == ["bob", "carol"]


def test_out_of_stock_is_recorded_and_replayed_even_after_a_refill(demo: Demo, moka: Item) -> None:
    client = api(demo.bob)
    short = buy(client, moka, moka.quantity + 1, "big")
    assert short.status_code == 409
    assert short.json()["code"] == "out_of_stock"
    Item.objects.filter(pk=moka.pk).update(quantity=1000)
    again = buy(client, moka, moka.quantity + 1, "big")
    assert (again.status_code, again.content, again["Idempotent-Replayed"]) == (
        409,
        short.content,
        "true",
    )
    assert not Purchase.objects.exists()


def test_a_refused_quantity_is_recorded_as_its_400(demo: Demo, moka: Item) -> None:
    client = api(demo.bob)
    bad = buy(client, moka, 0, "zero")
    assert bad.status_code == 400
    again = buy(client, moka, 0, "zero")
    assert (again.status_code, again.content, again["Idempotent-Replayed"]) == (
        400,
        bad.content,
        "true",
    )
    assert IdempotencyKey.objects.get(key="zero").response_status == 400


def test_a_malformed_key_buys_nothing(demo: Demo, moka: Item) -> None:
    answer = buy(api(demo.bob), moka, 1, "x" * 256)
    assert answer.status_code == 400
    assert answer.json()["code"] == "idempotency_key_invalid"
    assert not Purchase.objects.exists()


def test_a_key_used_in_chat_is_422_here(demo: Demo, moka: Item) -> None:
    client = api(demo.bob)
    sent = client.post(
        f"/api/rooms/{demo.lobby.pk}/messages/",
        {"text": "hi"},
        format="json",
        headers={"Idempotency-Key": "one-key"},
    )
    assert sent.status_code == 201
    answer = buy(client, moka, 1, "one-key")
    assert answer.status_code == 422
    assert not Purchase.objects.exists()
