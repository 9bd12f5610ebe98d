"""Integration: sockets end with the sign-in on every worker. Two workers on PostgreSQL and
Redis; a user's session and token sockets on both; a logout on one worker, and a
deactivation, a deletion and a password change made from a shell (another process), close
the sockets they ended with 4002 within 2 s on the other worker too; the others stay."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin, Subprotocol

from tests.conftest import login_cookies, token_for
from tests.pg import scratch_postgres, scratch_redis
from tests.server import Server, run_server

pytestmark = pytest.mark.server

#: The promise: a sign-out closes the sockets it ended within this many seconds, anywhere.
BOUND = 2.0


def cookie_header(cookies: httpx.Cookies) -> str:
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


async def open_socket(
    server: Server, *, cookies: httpx.Cookies | None = None, token: str | None = None,
    path: str = "/ws/",
) -> ClientConnection:
    headers = {"Cookie": cookie_header(cookies)} if cookies is not None else None
    protocols = [Subprotocol("townsquare"), Subprotocol(f"bearer.{token}")] if token else None
    ws = await connect(
        f"{server.ws}{path}",
        origin=Origin(server.origin),
        additional_headers=headers,
        subprotocols=protocols,
    )
    if path == "/ws/":
        await alive(ws)
    return ws


async def alive(ws: ClientConnection) -> None:
    """The socket answers a ping (so it is open and signed in as far as it knows)."""
    await ws.send('{"type": "ping", "ref": "alive"}')
    while True:
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
        if frame.get("type") == "pong":
            assert frame["ref"] == "alive"
            return


async def close_time(ws: ClientConnection, *, seed: bool = False) -> tuple[float, dict | None]:
    """Wait for the server's close; return (time.time() at the close, the error frame)."""
    error = None
    try:
        while True:
            # A safety net only: the change may start a `manage.py shell` (seconds on a busy
            # machine) before it signs out; `report` holds the close to BOUND from the change.
            text = await asyncio.wait_for(ws.recv(), BOUND + 60)
            if not seed:
                frame = orjson.loads(text)
                if frame.get("type") == "error":
                    error = frame
    except ConnectionClosed as closed:
        at = time.time()
        assert closed.rcvd is not None and closed.rcvd.code == 4002, closed
        assert closed.rcvd.reason == "signed out"
        return at, error


def shell(server: Server, username: str, write: str, prepare: str = "") -> float:
    """Change a user in ``manage.py shell`` (another process): ``prepare``, then ``write``;
    return the Unix time the shell took just before ``write`` (so the measure includes the
    write, its commit and its publish, not the password hashing of a ``set_password``)."""
    code = (
        "import time\n"
        "from django.contrib.auth import get_user_model\n"
        f"u = get_user_model().objects.get(username={username!r})\n"
        f"{prepare}\n"
        "print('AT', time.time())\n" + write
    )
    out = server.manage("shell", "-c", code)
    return float(re.findall(r"^AT (\S+)$", out, re.M)[-1])


async def closes_after(
    change: Coroutine[Any, Any, float], sockets: list[ClientConnection], *, seeds: int = 0
) -> tuple[float, list[tuple[float, dict | None]]]:
    """Watch ``sockets`` (the last ``seeds`` of them seed endpoints) while ``change`` runs;
    return the time ``change`` says the sign-out started and each socket's close."""
    watchers = [
        asyncio.create_task(close_time(ws, seed=i >= len(sockets) - seeds))
        for i, ws in enumerate(sockets)
    ]
    started = await change
    return started, [await w for w in watchers]


@asynccontextmanager
async def two_workers(tmp_path: Path) -> AsyncIterator[tuple[Server, Server]]:
    with scratch_postgres() as database_url, scratch_redis() as (redis_url, prefix):
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
        with (
            run_server(
                tmp_path / "a", DATABASE_URL=database_url, REDIS_URL=redis_url, REDIS_PREFIX=prefix
            ) as a,
            run_server(
                tmp_path / "b",
                prepare=False,
                DATABASE_URL=database_url,
                REDIS_URL=redis_url,
                REDIS_PREFIX=prefix,
            ) as b,
        ):
            yield a, b


async def logout(server: Server, cookies: httpx.Cookies) -> float:
    """Log the session out on ``server``; return the time before the request was sent."""
    started = time.time()
    async with httpx.AsyncClient(base_url=server.http, cookies=cookies) as http:
        response = await http.post(
            "/accounts/logout/",
            data={"csrfmiddlewaretoken": cookies["csrftoken"]},
            headers={"Referer": f"{server.http}/"},
        )
    assert response.status_code in (200, 302), response.text
    return started


def report(case: str, started: float, closes: list[float]) -> float:
    worst = max(closes) - started
    print(f"signout {case}: sockets closed {[round(c - started, 3) for c in closes]} s after it")
    assert worst < BOUND, f"{case}: a socket closed {worst:.2f} s after the sign-out"
    return worst


