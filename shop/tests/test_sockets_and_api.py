"""Shop over sockets and HTTP: the stock stream, seed 001's socket, the API, the publish API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from rest_framework.test import APIClient

from realtime import events
from realtime.tests.conftest import communicator, receive, send, session_cookie
from realtime.tokens import ALGORITHM, ISSUER, issue_token
from shop import services
from shop.models import Item, Purchase

from .conftest import Demo


def api(user: Any = None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token(user)[0]}")
    return client


def moka_id() -> int:
    return int(Item.objects.get(name="Moka pot").pk)


@pytest.mark.django_db(transaction=True)
async def test_anyone_can_follow_stock_snapshot_then_changes(demo: Demo) -> None:
    item_id = await database_sync_to_async(moka_id)()
    comm = communicator()
    assert (await comm.connect())[0]
    await send(comm, {"type": "subscribe", "stream": f"shop:item:{item_id}"})
    assert (await receive(comm))["durable"] is False
    snapshot = await receive(comm)
    assert (snapshot["event"], snapshot["data"]["quantity"], snapshot["data"]["version"]) == (
        "shop.stock",
        10,
        0,
    )
    await database_sync_to_async(services.purchase_create)(
        user=demo.dave, item_id=item_id, quantity=4
    )
    change = await receive(comm)
    assert change["data"] == {"item": item_id, "name": "Moka pot", "quantity": 6, "version": 1}
    await send(comm, {"type": "subscribe", "stream": "shop:item:424242"})
    assert (await receive(comm))["code"] == "not_found"
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_seed_001_notification_count_flow(demo: Demo) -> None:
    item_id = await database_sync_to_async(moka_id)()
    token = await database_sync_to_async(lambda: issue_token(demo.bob)[0])()
    comm = communicator(f"/notification/count?token={token}")
    assert (await comm.connect())[0]
    assert await receive(comm) == {"grouped": demo.bob.pk}
    await database_sync_to_async(services.purchase_create)(
        user=demo.dave, item_id=item_id, quantity=1
    )
    assert await receive(comm) == {"text": "UPDATE_COUNT"}
    # bob's own purchase notifies the others, not him.
    await database_sync_to_async(services.purchase_create)(
        user=demo.bob, item_id=item_id, quantity=1
    )
    assert await comm.receive_nothing(timeout=0.2)
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_seed_001_socket_refuses_missing_forged_or_expired_tokens(demo: Demo) -> None:
    now = int(time.time())
    expired = jwt.encode(
        {
            "sub": str(demo.bob.pk),
            "iat": now - 100,
            "exp": now - 10,
            "iss": ISSUER,
            "typ": "access",
        },
        settings.SECRET_KEY,
        algorithm=ALGORITHM,
    )
    forged = jwt.encode(
        {"sub": str(demo.bob.pk), "iat": now, "exp": now + 60, "iss": ISSUER, "typ": "access"},
        "someone-elses-secret-that-is-long-enough-0123456789",
        algorithm=ALGORITHM,
    )
    for path in (
        "/notification/count",
        f"/notification/count?token={expired}",
        f"/notification/count?token={forged}",
        "/notification/count?token=garbage",
    ):
        comm = communicator(path)
        connected, code = await comm.connect()
        assert (connected, code) == (False, 4001), path


@pytest.mark.django_db
def test_items_are_public_and_show_watching(demo: Demo) -> None:
    items = api().get("/api/items/").json()
    assert [i["name"] for i in items][:2] == ["Ceramic mug", "Espresso beans, 1 kg"]
    assert all(i["is_watching"] is False for i in items)
    mine = {i["name"]: i["is_watching"] for i in api(demo.alice).get("/api/items/").json()}
    assert mine["Moka pot"] and mine["Limited print"] and not mine["Ceramic mug"]
    detail = api().get(f"/api/items/{moka_id()}/").json()
    assert (detail["quantity"], detail["stream"]) == (10, f"shop:item:{moka_id()}")


@pytest.mark.django_db
def test_purchase_api_201_then_409_with_a_clear_body(demo: Demo) -> None:
    client = api(demo.dave)
    ok = client.post(f"/api/items/{moka_id()}/purchase/", {"quantity": 7}, format="json")
    assert ok.status_code == 201
    assert (ok.json()["quantity"], ok.json()["remaining"]) == (7, 3)
    refused = client.post(f"/api/items/{moka_id()}/purchase/", {"quantity": 4}, format="json")
    assert refused.status_code == 409
    assert refused.json() == {
        "code": "out_of_stock",
        "detail": "Not enough stock: 4 requested, 3 available.",
        "requested": 4,
        "available": 3,
    }
    assert Item.objects.get(pk=moka_id()).quantity == 3
    assert Purchase.objects.count() == 1


@pytest.mark.django_db
def test_purchase_api_gives_the_price_paid_and_does_not_watch(demo: Demo) -> None:
    client = api(demo.dave)
    ok = client.post(f"/api/items/{moka_id()}/purchase/", {"quantity": 2}, format="json")
    assert ok.status_code == 201
    body = ok.json()
    assert (body["quantity"], body["price_cents"], body["total_cents"]) == (2, 3500, 7000)
    assert demo.dave.watches.count() == 0
    assert client.get(f"/api/items/{moka_id()}/").json()["is_watching"] is False
    # Watching stays the buyer's choice, through the watch endpoint.
    assert client.post(f"/api/items/{moka_id()}/watch/").json()["is_watching"] is True
    assert client.get(f"/api/items/{moka_id()}/").json()["is_watching"] is True


@pytest.mark.django_db
@pytest.mark.parametrize("payload", [{}, {"quantity": 0}, {"quantity": "x"}, {"quantity": -2}])
def test_purchase_api_validation(demo: Demo, payload: dict[str, Any]) -> None:
    response = api(demo.dave).post(f"/api/items/{moka_id()}/purchase/", payload, format="json")
    assert response.status_code == 400
    assert "quantity" in response.json()


@pytest.mark.django_db
def test_purchase_needs_sign_in_and_an_existing_item(demo: Demo) -> None:
    assert api().post(f"/api/items/{moka_id()}/purchase/", {"quantity": 1}).status_code in (
        401,
        403,
    )
    assert api(demo.dave).post("/api/items/9999/purchase/", {"quantity": 1}).status_code == 404


@pytest.mark.django_db
def test_staff_patch_sets_stock_and_notifies_watchers(
    demo: Demo, django_capture_on_commit_callbacks: Any
) -> None:
    from notifications.models import Notification

    assert api(demo.bob).patch(f"/api/items/{moka_id()}/", {"quantity": 1}).status_code == 403
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api(demo.alice).patch(
            f"/api/items/{moka_id()}/", {"quantity": 42}, format="json"
        )
    assert response.status_code == 200
    assert (response.json()["quantity"], response.json()["version"]) == (42, 1)
    assert list(Notification.objects.values_list("recipient__username", flat=True)) == ["bob"]
    # The notifications push, the stock publish, and the dashboard's "something changed".
    names = sorted(getattr(c, "func", c).__name__ for c in callbacks)
    assert names == ["_push_created", "_signal", "publish"]
    bad = api(demo.alice).patch(f"/api/items/{moka_id()}/", {"quantity": -1}, format="json")
    assert bad.status_code == 400


@pytest.mark.django_db
def test_watch_and_unwatch(demo: Demo) -> None:
    mug = Item.objects.get(name="Ceramic mug").pk
    client = api(demo.dave)
    assert client.post(f"/api/items/{mug}/watch/").json() == {"item": mug, "is_watching": True}
    assert client.post(f"/api/items/{mug}/watch/").status_code == 200  # idempotent
    assert demo.dave.watches.count() == 1
    assert client.delete(f"/api/items/{mug}/watch/").json() == {"item": mug, "is_watching": False}
    assert demo.dave.watches.count() == 0


@pytest.fixture
def shop_note() -> Iterator[None]:
    """A backend's own event, declared as its project would (tests validate every event)."""
    with events.override():
        events.declare("shop:item", "shop.note", dict[str, Any])
        yield


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("shop_note")
async def test_publish_api_reaches_subscribers_with_the_right_key_only(
    demo: Demo, settings: Any
) -> None:
    settings.TOWNSQUARE_REALTIME = {**settings.TOWNSQUARE_REALTIME, "PUBLISH_API_KEY": "k" * 40}
    item_id = await database_sync_to_async(moka_id)()
    stream = f"shop:item:{item_id}"
    comm = communicator()
    assert (await comm.connect())[0]
    await send(comm, {"type": "subscribe", "stream": stream})
    await receive(comm)
    await receive(comm)

    def post(key: str | None, body: dict[str, Any]) -> Any:
        headers: dict[str, Any] = {"HTTP_X_TOWNSQUARE_KEY": key} if key is not None else {}
        return APIClient().post("/api/publish/", body, format="json", **headers)

    body = {"stream": stream, "event": "shop.note", "data": {"sale": True}}
    for key in (None, "wrong", "k" * 39):
        response = await database_sync_to_async(post)(key, body)
        assert response.status_code in (401, 403)
    assert await comm.receive_nothing(timeout=0.1)
    bad = await database_sync_to_async(post)("k" * 40, {**body, "stream": "no spaces!"})
    assert bad.status_code == 400
    ok = await database_sync_to_async(post)("k" * 40, body)
    assert (ok.status_code, ok.json()) == (202, {"published": True})
    assert await receive(comm) == {
        "type": "event",
        "stream": stream,
        "event": "shop.note",
        "data": {"sale": True},
    }
    await comm.disconnect()


