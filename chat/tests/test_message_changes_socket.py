"""``chat.edit``, ``chat.delete`` and ``chat.react`` on ``/ws/``: acks, the events every
subscriber gets at the change's offset, replay with ``since``, and refusals."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from chat import services
from chat.models import Message, MessageChange
from realtime.tests.conftest import communicator, send

from .conftest import Demo
from .test_consumers import receive, signed_in, subscribe

pytestmark = pytest.mark.django_db(transaction=True)


#: Events that arrived while ``ask`` awaited an answer (the ack and the event a change
#: publishes may come in either order), per socket; ``event`` takes them first.
_early: dict[int, list[dict[str, Any]]] = {}


@pytest.fixture(autouse=True)
def _no_early_events() -> None:
    _early.clear()


async def ask(comm: WebsocketCommunicator, frame: dict[str, Any]) -> dict[str, Any]:
    """Send ``frame`` with a ref; return the answer to it (the ack or the error)."""
    await send(comm, {**frame, "ref": "q"})
    while True:
        reply = await receive(comm)
        if reply.get("ref") == "q":
            return reply
        _early.setdefault(id(comm), []).append(reply)


async def event(comm: WebsocketCommunicator) -> dict[str, Any]:
    """The socket's next event (one ``ask`` set aside first)."""
    early = _early.get(id(comm))
    frame = early.pop(0) if early else await receive(comm)
    assert frame["type"] == "event", frame
    return frame


async def say(demo_user: Any, room_id: int, text: str) -> Message:
    return await database_sync_to_async(services.message_create)(
        user=demo_user, room_id=room_id, text=text
    )


async def test_changes_reach_every_subscriber_at_their_offsets(demo: Demo) -> None:
    stream = f"chat:room:{demo.lobby.pk}"
    bob, carol = await signed_in(demo.bob), await signed_in(demo.carol)
    await subscribe(bob, stream)
    await subscribe(carol, stream)
    sent = await ask(bob, {"type": "chat.send", "room": demo.lobby.pk, "text": "helo"})
    message_id = sent["id"]
    assert (await event(carol))["event"] == "chat.message"
    assert (await event(bob))["event"] == "chat.message"

    edit = await ask(bob, {"type": "chat.edit", "message": message_id, "text": "hello"})
    assert edit == {"type": "ack", "ref": "q", "for": "chat.edit", "id": message_id,
                    "offset": 2, "changed": True}  # fmt: skip
    edited = await event(carol)
    assert (edited["event"], edited["offset"], edited["stream"]) == (
        "chat.message_edited",
        2,
        stream,
    )
    assert edited["data"]["id"] == message_id and edited["data"]["text"] == "hello"
    assert edited["data"]["edited_at"].endswith("+00:00")
    assert await event(bob) == edited

    react = await ask(carol, {"type": "chat.react", "message": message_id, "emoji": "👍"})
    assert react == {"type": "ack", "ref": "q", "for": "chat.react", "id": message_id,
                     "offset": 3, "changed": True,
                     "reactions": {"👍": [demo.carol.pk]}}  # fmt: skip
    reactions = await event(bob)
    assert (reactions["event"], reactions["offset"], reactions["data"]) == (
        "chat.reactions",
        3,
        {"id": message_id, "reactions": {"👍": [demo.carol.pk]}},
    )
    assert await event(carol) == reactions

    deleted = await ask(bob, {"type": "chat.delete", "message": message_id})
    assert deleted == {"type": "ack", "ref": "q", "for": "chat.delete", "id": message_id,
                       "offset": 4, "changed": True}  # fmt: skip
    gone = await event(carol)
    assert (gone["event"], gone["offset"], set(gone["data"])) == (
        "chat.message_deleted",
        4,
        {"id", "deleted_at"},
    )
    for comm in (bob, carol):
        await comm.disconnect()


async def test_a_change_that_changes_nothing_publishes_nothing(demo: Demo) -> None:
    stream = f"chat:room:{demo.lobby.pk}"
    message = await say(demo.bob, demo.lobby.pk, "same")
    bob = await signed_in(demo.bob)
    await subscribe(bob, stream)
    same = await ask(bob, {"type": "chat.edit", "message": message.pk, "text": " same "})
    assert (same["type"], same["changed"], same["offset"]) == ("ack", False, 1)
    on = await ask(bob, {"type": "chat.react", "message": message.pk, "emoji": "👍", "on": True})
    assert (on["changed"], on["offset"]) == (True, 2)
    assert (await event(bob))["event"] == "chat.reactions"
    retry = await ask(bob, {"type": "chat.react", "message": message.pk, "emoji": "👍", "on": True})
    assert (retry["changed"], retry["offset"], retry["reactions"]) == (
        False,
        2,
        {"👍": [demo.bob.pk]},
    )
    assert await bob.receive_nothing(timeout=0.1)
    await bob.disconnect()