async def test_sign_outs_close_the_sockets_they_ended_on_every_worker(tmp_path: Path) -> None:
    async with two_workers(tmp_path) as (a, b):
        # (a) logout: carol has two sessions and a token; session 1 has sockets on both
        # workers. Logging session 1 out on worker a closes its sockets there and on b only.
        first, second = login_cookies(a, "carol"), login_cookies(b, "carol")
        carol_token = token_for(a, "carol")
        s1_a, s1_b = await open_socket(a, cookies=first), await open_socket(b, cookies=first)
        s2_b = await open_socket(b, cookies=second)
        token_a, token_b = await open_socket(a, token=carol_token), await open_socket(
            b, token=carol_token
        )
        started, results = await closes_after(logout(a, first), [s1_a, s1_b])
        report("logout", started, [at for at, _ in results])
        assert [e["reason"] for _, e in results if e] == ["logout", "logout"]
        for ws in (s2_b, token_a, token_b):
            await alive(ws)
            await ws.close()

        # (b) is_active=False from a shell: every socket of dave on both workers, session,
        # token and a seed endpoint, closes; a socket that was posting can post no more.
        dave_cookies, dave_token = login_cookies(a, "dave"), token_for(b, "dave")
        sockets = [
            await open_socket(a, cookies=dave_cookies),
            await open_socket(b, token=dave_token),
            await open_socket(a, token=dave_token),
        ]
        seed = await open_socket(b, cookies=dave_cookies, path="/ws/chat/lobby/")
        async with httpx.AsyncClient(
            base_url=a.http, headers={"Authorization": f"Bearer {dave_token}"}
        ) as http:
            rooms = (await http.get("/api/rooms/")).json()
        lobby = next(r["id"] for r in rooms if r["name"] == "lobby")
        poster = sockets[1]
        await poster.send(orjson.dumps(
            {"type": "chat.send", "room": lobby, "text": "before", "ref": 1}
        ).decode())
        while orjson.loads(await asyncio.wait_for(poster.recv(), 5)).get("type") != "ack":
            pass
        started, results = await closes_after(
            asyncio.to_thread(shell, a, "dave", "u.is_active = False\nu.save()"),
            [*sockets, seed],
            seeds=1,
        )
        report("is_active=False", started, [at for at, _ in results])
        assert [e["reason"] if e else None for _, e in results] == ["inactive"] * 3 + [None]
        with pytest.raises(ConnectionClosed):
            await poster.send(orjson.dumps(
                {"type": "chat.send", "room": lobby, "text": "after", "ref": 2}
            ).decode())
        stored = a.manage(
            "shell", "-c",
            "from chat.models import Message\n"
            "print(list(Message.objects.filter(author__username='dave', text__in=['before', "
            "'after']).values_list('text', flat=True)))",
        )
        assert stored.strip().splitlines()[-1] == "['before']"

        # (c) deletion from a shell: bob's session socket on a and token socket on b.
        bob_cookies, bob_token = login_cookies(b, "bob"), token_for(a, "bob")
        sockets = [await open_socket(a, cookies=bob_cookies), await open_socket(b, token=bob_token)]
        started, results = await closes_after(
            asyncio.to_thread(shell, a, "bob", "u.delete()"), sockets
        )
        report("deletion", started, [at for at, _ in results])
        assert [e["reason"] for _, e in results if e] == ["deleted", "deleted"]

        # (d) a password change from a shell: alice's session socket (on b) and the socket of
        # a token issued before it (on a) close; a token issued after it works.
        alice_cookies, old_token = login_cookies(a, "alice"), token_for(b, "alice")
        sockets = [
            await open_socket(b, cookies=alice_cookies),
            await open_socket(a, token=old_token),
        ]
        started, results = await closes_after(
            asyncio.to_thread(shell, a, "alice", "u.save()", "u.set_password('a-new-password-42')"),
            sockets,
        )
        report("password change", started, [at for at, _ in results])
        assert [e["reason"] for _, e in results if e] == ["password", "password"]
        async with httpx.AsyncClient(base_url=b.http) as http:
            refused = await http.get(
                "/api/rooms/", headers={"Authorization": f"Bearer {old_token}"}
            )
        assert refused.status_code == 401
        new_token = token_for(b, "alice", "a-new-password-42")
        fresh = await open_socket(a, token=new_token)
        stream = f"chat:room:{lobby}"
        await fresh.send(json.dumps({"type": "subscribe", "stream": stream}))
        ack = orjson.loads(await asyncio.wait_for(fresh.recv(), 5))
        assert (ack["type"], ack["for"], ack["stream"]) == ("ack", "subscribe", stream)
        await fresh.close()
