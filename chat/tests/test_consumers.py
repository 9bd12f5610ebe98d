"""Chat over sockets: `chat.send` on /ws/, the room stream, and the seed endpoints."""

from __future__ import annotations

import asyncio
import threading

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from chat import services
from chat.models import Message
from chat.writer import get_writer
from realtime.tests.conftest import communicator, send, session_cookie
from realtime.tests.conftest import receive as receive_any

from .conftest import Demo

pytestmark = pytest.mark.django_db(transaction=True)


async def receive(comm: WebsocketCommunicator, timeout: float = 2) -> dict:
    """The next frame that is not a presence event (those have tests of their own)."""
    while True:
        frame = await receive_any(comm, timeout)
        if not str(frame.get("event", "")).startswith("presence."):
            return frame


async def signed_in(user: User, path: str = "/ws/") -> WebsocketCommunicator:
    comm = communicator(path, cookie=await database_sync_to_async(session_cookie)(user))
    connected, _ = await comm.connect()
    assert connected
    return comm


async def subscribe(comm: WebsocketCommunicator, stream: str, **extra: object) -> dict:
    await send(comm, {"type": "subscribe", "stream": stream, **extra})
    ack = await receive(comm)
    assert ack["type"] == "ack", ack
    members = await receive(comm)
    assert members["event"] == "chat.members"
    return ack


async def test_send_reaches_every_subscriber_and_acks_the_sender(demo: Demo) -> None:
    alice, bob = await signed_in(demo.alice), await signed_in(demo.bob)
    stream = f"chat:room:{demo.lobby.pk}"
    await subscribe(alice, stream)
    await subscribe(bob, stream)
    await send(
        alice,
        {
            "type": "chat.send",
            "room": demo.lobby.pk,
            "text": "hello bob",
            "client_id": "tab1-1",
            "ref": 9,
        },
    )
    frames = [await receive(alice), await receive(alice)]
    ack = next(f for f in frames if f["type"] == "ack")
    event = next(f for f in frames if f["type"] == "event")
    assert ack == {
        "type": "ack",
        "ref": 9,
        "for": "chat.send",
        "client_id": "tab1-1",
        "stream": stream,
        "id": ack["id"],
        "offset": 1,
        "duplicate": False,
    }
    at_bob = await receive(bob)
    assert at_bob == event
    assert at_bob["offset"] == 1
    assert at_bob["event"] == "chat.message"
    assert at_bob["data"]["text"] == "hello bob"
    assert at_bob["data"]["author"] == {"id": demo.alice.pk, "username": "alice"}
    assert at_bob["data"]["id"] == ack["id"]
    assert at_bob["data"]["created_at"].endswith("+00:00")
    for comm in (alice, bob):
        await comm.disconnect()


async def test_subscribe_snapshot_lists_members(demo: Demo) -> None:
    alice = await signed_in(demo.alice)
    await send(alice, {"type": "subscribe", "stream": f"chat:room:{demo.staff.pk}"})
    assert (await receive(alice))["type"] == "ack"
    snapshot = await receive(alice)
    assert snapshot["data"] == {
        "members": [
            {"id": demo.alice.pk, "username": "alice"},
            {"id": demo.bob.pk, "username": "bob"},
        ]
    }
    await alice.disconnect()


async def test_non_member_gets_forbidden_on_a_private_room(demo: Demo) -> None:
    carol = await signed_in(demo.carol)
    await send(carol, {"type": "subscribe", "stream": f"chat:room:{demo.staff.pk}", "ref": 1})
    error = await receive(carol)
    assert (error["type"], error["code"], error["ref"]) == ("error", "forbidden", 1)
    await send(carol, {"type": "chat.send", "room": demo.staff.pk, "text": "hi", "ref": 2})
    error = await receive(carol)
    assert (error["code"], error["ref"]) == ("forbidden", 2)
    assert await database_sync_to_async(Message.objects.count)() == 0
    await carol.disconnect()