async def test_reconnect_with_since_replays_messages_and_changes_in_order(demo: Demo) -> None:
    """A client that saw up to offset 1 gets the rest interleaved and ends in the state the
    history API shows; the deleted message's text is in none of it."""
    stream = f"chat:room:{demo.lobby.pk}"
    first = await say(demo.bob, demo.lobby.pk, "first")  # 1
    edit = database_sync_to_async(services.message_edit)
    react = database_sync_to_async(services.message_react)
    await edit(user=demo.bob, message_id=first.pk, text="secret draft")  # 2
    second = await say(demo.carol, demo.lobby.pk, "second")  # 3
    await react(user=demo.dave, message_id=second.pk, emoji="🎉")  # 4
    await database_sync_to_async(services.message_delete)(user=demo.alice, message_id=first.pk)  # 5
    await edit(user=demo.carol, message_id=second.pk, text="second!")  # 6

    carol = await signed_in(demo.carol)
    ack = await subscribe(carol, stream, since=1)
    assert (ack["replayed"], ack["truncated"]) == (5, False)
    replay = [await receive(carol) for _ in range(5)]
    assert [(f["offset"], f["event"]) for f in replay] == [
        (2, "chat.message_edited"),
        (3, "chat.message"),
        (4, "chat.reactions"),
        (5, "chat.message_deleted"),
        (6, "chat.message_edited"),
    ]
    assert replay[0]["data"]["text"] == ""  # the deleted message's edit, emptied
    assert "secret" not in str(replay)
    # The replayed chat.message shows the current state.
    assert replay[1]["data"]["text"] == "second!"
    assert replay[1]["data"]["reactions"] == {"🎉": [demo.dave.pk]}
    # Live events continue after the replay, at the next offset.
    live = await ask(carol, {"type": "chat.react", "message": second.pk, "emoji": "🎉"})
    assert (live["offset"], live["reactions"]) == (7, {"🎉": [demo.dave.pk, demo.carol.pk]})
    pushed = await event(carol)
    assert (pushed["event"], pushed["offset"]) == ("chat.reactions", 7)
    await carol.disconnect()
    count = await database_sync_to_async(MessageChange.objects.count)()
    assert count == 5


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "chat.edit", "message": "1", "text": "x"}, "invalid"),
        ({"type": "chat.edit", "text": "x"}, "invalid"),
        ({"type": "chat.edit", "message": True, "text": "x"}, "invalid"),
        ({"type": "chat.edit", "message": "MID", "text": 5}, "invalid"),
        ({"type": "chat.edit", "message": "MID", "text": ""}, "invalid"),
        ({"type": "chat.edit", "message": "MID", "text": "x" * 4001}, "invalid"),
        ({"type": "chat.edit", "message": "MID"}, "invalid"),
        ({"type": "chat.edit", "message": 987654, "text": "x"}, "not_found"),
        ({"type": "chat.edit", "message": -3, "text": "x"}, "not_found"),
        ({"type": "chat.delete", "message": None}, "invalid"),
        ({"type": "chat.delete", "message": 987654}, "not_found"),
        ({"type": "chat.react", "message": "MID", "emoji": "a b"}, "invalid"),
        ({"type": "chat.react", "message": "MID", "emoji": ""}, "invalid"),
        ({"type": "chat.react", "message": "MID", "emoji": "x" * 33}, "invalid"),
        ({"type": "chat.react", "message": "MID", "emoji": 7}, "invalid"),
        ({"type": "chat.react", "message": "MID"}, "invalid"),
        ({"type": "chat.react", "message": "MID", "emoji": "👍", "on": "yes"}, "invalid"),
        ({"type": "chat.react", "message": "MID", "emoji": "👍", "on": 1}, "invalid"),
        ({"type": "chat.react", "message": 987654, "emoji": "👍"}, "not_found"),
    ],
)
async def test_bad_frames_are_refused_and_change_nothing(
    demo: Demo, frame: dict[str, Any], code: str
) -> None:
    message = await say(demo.bob, demo.lobby.pk, "x")
    if frame.get("message") == "MID":
        frame = {**frame, "message": message.pk}
    bob = await signed_in(demo.bob)
    reply = await ask(bob, frame)
    assert (reply["type"], reply["code"]) == ("error", code), reply
    assert await database_sync_to_async(MessageChange.objects.count)() == 0
    await bob.disconnect()


async def test_who_may_do_what(demo: Demo) -> None:
    """Edit: the author only (not staff); delete: not another user; private room: a
    non-member gets not_found for all three; anonymous: unauthenticated."""
    lobby = await say(demo.bob, demo.lobby.pk, "x")
    private = await say(demo.bob, demo.staff.pk, "members only")
    alice, dave, carol = (
        await signed_in(demo.alice),
        await signed_in(demo.dave),
        await signed_in(demo.carol),
    )
    edit = {"type": "chat.edit", "message": lobby.pk, "text": "y"}
    assert (await ask(alice, edit))["code"] == "forbidden"
    assert (await ask(dave, edit))["code"] == "forbidden"
    assert (await ask(dave, {"type": "chat.delete", "message": lobby.pk}))["code"] == "forbidden"
    for frame in (
        {"type": "chat.edit", "message": private.pk, "text": "y"},
        {"type": "chat.delete", "message": private.pk},
        {"type": "chat.react", "message": private.pk, "emoji": "👍"},
    ):
        assert (await ask(carol, frame))["code"] == "not_found"
    anonymous = communicator()
    assert (await anonymous.connect())[0]
    for frame in (edit, {"type": "chat.delete", "message": lobby.pk}):
        assert (await ask(anonymous, frame))["code"] == "unauthenticated"
    assert await database_sync_to_async(MessageChange.objects.count)() == 0
    # A moderator of the room may delete; after that nobody edits or reacts.
    await database_sync_to_async(demo.lobby.moderators.add)(demo.dave)
    assert (await ask(dave, {"type": "chat.delete", "message": lobby.pk}))["changed"] is True
    bob = await signed_in(demo.bob)
    assert (await ask(bob, edit))["code"] == "not_found"
    react = {"type": "chat.react", "message": lobby.pk, "emoji": "👍"}
    assert (await ask(carol, react))["code"] == "not_found"
    again = await ask(bob, {"type": "chat.delete", "message": lobby.pk})
    assert (again["type"], again["changed"]) == ("ack", False)
    for comm in (alice, dave, carol, anonymous, bob):
        await comm.disconnect()