@pytest.mark.django_db
def test_publish_api_is_closed_without_a_configured_key(demo: Demo, settings: Any) -> None:
    settings.TOWNSQUARE_REALTIME = {**settings.TOWNSQUARE_REALTIME, "PUBLISH_API_KEY": ""}
    response = APIClient().post(
        "/api/publish/",
        {"stream": "x", "event": "y", "data": 1},
        format="json",
        HTTP_X_TOWNSQUARE_KEY="",
    )
    assert response.status_code in (401, 403)


@pytest.mark.django_db
def test_publish_command_validates_its_input(demo: Demo) -> None:
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="not a stream name"):
        call_command("publish", "bad stream", "e", "{}")
    with pytest.raises(CommandError, match="not valid JSON"):
        call_command("publish", "shop:item:1", "e", "{nope")


def test_shop_pages(client: Any, demo: Demo) -> None:
    html = client.get("/shop/").content.decode()
    assert "Moka pot" in html
    page = client.get(f"/shop/item/{moka_id()}/")
    assert page.status_code == 200 and "Moka pot" in page.content.decode()
    assert client.get("/shop/item/9999/").status_code == 404


@pytest.mark.django_db(transaction=True)
async def test_a_live_stock_notification_carries_its_item_link(demo: Demo) -> None:
    """A purchase tells the other watchers over their inbox stream, with the item's page."""
    moka = await Item.objects.aget(name="Moka pot")  # alice and bob watch it
    comm = communicator(cookie=await database_sync_to_async(session_cookie)(demo.bob))
    assert (await comm.connect())[0]
    await send(comm, {"type": "subscribe", "stream": f"user:{demo.bob.pk}"})
    assert (await receive(comm))["type"] == "ack"
    assert (await receive(comm))["event"] == "notification.unread"
    buy = database_sync_to_async(services.purchase_create)
    await buy(user=demo.alice, item_id=moka.pk, quantity=2)
    frame = await receive(comm)
    assert frame["event"] == "notification.created"
    data = frame["data"]
    assert (data["title"], data["data"], data["url"]) == (
        "Moka pot: 8 left",
        {"item": moka.pk, "quantity": 8},
        f"/shop/item/{moka.pk}/",
    )
    await comm.disconnect()
