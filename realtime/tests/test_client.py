"""realtime.client against a real server process (uvicorn, demo data), one per module.

A reconnect is caused two deterministic ways: the server process restarts on its port
(uvicorn closes every socket with 1012), and a TCP proxy between client and server that
can swallow the server's bytes (a lost ack) and cut every connection (1006).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from realtime.client import Client, ClientClosed, ClientError, Event, EventStream, _Stream
from tests.server import ROOT, Server, run_server, wait_serving

pytestmark = pytest.mark.server

PASSWORD = "townsquare-demo"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server(tmp_path_factory.mktemp("client")) as running:
        first = running.process
        yield running
        if running.process is not first:  # restarted by a test: run_server knows the first
            running.process.terminate()
            running.process.wait(timeout=10)


def restart(server: Server) -> None:
    """Stop the server process (uvicorn closes its sockets with 1012) and start another on
    the same port and database."""
    server.process.terminate()
    server.process.wait(timeout=15)
    with server.log_path.open("ab") as log:
        server.process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(server.port)],
            cwd=ROOT,
            env=server.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    wait_serving(f"{server.http}/accounts/login/", server.process, server.log)


#: Tokens by (port, username): each POST /api/token/ hashes a password (PBKDF2, ~1 s here).
_tokens: dict[tuple[int, str], str] = {}


async def token(server: Server, username: str, *, fresh: bool = False) -> str:
    """A JWT from ``POST /api/token/`` (one per user and server unless ``fresh``)."""
    key = (server.port, username)
    if fresh or key not in _tokens:
        async with httpx.AsyncClient(base_url=server.http) as http:
            response = await http.post(
                "/api/token/", json={"username": username, "password": PASSWORD}
            )
        assert response.status_code == 200, response.text
        _tokens[key] = str(response.json()["access"])
    return _tokens[key]


async def new_room(server: Server) -> int:
    """A fresh public room (offsets start at 1), created by alice (staff: no quota)."""
    async with httpx.AsyncClient(
        base_url=server.http, headers={"Authorization": f"Bearer {await token(server, 'alice')}"}
    ) as http:
        response = await http.post("/api/rooms/", json={"name": f"c-{uuid.uuid4().hex[:12]}"})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def post(server: Server, room: int, text: str, username: str = "carol") -> dict[str, Any]:
    async with httpx.AsyncClient(
        base_url=server.http, headers={"Authorization": f"Bearer {await token(server, username)}"}
    ) as http:
        response = await http.post(f"/api/rooms/{room}/messages/", json={"text": text})
    assert response.status_code == 201, response.text
    message: dict[str, Any] = response.json()
    return message


async def messages(client: Client, stream: str, n: int, timeout: float = 10) -> list[Event]:
    """The next ``n`` ``chat.message`` events of ``stream`` (other events are skipped)."""
    got: list[Event] = []
    async with asyncio.timeout(timeout), client.events(stream) as events:
        async for event in events:
            if event.event == "chat.message":
                got.append(event)
                if len(got) == n:
                    break
    return got


class Proxy:
    """A TCP proxy to the server that can swallow the server's bytes on the connections open
    now (``swallow()``; later ones pass) and cut every connection (``cut()``)."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.swallowing: set[asyncio.StreamWriter] = set()
        self.links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.tcp: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.tcp = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port = self.tcp.sockets[0].getsockname()[1]

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        self.links.append((writer, up_writer))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, down: bool) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    if not (down and dst in self.swallowing):
                        dst.write(data)
                        await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer, False), pump(up_reader, writer, True))

    def swallow(self) -> None:
        """From now on, drop what the server sends on the connections open now."""
        self.swallowing.update(down for down, _ in self.links)

    def cut(self) -> None:
        """Drop every connection without a close frame (the client sees 1006)."""
        for down, up in self.links:
            down.transport.abort()
            up.transport.abort()
        self.links.clear()
        self.swallowing.clear()

    async def stop(self) -> None:
        self.cut()
        if self.tcp is not None:
            self.tcp.close()


@pytest.fixture
async def proxy(server: Server) -> AsyncIterator[Proxy]:
    running = Proxy(server.port)
    await running.start()
    yield running
    await running.stop()


