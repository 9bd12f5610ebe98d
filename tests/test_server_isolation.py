"""One user's bad message fails alone: a real server on SQLite and on PostgreSQL.

Bob pipelines 50 messages while alice's poisoned ones (the inputs that used to fail a whole
group commit: a NUL, which PostgreSQL refuses; a room id past 64 bits, which SQLite's driver
cannot bind) go to the same writer. Bob's 50 are stored in his order with gapless offsets;
alice's are refused with their own error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import token_for
from tests.server import Server, run_server_on

pytestmark = pytest.mark.server

GOOD = 50


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp(f"isolation-{request.param}")
    with run_server_on(
        request.param, workdir, RT_FRAMES_PER_SECOND="1000", RT_FRAME_BURST="1000"
    ) as running:
        yield running


async def open_socket(server: Server, username: str) -> ClientConnection:
    token = token_for(server, username)
    return await connect(
        f"{server.ws}/ws/",
        origin=server.origin,  # type: ignore[arg-type]
        subprotocols=["townsquare", f"bearer.{token}"],  # type: ignore[list-item]
        open_timeout=5,
    )


async def answers(ws: ClientConnection, refs: set[Any]) -> dict[Any, dict[str, Any]]:
    """The ack or error of each ref (events skipped)."""
    got: dict[Any, dict[str, Any]] = {}
    while set(got) != refs:
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame.get("ref") in refs:
            got[frame["ref"]] = frame
    return got


def lobby_id(server: Server) -> int:
    out = server.manage(
        "shell", "-c", "from chat.models import Room; print(Room.objects.get(name='lobby').pk)"
    )
    return int(out.split()[-1])


def stored(server: Server, room: int) -> list[tuple[int, str, str]]:
    out = server.manage(
        "shell",
        "-c",
        "import json; from chat.models import Message; print(json.dumps(list(Message.objects"
        f".filter(room_id={room}).order_by('offset')"
        ".values_list('offset', 'author__username', 'text'))))",
    )
    return [tuple(row) for row in orjson.loads(out.strip().splitlines()[-1])]


async def test_a_poisoned_message_among_another_users_pipelined_sends_fails_alone(
    server: Server,
) -> None:
    room = lobby_id(server)
    before = stored(server, room)
    bob, alice = await open_socket(server, "bob"), await open_socket(server, "alice")
    poisons = {
        "nul": {"type": "chat.send", "room": room, "text": "a\x00b", "client_id": "p1"},
        "huge-room": {"type": "chat.send", "room": 2**63, "text": "x", "client_id": "p2"},
        "nul-id": {"type": "chat.send", "room": room, "text": "ok", "client_id": "p\x00"},
    }

    async def send_bob() -> None:
        for n in range(GOOD):
            frame = {
                "type": "chat.send",
                "room": room,
                "text": f"bob {n}",
                "client_id": f"b{n}",
                "ref": n,
            }
            await bob.send(orjson.dumps(frame).decode())
            if n in (10, 25, 40):
                await asyncio.sleep(0)  # let alice's frames in between

    async def send_alice() -> None:
        for ref, frame in poisons.items():
            await alice.send(orjson.dumps({**frame, "ref": ref}).decode())

    await asyncio.gather(send_bob(), send_alice())
    bob_answers = await answers(bob, set(range(GOOD)))
    alice_answers = await answers(alice, set(poisons))
    assert [bob_answers[n]["type"] for n in range(GOOD)] == ["ack"] * GOOD
    offsets = [bob_answers[n]["offset"] for n in range(GOOD)]
    first = len(before) + 1
    assert offsets == list(range(first, first + GOOD))
    assert {ref: (a["type"], a["code"]) for ref, a in alice_answers.items()} == {
        "nul": ("error", "invalid"),
        "huge-room": ("error", "not_found"),
        "nul-id": ("error", "invalid"),
    }
    after = stored(server, room)[len(before) :]
    assert after == [(first + n, "bob", f"bob {n}") for n in range(GOOD)]
    await bob.close()
    await alice.close()
