"""Integration: a real uvicorn process, real WebSocket clients, the embedded default."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from realtime.client import Client, Event
from tests.conftest import login_cookies, token_for
from tests.server import Server

pytestmark = pytest.mark.server

_refs = itertools.count(1)


def cookie_header(server: Server, username: str) -> str:
    cookies = login_cookies(server, username)
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


async def open_socket(
    server: Server,
    path: str = "/ws/",
    *,
    cookie: str | None = None,
    subprotocols: list[str] | None = None,
    origin: str | None = None,
) -> ClientConnection:
    headers = {"Cookie": cookie} if cookie else {}
    ws = await connect(
        server.ws + path,
        origin=origin or server.origin,  # type: ignore[arg-type]
        additional_headers=headers,
        subprotocols=subprotocols,  # type: ignore[arg-type]
        open_timeout=5,
    )
    # A fresh stash: ids of closed sockets are reused, and their events must not leak over.
    _stash[id(ws)] = []
    return ws


async def recv(ws: ClientConnection, timeout: float = 5) -> dict[str, Any]:
    frame: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
    return frame


# Events that arrived while a test waited for an ack, per socket, oldest first.
_stash: dict[int, list[dict[str, Any]]] = {}


async def call(ws: ClientConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Send a frame with a fresh ref; return its ack, error or pong, keeping events for later."""
    ref = next(_refs)
    await ws.send(orjson.dumps({**frame, "ref": ref}).decode())
    while True:
        reply = await recv(ws)
        if reply.get("ref") == ref and reply["type"] in ("ack", "error", "pong"):
            return reply
        _stash.setdefault(id(ws), []).append(reply)


async def next_event(ws: ClientConnection, event: str) -> dict[str, Any]:
    """The next ``event`` frame named ``event`` (stashed ones first); others are skipped."""
    stash = _stash.setdefault(id(ws), [])
    while stash:
        frame = stash.pop(0)
        if frame["type"] == "event" and frame["event"] == event:
            return frame
    while True:
        frame = await recv(ws)
        if frame["type"] == "event" and frame["event"] == event:
            return frame


async def next_message(client: Client, stream: str, timeout: float = 5) -> Event:
    """The next ``chat.message`` event of ``stream`` on ``client``; other events are skipped."""
    async with asyncio.timeout(timeout), client.events(stream) as events:
        async for event in events:
            if event.event == "chat.message":
                return event
    raise AssertionError("the client closed")


def lobby_id(server: Server, token: str) -> int:
    rooms = httpx.get(
        f"{server.http}/api/rooms/", headers={"Authorization": f"Bearer {token}"}
    ).json()
    return int(next(r["id"] for r in rooms if r["name"] == "lobby"))


async def test_two_users_chat_in_real_time(server: Server) -> None:
    alice_token = token_for(server, "alice")
    room = lobby_id(server, alice_token)
    stream = f"chat:room:{room}"
    # alice by JWT in the subprotocol header, bob by the session cookie of the login form.
    async with (
        Client(f"{server.ws}/ws/", token=alice_token) as alice,
        Client(f"{server.ws}/ws/", headers={"Cookie": cookie_header(server, "bob")}) as bob,
    ):
        for client in (alice, bob):
            ack = await client.subscribe(stream)
            assert (ack["type"], ack["stream"], ack["durable"]) == ("ack", stream, True)
        text = f"hello bob {uuid.uuid4()}"
        ack = await alice.send("chat.send", room=room, text=text, client_id="a-1")
        assert (ack["type"], ack["client_id"]) == ("ack", "a-1")
        event = await next_message(bob, stream)
        assert event.data["text"] == text
        assert event.data["author"]["username"] == "alice"
        assert event.offset == ack["offset"]
        reply = f"hi alice {uuid.uuid4()}"
        await bob.send("chat.send", room=room, text=reply)
        while (event := await next_message(alice, stream)).data["text"] != reply:
            pass
        assert event.data["author"]["username"] == "bob"