async def test_subscribe_replays_history_then_live_and_send_is_acked(server: Server) -> None:
    room = await new_room(server)
    stream = f"chat:room:{room}"
    history = [await post(server, room, f"h{i}") for i in range(3)]
    async with Client(f"{server.ws}/ws/", token=await token(server, "bob")) as client:
        ack = await client.subscribe(stream, since=1)
        assert (ack["for"], ack["stream"], ack["durable"], ack["replayed"]) == (
            "subscribe",
            stream,
            True,
            2,
        )
        sent = await client.send("chat.send", room=room, text="live one")
        assert sent["for"] == "chat.send" and sent["duplicate"] is False
        assert sent["offset"] == 4 and len(sent["client_id"]) == 32  # generated
        got = await messages(client, stream, 3)
    assert [e.offset for e in got] == [2, 3, 4]
    assert [(e.data["id"], e.data["text"]) for e in got[:2]] == [
        (m["id"], m["text"]) for m in history[1:]
    ]
    assert (got[2].data["text"], got[2].data["client_id"]) == ("live one", sent["client_id"])
    assert client.state == "closed" and client.last_offset(stream) == 4


async def test_error_frames_raise_client_error_and_the_socket_stays_usable(
    server: Server,
) -> None:
    room = await new_room(server)
    async with Client(f"{server.ws}/ws/", token=await token(server, "bob")) as client:
        cases: list[tuple[Any, str]] = [
            (client.send("chat.send", room=room, text="   "), "invalid"),
            (client.send("chat.send", room="one", text="x"), "invalid"),
            (client.send("chat.send", room=2**40, text="x"), "not_found"),
            (client.send("no.such.action"), "unknown_type"),
            (client.send("typing", stream=f"chat:room:{room}"), "invalid"),  # not subscribed
            (client.subscribe("has space"), "invalid"),
            (client.subscribe("nosuchkind:1"), "unknown_stream"),
            (client.subscribe("chat:room:999999999"), "not_found"),
            (client.subscribe("user:1"), "forbidden"),  # alice's inbox; bob asks
            (client.send("chat.send", room=room, text="x" * 70_000), "too_big"),
        ]
        for call, code in cases:
            with pytest.raises(ClientError) as raised:
                await call
            assert raised.value.code == code, raised.value
        with pytest.raises(ValueError):
            await client.subscribe(f"chat:room:{room}", since=-1)
        pong = await client.send("ping")
        assert pong["type"] == "pong" and isinstance(pong["time"], float)
        assert client.connections == 1  # no error closed the socket


async def test_refused_token_stops_unless_the_source_gives_a_new_one(server: Server) -> None:
    room = await new_room(server)
    async with Client(f"{server.ws}/ws/", token="not-a-jwt") as client:
        with pytest.raises(ClientClosed) as closed:
            await client.subscribe(f"chat:room:{room}")
    assert closed.value.close_code == 4001
    assert closed.value.error is not None and closed.value.error.reason == "token_invalid"
    assert client.connections == 1

    tokens = iter(["not-a-jwt", await token(server, "bob")])
    async with Client(f"{server.ws}/ws/", token=lambda: next(tokens), base_delay=0.05) as client:
        ack = await client.subscribe(f"chat:room:{room}")
        assert ack["for"] == "subscribe" and client.connections == 2 and client.close_code == 4001


async def test_server_restart_resumes_with_since_no_gap_no_duplicate(server: Server) -> None:
    room = await new_room(server)
    stream = f"chat:room:{room}"
    gate = asyncio.Event()
    calls = 0

    async def fresh_token() -> str:
        nonlocal calls
        calls += 1
        if calls > 1:
            await gate.wait()  # the reconnect waits until the missed messages are stored
        return await token(server, "bob", fresh=True)

    async with Client(f"{server.ws}/ws/", token=fresh_token, base_delay=0.1) as client:
        await client.subscribe(stream, since=0)
        for i in range(2):
            await client.send("chat.send", room=room, text=f"before {i}")
        before = await messages(client, stream, 2)
        await asyncio.to_thread(restart, server)
        missed = [await post(server, room, f"missed {i}") for i in range(3)]
        gate.set()
        after = await client.send("chat.send", room=room, text="after")
        rest = await messages(client, stream, 4)
        assert client.close_code == 1012 and client.connections == 2 and calls == 2
    assert [e.offset for e in before + rest] == [1, 2, 3, 4, 5, 6]
    assert [(e.data["id"], e.data["text"]) for e in rest[:3]] == [
        (m["id"], m["text"]) for m in missed
    ]
    assert (rest[3].data["text"], after["offset"], after["duplicate"]) == ("after", 6, False)


