"""chat.send and POST messages are idempotent per (room, client_id, author); one message's
failure at the database is its own."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from rest_framework.test import APIClient

from chat import services
from chat.models import Message
from chat.services import NewMessage
from chat.tests.conftest import Demo

from .test_consumers import receive, send, signed_in, subscribe

pytestmark = pytest.mark.django_db(transaction=True)


def stored(room_id: int) -> list[tuple[int, str, str]]:
    return list(
        Message.objects.filter(room_id=room_id)
        .order_by("offset")
        .values_list("offset", "text", "client_id")
    )


async def test_a_repeated_client_id_acks_the_first_message_and_publishes_nothing(
    demo: Demo,
) -> None:
    alice, bob = await signed_in(demo.alice), await signed_in(demo.bob)
    stream = f"chat:room:{demo.lobby.pk}"
    await subscribe(bob, stream)
    frame = {"type": "chat.send", "room": demo.lobby.pk, "text": "once", "client_id": "c-1"}
    await send(alice, {**frame, "ref": 1})
    first = await receive(alice)
    await send(alice, {**frame, "ref": 2})
    repeat = await receive(alice)
    assert (first["ref"], first["duplicate"]) == (1, False)
    assert (repeat["ref"], repeat["duplicate"]) == (2, True)
    assert (repeat["id"], repeat["offset"]) == (first["id"], first["offset"]) == (first["id"], 1)
    event = await receive(bob)
    assert (event["event"], event["offset"], event["data"]["text"]) == ("chat.message", 1, "once")
    assert await bob.receive_nothing(timeout=0.2)
    assert await database_sync_to_async(stored)(demo.lobby.pk) == [(1, "once", "c-1")]
    # Another author may use the same client_id; the same author in another room too.
    await send(bob, {**frame, "ref": 3})
    reply = await receive(bob)
    while reply["type"] != "ack":  # bob hears his own message too, maybe before the ack
        reply = await receive(bob)
    assert (reply["ref"], reply["duplicate"], reply["offset"]) == (3, False, 2)
    await alice.disconnect()
    await bob.disconnect()


def test_repeats_inside_one_batch_and_across_batches_store_once(demo: Demo) -> None:
    def item(text: str, client_id: str) -> NewMessage:
        return services.message_check(
            user=demo.alice, room_id=demo.lobby.pk, text=text, client_id=client_id
        )

    results = services.message_create_many(
        [item("a", "k1"), item("b", "k2"), item("a again", "k1"), item("no key", "")]
    )
    assert [(m.offset, m.duplicate) for m in results if isinstance(m, Message)] == [
        (1, False),
        (2, False),
        (1, True),
        (3, False),
    ]
    again = services.message_create_many([item("b", "k2"), item("c", "k3")])
    assert [(m.offset, m.duplicate) for m in again if isinstance(m, Message)] == [
        (2, True),
        (4, False),
    ]
    assert [o for o, _, _ in stored(demo.lobby.pk)] == [1, 2, 3, 4]


def test_a_message_the_database_refuses_fails_alone(
    demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Poison one message so that its INSERT fails (as a user deleted meanwhile or a value the
    # database will not take would): the batch is retried one by one, the others are stored
    # gapless and in order, the poisoned one gets its own error.
    real = Message.objects.bulk_create

    def poisoned(objs: list[Message], *args: Any, **kwargs: Any) -> list[Message]:
        if any(message.text == "poison" for message in objs):
            raise IntegrityError("refused")
        return real(objs, *args, **kwargs)

    monkeypatch.setattr(Message.objects, "bulk_create", poisoned)
    batch = [
        services.message_check(
            user=demo.bob, room_id=demo.lobby.pk, text=text, client_id=f"b{n}"
        )
        for n, text in enumerate(["m1", "m2", "poison", *[f"m{n}" for n in range(3, 51)]])
    ]
    results = services.message_create_many(batch)
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 1 and isinstance(refused[0], ValidationError)
    assert isinstance(results[2], ValidationError)
    texts = [t for _, t, _ in stored(demo.lobby.pk)]
    assert texts == ["m1", "m2", *[f"m{n}" for n in range(3, 51)]]
    assert [o for o, _, _ in stored(demo.lobby.pk)] == list(range(1, 51))


def test_post_messages_with_a_repeated_client_id_answers_200_with_the_first(demo: Demo) -> None:
    client = APIClient()
    client.force_authenticate(demo.alice)
    url = f"/api/rooms/{demo.lobby.pk}/messages/"
    first = client.post(url, {"text": "hello", "client_id": "k"}, format="json")
    repeat = client.post(url, {"text": "hello", "client_id": "k"}, format="json")
    assert (first.status_code, repeat.status_code) == (201, 200)
    assert repeat.json()["id"] == first.json()["id"]
    assert Message.objects.filter(room=demo.lobby).count() == 1


def test_a_deactivated_or_deleted_author_fails_alone_in_a_batch(demo: Demo) -> None:
    # The users were read when their sockets connected; since then carol was deactivated and
    # dave deleted. Their messages fail alone; the others are stored, in order, gapless.
    carol, dave = demo.carol, demo.dave
    items = [
        services.message_check(user=user, room_id=demo.lobby.pk, text=text, client_id="")
        for user, text in [
            (demo.alice, "a1"),
            (carol, "c1"),
            (demo.bob, "b1"),
            (dave, "d1"),
            (demo.alice, "a2"),
        ]
    ]
    type(carol).objects.filter(pk=carol.pk).update(is_active=False)
    type(dave).objects.filter(pk=dave.pk).delete()
    results = services.message_create_many(items)
    assert [type(r).__name__ for r in results] == [
        "Message",
        "PermissionDenied",
        "Message",
        "PermissionDenied",
        "Message",
    ]
    assert stored(demo.lobby.pk) == [(1, "a1", ""), (2, "b1", ""), (3, "a2", "")]


def test_a_bug_one_message_triggers_fails_that_message_only(
    demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Message.objects.bulk_create

    def buggy(objs: list[Message], *args: Any, **kwargs: Any) -> list[Message]:
        if any(message.text == "trigger" for message in objs):
            raise RuntimeError("a bug")
        return real(objs, *args, **kwargs)

    monkeypatch.setattr(Message.objects, "bulk_create", buggy)
    batch = [
        services.message_check(user=user, room_id=demo.lobby.pk, text=text, client_id="")
        for user, text in [(demo.bob, "b1"), (demo.alice, "trigger"), (demo.bob, "b2")]
    ]
    results = services.message_create_many(batch)
    assert isinstance(results[1], RuntimeError)
    assert [r.offset for r in results if isinstance(r, Message)] == [1, 2]
    assert [t for _, t, _ in stored(demo.lobby.pk)] == ["b1", "b2"]
