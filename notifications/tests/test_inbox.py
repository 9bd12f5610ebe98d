"""The inbox: the user stream (owner only, replay with since), marking read, the HTTP API."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from rest_framework.test import APIClient

from notifications import services
from notifications.models import Notification
from realtime.tests.conftest import communicator, receive, send, session_cookie
from realtime.tokens import issue_token

from .conftest import Demo


def api(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token(user)[0]}")
    return client


@pytest.mark.django_db(transaction=True)
async def test_user_stream_is_owner_only_and_replays_missed_notifications(demo: Demo) -> None:
    create = database_sync_to_async(services.notifications_create)
    first = await create(recipient_ids=[demo.bob.pk], kind="note", title="one")
    comm = communicator(cookie=await database_sync_to_async(session_cookie)(demo.bob))
    assert (await comm.connect())[0]
    await send(comm, {"type": "subscribe", "stream": f"user:{demo.alice.pk}"})
    assert (await receive(comm))["code"] == "forbidden"
    await send(comm, {"type": "subscribe", "stream": f"user:{demo.bob.pk}"})
    assert (await receive(comm))["type"] == "ack"
    assert (await receive(comm))["data"] == {"unread": 1}  # snapshot
    await comm.disconnect()
    # Missed while away: two for bob, one for carol.
    await create(recipient_ids=[demo.bob.pk, demo.carol.pk], kind="note", title="two")
    await create(recipient_ids=[demo.bob.pk], kind="note", title="three")
    comm = communicator(cookie=await database_sync_to_async(session_cookie)(demo.bob))
    assert (await comm.connect())[0]
    stream = f"user:{demo.bob.pk}"
    await send(comm, {"type": "subscribe", "stream": stream, "since": first[0].offset})
    ack = await receive(comm)
    assert (ack["durable"], ack["replayed"]) == (True, 2)
    assert (await receive(comm))["data"] == {"unread": 3}
    replayed = [await receive(comm), await receive(comm)]
    assert [f["data"]["title"] for f in replayed] == ["two", "three"]
    assert [f["offset"] for f in replayed] == [2, 3]
    assert [f["data"]["offset"] for f in replayed] == [2, 3]
    # Live: the new notification carries the new unread count; marking read pushes the count.
    await create(recipient_ids=[demo.bob.pk], kind="note", title="four")
    live = await receive(comm)
    assert (live["event"], live["data"]["title"], live["data"]["unread"]) == (
        "notification.created",
        "four",
        4,
    )
    await database_sync_to_async(services.notification_mark_all_read)(user_id=demo.bob.pk)
    assert await receive(comm) == {
        "type": "event",
        "stream": stream,
        "event": "notification.unread",
        "data": {"unread": 0},
    }
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_anonymous_cannot_subscribe_to_an_inbox(demo: Demo) -> None:
    comm = communicator()
    assert (await comm.connect())[0]
    await send(comm, {"type": "subscribe", "stream": f"user:{demo.bob.pk}"})
    assert (await receive(comm))["code"] == "unauthenticated"
    await comm.disconnect()


@pytest.mark.django_db
def test_api_lists_counts_and_marks_read(
    demo: Demo, django_capture_on_commit_callbacks: Any
) -> None:
    for title in ("a", "b", "c"):
        services.notifications_create(recipient_ids=[demo.bob.pk], kind="note", title=title)
    services.notifications_create(recipient_ids=[demo.carol.pk], kind="note", title="carol's")
    bob = api(demo.bob)
    page = bob.get("/api/notifications/?page_size=2").json()
    assert page["count"] == 3
    assert [n["title"] for n in page["results"]] == ["c", "b"]
    assert bob.get("/api/notifications/unread-count/").json() == {"unread": 3}
    first = Notification.objects.get(title="a")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        read = bob.post(f"/api/notifications/{first.pk}/read/")
    assert read.status_code == 200 and read.json()["read_at"] is not None
    assert len(callbacks) == 1
    assert bob.get("/api/notifications/unread-count/").json() == {"unread": 2}
    carols = Notification.objects.get(title="carol's")
    assert bob.post(f"/api/notifications/{carols.pk}/read/").status_code == 404
    assert bob.post("/api/notifications/read-all/").json() == {"marked": 2, "unread": 0}
    assert api(demo.carol).get("/api/notifications/unread-count/").json() == {"unread": 1}
    assert APIClient().get("/api/notifications/").status_code in (401, 403)


@pytest.mark.django_db
def test_inbox_page(demo: Demo) -> None:
    from django.test import Client

    services.notifications_create(recipient_ids=[demo.bob.pk], kind="note", title="<b>hi</b>")
    client = Client()
    client.force_login(demo.bob)
    html = client.get("/notifications/").content.decode()
    assert "&lt;b&gt;hi&lt;/b&gt;" in html
    assert Client().get("/notifications/").status_code == 302


@pytest.mark.django_db
def test_a_notification_links_to_where_it_leads(demo: Demo) -> None:
    """Its ``url`` is in the API, the event payload and the inbox page's title link."""
    from django.test import Client

    from notifications.selectors import notification_data

    services.notifications_create(
        recipient_ids=[demo.bob.pk], kind="stock", title="Moka pot: 7 left", url="/shop/item/2/"
    )
    services.notifications_create(recipient_ids=[demo.bob.pk], kind="note", title="plain")
    linked, plain = Notification.objects.get(kind="stock"), Notification.objects.get(kind="note")
    assert notification_data(linked)["url"] == "/shop/item/2/"
    assert notification_data(plain)["url"] == ""
    results = api(demo.bob).get("/api/notifications/").json()["results"]
    assert [(n["title"], n["url"]) for n in results] == [
        ("plain", ""),
        ("Moka pot: 7 left", "/shop/item/2/"),
    ]
    client = Client()
    client.force_login(demo.bob)
    html = client.get("/notifications/").content.decode()
    assert '<a class="title" href="/shop/item/2/">Moka pot: 7 left</a>' in html
    assert '<strong class="title">plain</strong>' in html