async def test_resend_after_a_lost_ack_is_stored_once(server: Server, proxy: Proxy) -> None:
    room = await new_room(server)
    stream = f"chat:room:{room}"
    bob = await token(server, "bob")
    async with (
        Client(f"{server.ws}/ws/", token=await token(server, "carol")) as watcher,
        Client(f"ws://127.0.0.1:{proxy.port}/ws/", token=bob, base_delay=0.05) as sender,
    ):
        await watcher.subscribe(stream)
        proxy.swallow()  # the server stores the message; its ack never reaches bob
        sending = asyncio.create_task(sender.send("chat.send", room=room, text="once"))
        (stored,) = await messages(watcher, stream, 1)
        assert not sending.done()
        proxy.cut()
        ack = await asyncio.wait_for(sending, 10)
        assert sender.close_code == 1006 and sender.connections == 2
    assert ack["duplicate"] is True
    assert (ack["id"], ack["offset"], ack["client_id"]) == (
        stored.data["id"],
        stored.offset,
        stored.data["client_id"],
    )
    async with httpx.AsyncClient(
        base_url=server.http, headers={"Authorization": f"Bearer {bob}"}
    ) as http:
        listed = (await http.get(f"/api/rooms/{room}/messages/")).json()
    assert [m["text"] for m in listed["results"]] == ["once"]


async def test_a_silent_socket_is_given_up_and_replaced(server: Server, proxy: Proxy) -> None:
    room = await new_room(server)
    states: list[str] = []
    reopened = asyncio.Event()

    def on_state(state: str) -> None:
        states.append(state)
        if states.count("open") == 2:
            reopened.set()

    async with Client(
        f"ws://127.0.0.1:{proxy.port}/ws/",
        token=await token(server, "bob"),
        ping_interval=0.1,
        dead_after=0.5,
        base_delay=0.05,
        on_state=on_state,
    ) as client:
        await client.subscribe(f"chat:room:{room}", since=0)
        proxy.swallow()  # pings go out, nothing comes back
        await asyncio.wait_for(reopened.wait(), 5)
        posted = await post(server, room, "seen after the new socket")
        (event,) = await messages(client, f"chat:room:{room}", 1)
        assert client.close_code == 1006
    assert event.offset == posted["offset"] == 1
    assert states[:3] == ["connecting", "open", "reconnecting"]


def test_backoff_is_full_jitter_capped() -> None:
    client = Client("ws://127.0.0.1:1/ws/", base_delay=0.5, max_delay=4.0)
    random.seed(7)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 4.0), (99, 4.0)]:
        delays = [client._delay(attempt) for _ in range(200)]
        assert min(delays) >= 0 and max(delays) <= ceiling
        assert max(delays) > ceiling * 0.9  # the whole range is used
    assert client.origin == "http://127.0.0.1:1"
    assert Client("wss://example.com/ws/").origin == "https://example.com"


async def test_offsets_are_delivered_once_and_unread_events_wait_for_the_next_reader() -> None:
    client = Client("ws://127.0.0.1:1/ws/")
    client._streams["s"] = _Stream("s", 2, asyncio.get_running_loop().create_future())
    for offset in (1, 2, 3, 3, 4, None, 5):
        frame = {"type": "event", "stream": "s", "event": "e", "data": {"o": offset}}
        client._deliver({**frame, "offset": offset} if offset else frame)
    client._deliver({"type": "event", "stream": "other", "event": "e", "data": {}, "offset": 9})
    async with client.events("s") as events:
        first = await anext(events)
    assert (first.offset, first.data) == (3, {"o": 3})
    rest = [e.offset async for e in _take(client.events(), 3)]
    assert rest == [4, None, 5]  # 1, 2 (since) and the repeated 3 dropped; "other" unknown
    assert client.last_offset("s") == 5


async def _take(events: EventStream, n: int) -> AsyncIterator[Event]:
    async with events:
        for _ in range(n):
            yield await anext(events)
