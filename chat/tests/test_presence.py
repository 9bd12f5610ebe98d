"""Presence and typing in rooms, and live revocation of a removed member's subscription."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from realtime import events, presence
from realtime.publish import apublish
from realtime.tests.conftest import communicator, receive, send, session_cookie

from .conftest import Demo

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def marker_events() -> Iterator[None]:
    """The markers these tests publish to see that nothing came before them, declared on
    ``chat:room`` for the test (every published event is validated in tests)."""
    with events.override():
        for name in ("test.marker", "test.after", "test.still"):
            events.declare("chat:room", name, dict[str, Any])
        yield


@pytest.fixture(autouse=True)
def fresh_presence(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(presence, "_store", presence.MemoryStore())
    yield
    presence.local_entries.clear()


async def socket_for(user: User) -> WebsocketCommunicator:
    comm = communicator(cookie=await database_sync_to_async(session_cookie)(user))
    assert (await comm.connect())[0]
    return comm


async def join_room(comm: WebsocketCommunicator, stream: str) -> list[dict[str, Any]]:
    """Subscribe; return the presence.state users."""
    await send(comm, {"type": "subscribe", "stream": stream})
    # Events of earlier subscriptions may still be on their way: start at this ack.
    while (ack := await receive(comm)).get("type") != "ack" or ack.get("stream") != stream:
        pass
    frames: list[dict[str, Any]] = []  # other streams' events may come in between
    while len(frames) < 2:
        frame = await receive(comm)
        if frame.get("stream") == stream:
            frames.append(frame)
    members, state = frames
    assert (members["event"], state["event"]) == ("chat.members", "presence.state")
    return list(state["data"]["users"])


async def next_event(comm: WebsocketCommunicator, name: str) -> dict[str, Any]:
    while True:
        frame = await receive(comm)
        if frame.get("event") == name:
            return frame


def who(user: User) -> dict[str, Any]:
    return {"id": user.pk, "username": user.username}


async def test_join_state_and_leave_count_each_user_once(demo: Demo) -> None:
    stream = f"chat:room:{demo.lobby.pk}"
    alice = await socket_for(demo.alice)
    assert await join_room(alice, stream) == [who(demo.alice)]
    assert (await next_event(alice, "presence.join"))["data"] == {"user": who(demo.alice)}
    bob1 = await socket_for(demo.bob)
    assert await join_room(bob1, stream) == [who(demo.alice), who(demo.bob)]
    assert (await next_event(alice, "presence.join"))["data"] == {"user": who(demo.bob)}
    bob2 = await socket_for(demo.bob)  # a second tab: no second join
    await join_room(bob2, stream)
    await bob1.disconnect()  # one tab closed: bob is still here
    await apublish(stream, "test.marker", {})
    assert (await receive(alice))["event"] == "test.marker"
    await bob2.disconnect()
    assert (await next_event(alice, "presence.leave"))["data"] == {"user": who(demo.bob)}
    await alice.disconnect()
    assert await presence.online(stream) == []


async def test_typing_reaches_the_room_and_is_rate_limited(demo: Demo) -> None:
    stream = f"chat:room:{demo.lobby.pk}"
    alice, bob = await socket_for(demo.alice), await socket_for(demo.bob)
    await join_room(alice, stream)
    await join_room(bob, stream)
    await send(bob, {"type": "typing", "stream": stream, "ref": 1})
    ack = await next_event_or_ack(bob, 1)
    assert (ack["for"], ack["sent"]) == ("typing", True)
    typing = await next_event(alice, "presence.typing")
    assert typing["data"] == {"user": who(demo.bob)}
    assert "offset" not in typing
    await send(bob, {"type": "typing", "stream": stream, "ref": 2})
    assert (await next_event_or_ack(bob, 2))["sent"] is False
    await apublish(stream, "test.marker", {})
    frame = await receive(alice)
    while frame.get("event") == "presence.join":
        frame = await receive(alice)
    assert frame["event"] == "test.marker"  # no second typing event
    for comm in (alice, bob):
        await comm.disconnect()


async def next_event_or_ack(comm: WebsocketCommunicator, ref: int) -> dict[str, Any]:
    while True:
        frame = await receive(comm)
        if frame.get("ref") == ref:
            return frame


async def test_typing_needs_a_subscribed_presence_stream(demo: Demo) -> None:
    from shop.models import Item

    alice = await socket_for(demo.alice)
    await send(alice, {"type": "typing", "stream": f"chat:room:{demo.lobby.pk}", "ref": 1})
    error = await receive(alice)
    assert (error["code"], error["ref"]) == ("invalid", 1)
    await send(alice, {"type": "typing", "stream": 5})
    assert (await receive(alice))["code"] == "invalid"
    item = await database_sync_to_async(lambda: Item.objects.first().pk)()  # type: ignore[union-attr]
    await send(alice, {"type": "subscribe", "stream": f"shop:item:{item}"})
    assert (await receive(alice))["type"] == "ack"
    await receive(alice)  # the stock snapshot
    await send(alice, {"type": "typing", "stream": f"shop:item:{item}"})
    error = await receive(alice)
    assert (error["code"], error["detail"]) == ("invalid", f"shop:item:{item} has no presence")
    await alice.disconnect()


async def test_a_removed_member_stops_hearing_a_private_room_at_once(demo: Demo) -> None:
    stream = f"chat:room:{demo.staff.pk}"
    alice, bob = await socket_for(demo.alice), await socket_for(demo.bob)
    await join_room(alice, stream)
    await join_room(bob, stream)
    await database_sync_to_async(demo.staff.members.remove)(demo.bob)
    error = await next_event_or_code(bob, "unsubscribed")
    assert error == {
        "type": "error",
        "code": "unsubscribed",
        "detail": "you are no longer a member of this private room",
        "stream": stream,
    }
    assert (await next_event(alice, "presence.leave"))["data"] == {"user": who(demo.bob)}
    await apublish(stream, "test.after", {})
    assert (await next_event(alice, "test.after"))["event"] == "test.after"
    assert await bob.receive_nothing(timeout=0.1)
    # bob may not come back, alice still may.
    await send(bob, {"type": "subscribe", "stream": stream})
    assert (await receive(bob))["code"] == "forbidden"
    for comm in (alice, bob):
        await comm.disconnect()


async def test_clearing_members_revokes_everyone_and_public_rooms_are_untouched(
    demo: Demo,
) -> None:
    staff, lobby = f"chat:room:{demo.staff.pk}", f"chat:room:{demo.lobby.pk}"
    alice = await socket_for(demo.alice)
    await join_room(alice, staff)
    await join_room(alice, lobby)
    await database_sync_to_async(demo.lobby.members.add)(demo.alice)
    await database_sync_to_async(demo.lobby.members.remove)(demo.alice)  # public: no revoke
    await database_sync_to_async(demo.staff.members.clear)()
    error = await next_event_or_code(alice, "unsubscribed")
    assert error["stream"] == staff
    await apublish(lobby, "test.still", {})
    assert (await next_event(alice, "test.still"))["stream"] == lobby
    await alice.disconnect()


async def next_event_or_code(comm: WebsocketCommunicator, code: str) -> dict[str, Any]:
    while True:
        frame = await receive(comm)
        if frame.get("code") == code:
            return frame


async def test_resubscribing_does_not_flicker_presence(demo: Demo) -> None:
    stream = f"chat:room:{demo.lobby.pk}"
    alice, bob = await socket_for(demo.alice), await socket_for(demo.bob)
    await join_room(alice, stream)
    await join_room(bob, stream)
    await next_event(alice, "presence.join")  # alice's own
    assert (await next_event(alice, "presence.join"))["data"] == {"user": who(demo.bob)}
    await join_room(bob, stream)  # again, on the same socket
    await apublish(stream, "test.marker", {})
    frame = await receive(alice)
    assert frame.get("event") == "test.marker", frame  # no leave, no join in between
    for comm in (alice, bob):
        await comm.disconnect()