async def test_anonymous_cannot_read_or_send(demo: Demo) -> None:
    comm = communicator()
    assert (await comm.connect())[0]
    await send(comm, {"type": "subscribe", "stream": f"chat:room:{demo.lobby.pk}"})
    assert (await receive(comm))["code"] == "unauthenticated"
    await send(comm, {"type": "chat.send", "room": demo.lobby.pk, "text": "hi"})
    assert (await receive(comm))["code"] == "unauthenticated"
    await comm.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"room": "1", "text": "x"}, "invalid"),
        ({"text": "x"}, "invalid"),
        ({"room": 1, "text": ""}, "invalid"),
        ({"room": 1, "text": {"a": 1}}, "invalid"),
        ({"room": 1, "text": "x" * 4001}, "invalid"),
        ({"room": 1, "text": "x", "client_id": 12}, "invalid"),
        # PostgreSQL refuses NUL in text: checked before the group commit, on every database.
        ({"room": 1, "text": "a\x00b"}, "invalid"),
        ({"room": 1, "text": "x", "client_id": "c\x00"}, "invalid"),
        ({"room": 424242, "text": "x"}, "not_found"),
        ({"room": 1, "text": "x", "client_id": "ok"}, None),
    ],
)
async def test_chat_send_validation(demo: Demo, frame: dict, code: str | None) -> None:
    if frame.get("room") == 1:
        frame = {**frame, "room": demo.lobby.pk}
    alice = await signed_in(demo.alice)
    await send(alice, {"type": "chat.send", "ref": "r", **frame})
    reply = await receive(alice)
    if code is None:
        assert reply["type"] == "ack"
        assert await database_sync_to_async(Message.objects.count)() == 1
    else:
        assert (reply["type"], reply["code"], reply["ref"]) == ("error", code, "r")
        assert await database_sync_to_async(Message.objects.count)() == 0
    await alice.disconnect()


async def test_unknown_room_stream(demo: Demo) -> None:
    alice = await signed_in(demo.alice)
    for stream, code in (("chat:room:999999", "not_found"), ("chat:room:abc", "not_found")):
        await send(alice, {"type": "subscribe", "stream": stream})
        assert (await receive(alice))["code"] == code
    await alice.disconnect()


async def test_reconnect_with_since_receives_exactly_the_missed_messages(demo: Demo) -> None:
    stream = f"chat:room:{demo.lobby.pk}"
    bob = await signed_in(demo.bob)
    await subscribe(bob, stream)
    create = database_sync_to_async(services.message_create)
    await create(user=demo.alice, room_id=demo.lobby.pk, text="m1")
    seen = await receive(bob)
    assert seen["offset"] == 1
    await bob.disconnect()
    for text in ("m2", "m3", "m4"):
        await create(user=demo.alice, room_id=demo.lobby.pk, text=text)
    bob = await signed_in(demo.bob)
    ack = await subscribe(bob, stream, since=seen["offset"])
    assert (ack["replayed"], ack["truncated"]) == (3, False)
    replay = [await receive(bob) for _ in range(3)]
    assert [(f["offset"], f["data"]["text"]) for f in replay] == [(2, "m2"), (3, "m3"), (4, "m4")]
    await create(user=demo.alice, room_id=demo.lobby.pk, text="m5")
    live = await receive(bob)
    assert (live["offset"], live["data"]["text"]) == (5, "m5")
    assert await bob.receive_nothing(timeout=0.1)
    await bob.disconnect()


async def test_membership_events_reach_subscribers(demo: Demo) -> None:
    alice = await signed_in(demo.alice)
    await subscribe(alice, f"chat:room:{demo.random.pk}")
    await database_sync_to_async(services.room_join)(user=demo.dave, room_id=demo.random.pk)
    joined = await receive(alice)
    assert (joined["event"], joined["data"]) == (
        "chat.member_joined",
        {"user": {"id": demo.dave.pk, "username": "dave"}},
    )
    assert "offset" not in joined
    await alice.disconnect()


