"""Integration: the scaled-out deployment, two worker processes behind nginx.

Two separate ``manage.py serve`` processes (backend A and backend B, one worker each) share a
scratch PostgreSQL database, a Redis key prefix and the secret key; nginx runs
``deploy/nginx.conf`` in front of them. HTTP, WebSocket upgrades and the token-free access
log are checked through nginx; "a client on A hears a client on B" connects to each
backend's own port, so that which backend holds which socket is known.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol

from realtime.tests.test_sse import sse
from tests.conftest import DEMO_PASSWORD
from tests.nginx import ACCESS_LOG, run_nginx
from tests.pg import scratch_postgres, scratch_redis
from tests.server import Server, run_server

pytestmark = pytest.mark.server

SOCKET_OPEN = re.compile(r"event=socket\.open path=/ws/ ")


@dataclass
class Deployment:
    a: Server
    b: Server
    nginx_port: int
    nginx_dir: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.nginx_port}"

    def access_log(self) -> str:
        path = self.nginx_dir / ACCESS_LOG
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("nginx-deployment")
    with (
        scratch_postgres() as database_url,
        scratch_redis() as (redis_url, prefix),
        # A migrates the database and loads the demo data; B only serves it. The same
        # workdir gives both the same STATIC_ROOT (collected once, by A).
        # TRUSTED_PROXIES: nginx runs on this host, as docs/operations.md documents.
        run_server(
            workdir,
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            REDIS_PREFIX=prefix,
            TRUSTED_PROXIES="127.0.0.1",
        ) as a,
        run_server(
            workdir,
            prepare=False,
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            REDIS_PREFIX=prefix,
            TRUSTED_PROXIES="127.0.0.1",
        ) as b,
        run_nginx(workdir / "nginx", [a.port, b.port]) as port,
    ):
        yield Deployment(a=a, b=b, nginx_port=port, nginx_dir=workdir / "nginx")


# --- helpers ---------------------------------------------------------------------------------


def token(base: str, username: str) -> str:
    response = httpx.post(
        f"{base}/api/token/", json={"username": username, "password": DEMO_PASSWORD}, timeout=10
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access"])


def user_id(access: str) -> int:
    """The user id in a token's ``sub`` (read, not verified: the server verifies)."""
    return int(jwt.decode(access, options={"verify_signature": False})["sub"])


async def open_socket(
    ws_base: str, origin: str, access: str | None = None, path: str = "/ws/"
) -> ClientConnection:
    subprotocols = [Subprotocol("townsquare"), Subprotocol(f"bearer.{access}")] if access else None
    return await connect(
        ws_base + path, origin=Origin(origin), subprotocols=subprotocols, open_timeout=10
    )


async def send(ws: ClientConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Send ``frame`` with a ref; return its ack (or error/pong), skipping other frames."""
    ref = uuid.uuid4().hex[:8]
    await ws.send(orjson.dumps({**frame, "ref": ref}).decode())
    while True:
        reply: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        if reply.get("ref") == ref and reply["type"] in ("ack", "error", "pong"):
            return reply


async def subscribe(ws: ClientConnection, stream: str) -> None:
    ack = await send(ws, {"type": "subscribe", "stream": stream})
    assert ack["type"] == "ack", ack


async def event(ws: ClientConnection, name: str, timeout: float = 10) -> dict[str, Any]:
    """The next event frame called ``name``."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {name} within {timeout} s"
        frame: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), remaining))
        if frame["type"] == "event" and frame["event"] == name:
            return frame


def item_id(base: str, name: str) -> int:
    items = httpx.get(f"{base}/api/items/", timeout=10).json()
    return int(next(i["id"] for i in items if i["name"] == name))