async def test_missed_messages_are_recovered_with_since(server: Server) -> None:
    token = token_for(server, "bob")
    room = lobby_id(server, token)
    stream = f"chat:room:{room}"
    async with Client(f"{server.ws}/ws/", token=token) as bob:
        await bob.subscribe(stream)
        await bob.send("chat.send", room=room, text="before the gap")
        last = (await next_message(bob, stream)).offset
    assert last is not None
    sent = []
    async with httpx.AsyncClient(
        base_url=server.http, headers={"Authorization": f"Bearer {token_for(server, 'carol')}"}
    ) as http:
        for i in range(5):
            response = await http.post(f"/api/rooms/{room}/messages/", json={"text": f"gap {i}"})
            assert response.status_code == 201
            sent.append(response.json()["offset"])
    async with Client(f"{server.ws}/ws/", token=token) as bob:
        ack = await bob.subscribe(stream, since=last)
        assert ack["replayed"] == 5
        replayed = [await next_message(bob, stream) for _ in range(5)]
    assert [e.offset for e in replayed] == sent == list(range(last + 1, last + 6))
    assert [e.data["text"] for e in replayed] == [f"gap {i}" for i in range(5)]


async def test_seed_003_client_protocol(server: Server) -> None:
    alice = await open_socket(server, "/ws/chat/lobby/", cookie=cookie_header(server, "alice"))
    bob = await open_socket(server, "/ws/chat/lobby/", cookie=cookie_header(server, "bob"))
    try:
        text = f"seed says {uuid.uuid4()}"
        await alice.send(orjson.dumps({"message": text, "username": "ignored"}).decode())
        for ws in (alice, bob):
            while (frame := await recv(ws))["message"] != text:
                pass
            assert frame == {"message": text, "username": "alice"}
    finally:
        await alice.close()
        await bob.close()


async def test_anonymous_and_foreign_origin_are_refused(server: Server) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await open_socket(server, "/ws/chat/lobby/")
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as foreign:
        await open_socket(server, origin="http://evil.example")
    assert foreign.value.response.status_code == 403


async def test_oversized_frame_is_closed_with_1009(server: Server) -> None:
    ws = await open_socket(server)
    await ws.send("x" * (64 * 1024 + 1))
    with pytest.raises(ConnectionClosed) as closed:
        await recv(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_tokens_never_reach_the_server_log(server: Server) -> None:
    token = token_for(server, "dave")
    ws = await open_socket(server, f"/ws/?token={token}")
    pong = await call(ws, {"type": "ping"})
    assert pong["type"] == "pong"
    await ws.close()
    ws = await open_socket(server, subprotocols=["townsquare", f"bearer.{token}"])
    await ws.close()
    log = server.log()
    assert "WebSocket /ws/?token=[redacted]" in log
    assert token not in log
    assert token.split(".")[2] not in log


async def test_concurrent_writers_reach_a_subscriber_in_offset_order(server: Server) -> None:
    """Django runs each HTTP request in its own thread, so publishes can overtake each other;
    the subscriber still sees every offset once, in order."""
    token = token_for(server, "carol")
    async with httpx.AsyncClient(
        base_url=server.http, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        room = lobby_id(server, token)
        ws = await open_socket(server, subprotocols=["townsquare", f"bearer.{token}"])
        await call(ws, {"type": "subscribe", "stream": f"chat:room:{room}"})
        posts = await asyncio.gather(
            *(http.post(f"/api/rooms/{room}/messages/", json={"text": f"c{i}"}) for i in range(40))
        )
    offsets = sorted(p.json()["offset"] for p in posts)
    assert offsets == list(range(offsets[0], offsets[0] + 40))
    seen = [(await next_event(ws, "chat.message"))["offset"] for _ in range(40)]
    assert seen == offsets
    await ws.close()