async def test_sends_that_queue_behind_a_write_go_in_as_one_batch(
    demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hold the first batch in the database thread; the sends that arrive meanwhile must go in
    # together as the second batch, each acked with its own gapless offset, in order.
    release, entered = threading.Event(), threading.Event()
    batches: list[list[str]] = []
    real = services.message_create_many

    def held(batch: list[services.NewMessage]) -> list[Message | Exception]:
        batches.append([m.text for m in batch])
        if len(batches) == 1:
            entered.set()
            assert release.wait(10)
        return real(batch)

    monkeypatch.setattr(services, "message_create_many", held)
    writer = get_writer()
    alice, bob = await signed_in(demo.alice), await signed_in(demo.bob)
    stream = f"chat:room:{demo.lobby.pk}"
    await subscribe(bob, stream)
    await send(alice, {"type": "chat.send", "room": demo.lobby.pk, "text": "first", "ref": 0})
    assert await asyncio.to_thread(entered.wait, 5)  # the first write is in the thread
    for n in range(1, 21):
        sender = alice if n % 2 else bob
        await send(sender, {"type": "chat.send", "room": demo.lobby.pk, "text": f"m{n}", "ref": n})
    for comm in (alice, bob):  # a pong after each socket's sends: they were all read
        await send(comm, {"type": "ping", "ref": "after"})
    while (await receive(alice)).get("ref") != "after":
        pass
    while (await receive(bob)).get("ref") != "after":
        pass
    release.set()
    acks: dict[int, int] = {}
    events: list[tuple[int, str]] = []
    while len(events) < 21:
        frame = await receive(bob, timeout=5)
        if frame["type"] == "ack":
            acks[frame["ref"]] = frame["offset"]
        elif frame.get("event") == "chat.message":
            events.append((frame["offset"], frame["data"]["text"]))
    # Gapless, and each socket's messages in the order it sent them (the two sockets'
    # frames may interleave either way).
    assert [offset for offset, _ in events] == list(range(1, 22))
    assert events[0] == (1, "first")
    offset_of = {text: offset for offset, text in events}
    for parity in (1, 0):
        mine = [offset_of[f"m{n}"] for n in range(1, 21) if n % 2 == parity]
        assert mine == sorted(mine)
    assert batches[0] == ["first"]
    assert sorted(batches[1], key=lambda t: int(t[1:])) == [f"m{n}" for n in range(1, 21)]
    assert len(batches) == 2
    while len(acks) < 10:  # bob's own acks (even refs) may trail his events
        frame = await receive(bob, timeout=5)
        if frame["type"] == "ack":
            acks[frame["ref"]] = frame["offset"]
    assert acks == {n: offset_of[f"m{n}"] for n in range(2, 21, 2)}
    assert writer.batches >= 2
    await alice.disconnect()
    await bob.disconnect()


# --- seed endpoints ---------------------------------------------------------------------------


async def test_seed_003_chat_by_room_name(demo: Demo) -> None:
    alice = await signed_in(demo.alice, "/ws/chat/lobby/")
    bob = await signed_in(demo.bob, "/ws/chat/lobby/")
    await alice.send_json_to({"message": "hi from seed", "username": "mallory"})
    expected = {"message": "hi from seed", "username": "alice"}
    assert await receive(alice) == expected
    assert await receive(bob) == expected
    stored = await database_sync_to_async(Message.objects.select_related("author").get)()
    assert (stored.text, stored.author.username, stored.room_id) == (
        "hi from seed",
        "alice",
        demo.lobby.pk,
    )
    for comm in (alice, bob):
        await comm.disconnect()


async def test_seed_endpoints_and_native_protocol_hear_each_other(demo: Demo) -> None:
    seed = await signed_in(demo.bob, f"/ws/chat/room/{demo.lobby.pk}")
    native = await signed_in(demo.alice)
    await subscribe(native, f"chat:room:{demo.lobby.pk}")
    await send(native, {"type": "chat.send", "room": demo.lobby.pk, "text": "native"})
    assert await receive(seed) == {"message": "native", "username": "alice"}
    await seed.send_json_to({"message": "seed"})
    frames = [await receive(native) for _ in range(3)]
    texts = [f["data"]["text"] for f in frames if f["type"] == "event"]
    assert texts == ["native", "seed"]
    assert await receive(seed) == {"message": "seed", "username": "bob"}
    # Membership events are not part of the seed protocol.
    await database_sync_to_async(services.room_join)(user=demo.dave, room_id=demo.lobby.pk)
    assert await seed.receive_nothing(timeout=0.1)
    for comm in (seed, native):
        await comm.disconnect()


async def test_seed_endpoints_new_room_name_creates_a_public_room(demo: Demo) -> None:
    carol = await signed_in(demo.carol, "/ws/chat/newbox/")
    await carol.send_json_to({"message": "first"})
    assert await receive(carol) == {"message": "first", "username": "carol"}
    await carol.disconnect()


async def test_seed_endpoints_refuse_anonymous_and_non_members(demo: Demo) -> None:
    anonymous = communicator("/ws/chat/lobby/")
    connected, code = await anonymous.connect()
    assert (connected, code) == (False, 4001)
    carol = communicator(
        f"/ws/chat/room/{demo.staff.pk}",
        cookie=await database_sync_to_async(session_cookie)(demo.carol),
    )
    connected, code = await carol.connect()
    assert (connected, code) == (False, 4003)
    missing = communicator(
        "/ws/chat/room/999999", cookie=await database_sync_to_async(session_cookie)(demo.bob)
    )
    assert (await missing.connect())[0] is False


async def test_seed_endpoint_bad_input_gets_an_error_and_stays_open(demo: Demo) -> None:
    bob = await signed_in(demo.bob, "/ws/chat/lobby/")
    await bob.send_to(text_data="not json")
    assert (await receive(bob))["code"] == "bad_json"
    await bob.send_json_to({"text": "wrong key"})
    assert (await receive(bob))["code"] == "invalid"
    await bob.send_json_to({"message": ""})
    assert (await receive(bob))["code"] == "invalid"
    await bob.send_json_to({"message": "still here"})
    assert await receive(bob) == {"message": "still here", "username": "bob"}
    await bob.disconnect()
