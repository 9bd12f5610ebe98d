"""Abuse against a real server: a replay storm, binary floods and socket caps.

One uvicorn worker on SQLite, real WebSocket clients. The storm is the one that used to keep
the server busy for 38 s after its clients had gone: sockets that each send 40
``subscribe {since: 0}`` on a 7,000-message room and drop the TCP connection at once.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import token_for
from tests.server import Server, run_server

# The storm's p99 bound holds on an idle machine: ./test runs this module alone.
pytestmark = [pytest.mark.server, pytest.mark.serial]

ROOM_SIZE = 7000
ATTACK_SOCKETS = 8
SUBSCRIBES_PER_SOCKET = 40
VICTIM_SUBSCRIBES = 100


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own (the storm must not slow other tests), with a 7,000-message room
    and small socket caps."""
    workdir: Path = tmp_path_factory.mktemp("limits")
    with run_server(
        workdir, RT_MAX_SOCKETS_PER_USER="20", RT_MAX_SOCKETS_PER_ADDRESS="200"
    ) as server:
        server.manage(
            "shell",
            "-c",
            "from django.contrib.auth.models import User\n"
            "from chat.models import Message, Room\n"
            "bob = User.objects.get(username='bob')\n"
            f"room = Room.objects.create(name='storm', last_offset={ROOM_SIZE})\n"
            "Message.objects.bulk_create([Message(room=room, author=bob, text=f'm{i}',"
            f" offset=i) for i in range(1, {ROOM_SIZE} + 1)], batch_size=1000)\n",
        )
        yield server


def storm_room(server: Server) -> int:
    out = server.manage(
        "shell", "-c", "from chat.models import Room; print(Room.objects.get(name='storm').pk)"
    )
    return int(out.split()[-1])


async def open_socket(server: Server, token: str) -> ClientConnection:
    return await connect(
        f"{server.ws}/ws/",
        origin=server.origin,  # type: ignore[arg-type]
        subprotocols=["townsquare", f"bearer.{token}"],  # type: ignore[list-item]
        open_timeout=5,
        max_size=None,
    )


async def answer(ws: ClientConnection, ref: int, timeout: float = 10) -> dict[str, object]:
    """The ack or error with ``ref``; events before it are skipped."""
    while True:
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
        if frame.get("ref") == ref:
            return dict(frame)
        assert frame.get("code") != "rate_limited", "the client itself went over the rate limit"


async def attack_wave(server: Server, token: str, room: int) -> None:
    # Each socket writes its 40 subscribes in one go, then drops the connection without a
    # close handshake, as a client that never meant to read the answers.
    frame = orjson.dumps({"type": "subscribe", "stream": f"chat:room:{room}", "since": 0})

    async def one() -> None:
        ws = await open_socket(server, token)
        for _ in range(SUBSCRIBES_PER_SOCKET):
            await ws.send(frame.decode())
        ws.transport.abort()

    await asyncio.gather(*(one() for _ in range(ATTACK_SOCKETS)))


async def test_a_replay_storm_does_not_slow_other_users_subscribe(limited: Server) -> None:
    room = storm_room(limited)
    attacker = token_for(limited, "bob")
    victim = await open_socket(limited, token_for(limited, "alice"))
    stream = f"chat:room:{room}"
    stop = asyncio.Event()
    waves = 0

    async def attack() -> None:
        nonlocal waves
        while not stop.is_set():
            await attack_wave(limited, attacker, room)
            waves += 1
            await asyncio.sleep(0.5)

    attacking = asyncio.create_task(attack())
    latencies: list[float] = []
    try:
        for ref in range(1, VICTIM_SUBSCRIBES + 1):
            started = time.perf_counter()
            subscribe = {"type": "subscribe", "stream": stream, "ref": ref}
            await victim.send(orjson.dumps(subscribe).decode())
            ack = await answer(victim, ref)
            latencies.append(time.perf_counter() - started)
            assert (ack["type"], ack["for"]) == ("ack", "subscribe")
            unsubscribe = {"type": "unsubscribe", "stream": stream, "ref": -ref}
            await victim.send(orjson.dumps(unsubscribe).decode())
            assert (await answer(victim, -ref))["type"] == "ack"
            # Two frames per round, under the default 20 frames/s.
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await attacking
    await victim.close()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"\nstorm: {waves} waves of {ATTACK_SOCKETS}x{SUBSCRIBES_PER_SOCKET} subscribes; "
        f"victim subscribe median {statistics.median(latencies) * 1e3:.1f} ms, "
        f"p99 {p99 * 1e3:.1f} ms, max {latencies[-1] * 1e3:.1f} ms"
    )
    assert waves >= 3
    assert p99 < 0.050


async def test_a_burst_of_replays_is_refused_after_the_budget(limited: Server) -> None:
    room = storm_room(limited)
    ws = await open_socket(limited, token_for(limited, "carol"))
    stream = f"chat:room:{room}"
    refs = range(1, 6)
    for ref in refs:
        subscribe = {"type": "subscribe", "stream": stream, "since": 0, "ref": ref}
        await ws.send(orjson.dumps(subscribe).decode())
    answers = [await answer(ws, ref) for ref in refs]
    # A replay runs while the budget (2,000 rows) is above zero and is charged after: two
    # spend it, the third leaves a debt of ~1,000 rows, repaid at 1,000 rows a second.
    assert [(a["type"], a.get("replayed")) for a in answers[:3]] == [("ack", 1000)] * 3
    assert [a.get("code") for a in answers[3:]] == ["rate_limited", "rate_limited"]
    assert 0.5 < float(answers[3]["retry_after"]) <= 1.0  # type: ignore[arg-type]
    await ws.close()


async def test_binary_frames_close_with_1003_and_write_no_log_line(limited: Server) -> None:
    before = limited.log().count("\n")
    ws = await connect(f"{limited.ws}/ws/", origin=limited.origin)  # type: ignore[arg-type]
    with pytest.raises(ConnectionClosed):
        for _ in range(10_000):
            await ws.send(b"\x00" * 64)
        await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 1003
    assert ws.close_reason == "binary frames are not accepted"
    # The open and the close, not one line per frame.
    assert limited.log().count("\n") - before <= 4


async def test_sockets_over_the_per_user_cap_are_refused_with_429(limited: Server) -> None:
    token = token_for(limited, "dave")
    sockets = [await open_socket(limited, token) for _ in range(20)]
    with pytest.raises(InvalidStatus) as refused:
        await open_socket(limited, token)
    response = refused.value.response
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "10"
    assert orjson.loads(response.body)["code"] == "too_many_connections"
    await sockets.pop().close()
    again = await open_socket(limited, token)
    await again.send(orjson.dumps({"type": "ping", "ref": 1}).decode())
    assert (await answer(again, 1))["type"] == "pong"
    for ws in [*sockets, again]:
        await ws.close()