async def eventually(condition: Any, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


# --- through nginx ---------------------------------------------------------------------------


def test_http_through_nginx(deployment: Deployment) -> None:
    with httpx.Client(base_url=deployment.http, timeout=10, follow_redirects=False) as client:
        page = client.get("/accounts/login/")
        assert page.status_code == 200
        # Static files come from the application (ServeStatic) through the proxy.
        static = re.search(r'(?:href|src)="(/static/[^"]+)"', page.text)
        assert static, "the login page links no static file"
        assert client.get(static[1]).status_code == 200
        # The form login works through the proxy: Host reaches Django unchanged, so the CSRF
        # origin check agrees with the browser's Origin (host and port).
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert csrf
        login = client.post(
            "/accounts/login/",
            data={"username": "bob", "password": DEMO_PASSWORD, "csrfmiddlewaretoken": csrf[1]},
            headers={"Origin": deployment.http, "Referer": f"{deployment.http}/accounts/login/"},
        )
        assert login.status_code == 302, login.text
        assert client.get("/readyz").status_code == 200
        # /metrics is kept private at the proxy; each worker still serves its own.
        assert client.get("/metrics").status_code == 404
    assert httpx.get(f"{deployment.a.http}/metrics", timeout=10).status_code == 200
    access = token(deployment.http, "alice")
    rooms = httpx.get(
        f"{deployment.http}/api/rooms/", headers={"Authorization": f"Bearer {access}"}, timeout=10
    )
    assert rooms.status_code == 200 and any(r["name"] == "lobby" for r in rooms.json())


async def test_websockets_through_nginx_reach_both_backends(deployment: Deployment) -> None:
    a_before = len(SOCKET_OPEN.findall(deployment.a.log()))
    b_before = len(SOCKET_OPEN.findall(deployment.b.log()))

    def both_got_some() -> bool:
        return (
            len(SOCKET_OPEN.findall(deployment.a.log())) > a_before
            and len(SOCKET_OPEN.findall(deployment.b.log())) > b_before
        )

    sockets: list[ClientConnection] = []
    try:
        # least_conn alternates between idle backends; open sockets until each has one.
        while len(sockets) < 2 or not both_got_some():
            assert len(sockets) < 20, "nginx sent every socket to the same backend"
            ws = await open_socket(deployment.ws, deployment.http)
            sockets.append(ws)
            pong = await send(ws, {"type": "ping"})
            assert pong["type"] == "pong"
            if len(sockets) >= 2:
                await asyncio.sleep(0.1)  # the open line is logged by the server's thread
    finally:
        for ws in sockets:
            await ws.close()


async def test_the_access_log_holds_no_token(deployment: Deployment) -> None:
    access = token(deployment.http, "carol")
    ws = await connect(
        f"{deployment.ws}/ws/?token={access}", origin=Origin(deployment.http), open_timeout=10
    )
    try:
        # The token signed the socket in (user:<id> is only for its owner).
        await subscribe(ws, f"user:{user_id(access)}")
    finally:
        await ws.close()
    # nginx writes a WebSocket's line when the connection ends.
    await eventually(lambda: '"GET /ws/ ' in deployment.access_log(), "the socket's log line")
    log = deployment.access_log()
    assert re.search(r'"GET /ws/ HTTP/1\.1" 101 ', log), log
    assert access not in log
    assert "token=" not in log
    assert access.split(".")[2] not in log  # not even the signature


# --- a client on backend A hears a client on backend B ---------------------------------------


async def test_chat_crosses_backends(deployment: Deployment) -> None:
    a, b = deployment.a, deployment.b
    alice_token, bob_token = token(a.http, "alice"), token(b.http, "bob")
    async with httpx.AsyncClient(timeout=10) as http:
        rooms = (
            await http.get(
                f"{a.http}/api/rooms/", headers={"Authorization": f"Bearer {alice_token}"}
            )
        ).json()
    room = int(next(r["id"] for r in rooms if r["name"] == "lobby"))
    alice = await open_socket(a.ws, a.origin, alice_token)
    bob = await open_socket(b.ws, b.origin, bob_token)
    try:
        for ws in (alice, bob):
            await subscribe(ws, f"chat:room:{room}")
        text = f"from A {uuid.uuid4()}"
        ack = await send(alice, {"type": "chat.send", "room": room, "text": text})
        assert ack["type"] == "ack", ack
        heard = await event(bob, "chat.message")
        assert (heard["data"]["text"], heard["offset"]) == (text, ack["offset"])
        reply = f"from B {uuid.uuid4()}"
        await send(bob, {"type": "chat.send", "room": room, "text": reply})
        while (heard := await event(alice, "chat.message"))["data"]["text"] != reply:
            pass
        assert heard["data"]["author"]["username"] == "bob"
    finally:
        await alice.close()
        await bob.close()


async def test_stock_and_notifications_cross_backends(deployment: Deployment) -> None:
    a, b = deployment.a, deployment.b
    mug = item_id(a.http, "Ceramic mug")
    carol_token = token(a.http, "carol")  # carol watches the mug in the demo data
    carol = await open_socket(a.ws, a.origin, carol_token)
    watcher = await open_socket(a.ws, a.origin)  # anonymous: stock is public
    try:
        await subscribe(carol, f"user:{user_id(carol_token)}")
        await subscribe(watcher, f"shop:item:{mug}")
        await event(watcher, "shop.stock")  # the snapshot
        # dave buys on backend B, over HTTP.
        async with httpx.AsyncClient(timeout=10) as http:
            bought = await http.post(
                f"{b.http}/api/items/{mug}/purchase/",
                json={"quantity": 1},
                headers={"Authorization": f"Bearer {token(b.http, 'dave')}"},
            )
        assert bought.status_code == 201, bought.text
        stock = await event(watcher, "shop.stock")
        assert stock["data"]["quantity"] == bought.json()["remaining"]
        notification = await event(carol, "notification.created")
        assert notification["data"]["data"] == {"item": mug, "quantity": bought.json()["remaining"]}
    finally:
        await carol.close()
        await watcher.close()


async def test_the_dashboard_adds_up_sockets_of_both_backends(deployment: Deployment) -> None:
    a, b = deployment.a, deployment.b
    per_backend = 3
    dash = await open_socket(a.ws, a.origin, token(a.http, "bob"))
    others: list[ClientConnection] = []
    try:
        await subscribe(dash, "dashboard")
        on_b = [await open_socket(b.ws, b.origin) for _ in range(per_backend)]
        on_a = [await open_socket(a.ws, a.origin) for _ in range(per_backend)]
        others = on_a + on_b

        def by_backend(sockets: dict[str, Any]) -> dict[str, int]:
            # Worker keys are "<host>:<pid>:<id>"; one worker per serve process here.
            pids = {str(a.process.pid): "a", str(b.process.pid): "b"}
            counts = {"a": 0, "b": 0}
            for key, count in sockets["workers"].items():
                counts[pids[key.split(":")[1]]] += count
            return counts

        # Earlier tests' sockets may still be closing: wait for the exact numbers.
        want = {"a": per_backend + 1, "b": per_backend}
        deadline = time.monotonic() + 20
        while True:
            data = (await event(dash, "dashboard.update", deadline - time.monotonic()))["data"]
            if by_backend(data["sockets"]) == want:
                break
        assert data["sockets"]["total"] == 2 * per_backend + 1
        for ws in on_b:
            await ws.close()
        while True:
            data = (await event(dash, "dashboard.update", deadline - time.monotonic()))["data"]
            if data["sockets"]["total"] == per_backend + 1:
                break
        assert by_backend(data["sockets"]) == {"a": per_backend + 1, "b": 0}
    finally:
        for ws in others:
            await ws.close()
        await dash.close()


# --- Server-Sent Events (/sse/) ----------------------------------------------------------------


def bearer(access: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access}"}


def lobby_id(base: str, access: str) -> int:
    rooms = httpx.get(f"{base}/api/rooms/", headers=bearer(access), timeout=10).json()
    return int(next(r["id"] for r in rooms if r["name"] == "lobby"))


async def test_sse_through_nginx_streams_live_and_posts_are_answered(
    deployment: Deployment,
) -> None:
    mug = item_id(deployment.http, "Ceramic mug")
    dave = token(deployment.http, "dave")
    async with sse(deployment.http, f"stream=shop:item:{mug}", headers=bearer(dave)) as (
        client,
        records,
        post,
    ):
        await records.until(lambda f: f.get("ref") == f"shop:item:{mug}")
        await records.until(lambda f: f.get("event") == "shop.stock")  # the snapshot
        bought = await client.post(
            f"/api/items/{mug}/purchase/", json={"quantity": 1}, headers=bearer(dave)
        )
        assert bought.status_code == 201, bought.text
        # Not held in a proxy buffer: the event comes well before the first heartbeat
        # (15 s), which is all a buffer would have waited for.
        sent = time.monotonic()
        live, _ = await records.until(lambda f: f.get("event") == "shop.stock", timeout=15)
        assert time.monotonic() - sent < 5
        assert live["data"]["quantity"] == bought.json()["remaining"]
        # POSTs through nginx (least_conn sends them to the backend the stream is not on:
        # relayed) are answered on the stream, in order.
        for ref in range(3):
            frame = orjson.dumps({"type": "ping", "ref": ref})
            answer = await client.post(post, content=frame, headers=bearer(dave))
            assert answer.status_code == 202, answer.text
        pongs = [(await records.until(lambda f: f["type"] == "pong"))[0]["ref"] for _ in range(3)]
        assert pongs == [0, 1, 2]
    # nginx writes the stream's line when its connection ends.
    await eventually(lambda: '"GET /sse/ ' in deployment.access_log(), "the stream's log line")
    log = deployment.access_log()
    assert re.search(r'"GET /sse/ HTTP/1\.1" 200 ', log), log
    assert re.search(r'"POST /sse/[^ ]+/ HTTP/1\.1" 202 ', log), log


async def _curl_records(process: asyncio.subprocess.Process) -> AsyncIterator[dict[str, str]]:
    """The SSE records ``curl -N`` prints, parsed as ``Records.next`` does."""
    assert process.stdout is not None
    fields: dict[str, str] = {}
    async for raw in process.stdout:
        line = raw.decode().rstrip("\n")
        if not line:
            if fields:
                yield fields
            fields = {}
            continue
        name, _, value = line.partition(":")
        fields[name or "comment"] = value[1:] if value.startswith(" ") else value


async def curl_frames(
    url: str, *headers: str, until: Any, timeout: float = 15
) -> list[tuple[dict[str, Any], str | None]]:
    """Run ``curl -sN url`` (with ``-H`` headers) until ``until(frames so far)`` holds; the
    frames it printed with their ``id:`` (heartbeats and ``event:`` records left out)."""
    args = [arg for header in headers for arg in ("-H", header)]
    process = await asyncio.create_subprocess_exec(
        "curl", "-sN", *args, url, stdout=asyncio.subprocess.PIPE
    )
    frames: list[tuple[dict[str, Any], str | None]] = []
    try:
        async with asyncio.timeout(timeout):
            async for rec in _curl_records(process):
                if "data" in rec and "event" not in rec:
                    frames.append((orjson.loads(rec["data"]), rec.get("id")))
                    if until(frames):
                        return frames
        raise AssertionError(f"curl ended first: {frames}")
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


async def test_curl_n_shows_stock_live_and_resumes_with_last_event_id(
    deployment: Deployment,
) -> None:
    # What docs/protocol.md ("Server-Sent Events") shows with curl -N, through nginx.
    base = deployment.http
    mug = item_id(base, "Ceramic mug")
    carol = token(base, "carol")
    lobby = lobby_id(base, carol)
    room, item = f"chat:room:{lobby}", f"shop:item:{mug}"

    def buy() -> int:
        bought = httpx.post(
            f"{base}/api/items/{mug}/purchase/",
            json={"quantity": 1},
            headers=bearer(token(base, "dave")),
            timeout=10,
        )
        assert bought.status_code == 201, bought.text
        return int(bought.json()["remaining"])

    def say(text: str) -> int:
        sent = httpx.post(
            f"{base}/api/rooms/{lobby}/messages/",
            json={"text": text},
            headers=bearer(carol),
            timeout=10,
        )
        assert sent.status_code == 201, sent.text
        return int(sent.json()["offset"])

    def stock(frames: list[tuple[dict[str, Any], str | None]]) -> list[int]:
        return [f["data"]["quantity"] for f, _ in frames if f.get("event") == "shop.stock"]

    # Anonymous, the item's stream alone: the snapshot, then each change as it happens.
    changes: list[int] = []
    url = f"{base}/sse/?stream={item}"

    def seen_change(frames: list[tuple[dict[str, Any], str | None]]) -> bool:
        if len(stock(frames)) == 1 and not changes:
            changes.append(buy())  # published while curl is connected
        return len(stock(frames)) == 2

    frames = await curl_frames(url, until=seen_change)
    assert stock(frames) == [changes[0] + 1, changes[0]]
    # shop:item is a snapshot stream: its frames carry no cursor (no id: at all).
    assert all(id_ is None for _, id_ in frames)
    # With a durable stream beside it, each id: is the cursor of the durable one only.
    said: list[int] = []

    def seen_message(frames: list[tuple[dict[str, Any], str | None]]) -> bool:
        if len([f for f, _ in frames if f["type"] == "ack"]) == 2 and not said:
            said.append(say(f"curl {uuid.uuid4()}"))
        return any(f.get("offset") == said[0] for f, _ in frames if said)

    url = f"{base}/sse/?stream={item}&stream={room}"
    frames = await curl_frames(url, f"Authorization: Bearer {carol}", until=seen_message)
    last_id = frames[-1][1]
    assert last_id == f"{room}@{said[0]}"
    # Away: the stock changes and a message is sent. Resuming with Last-Event-ID replays the
    # room from its cursor; the item gets a fresh snapshot (its current quantity) instead of
    # the changes missed.
    missed, now = say(f"missed {uuid.uuid4()}"), buy()
    frames = await curl_frames(
        url,
        f"Authorization: Bearer {carol}",
        f"Last-Event-ID: {last_id}",
        until=lambda frames: stock(frames) and any(f.get("offset") == missed for f, _ in frames),
    )
    acks = {f["stream"]: f for f, _ in frames if f["type"] == "ack"}
    assert acks[room]["replayed"] == 1 and acks[item]["replayed"] == 0
    assert [f["offset"] for f, _ in frames if f.get("event") == "chat.message"] == [missed]
    assert stock(frames) == [now]
