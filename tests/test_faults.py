"""Fault tests: real server processes, real clients, and a dependency that fails under them.

1. Redis (a private redis-server, ``tests/redis_server.py``) restarted under two ``serve``
   processes, with each Redis channel layer: HTTP keeps answering, a subscribe during the
   outage gets ``unavailable``, and every subscriber ends up with every stored message
   exactly once, in offset order, live on the socket it kept; presence comes back.
2. One of two workers behind nginx SIGKILLed: its clients reconnect through nginx to the
   survivor and recover with ``since``; its users are announced gone by the leader's reaper.
3. PostgreSQL refusing connections: ``chat.send`` answers ``unavailable``, the HTTP API a
   5xx, nothing is half-written, and the next send after the database returns gets the next
   offset with no gap.
4. A client that never reads: it is closed with 4008 while the server's memory stays bounded
   and a fast client on the same stream gets everything with small ping latency; the slow
   one recovers its durable stream with ``since``.
5. Redis hung (SIGSTOP, not dead) for 10 s under two ``serve`` processes, with each Redis
   channel layer: pages, the API, ``/healthz``, ``/readyz`` (503), a new socket's
   ``subscribe``, ``chat.send`` and ``ping`` are each answered within 2 s; after SIGCONT
   every connected client has every stored message, once, in order.

Everything runs on 127.0.0.1; every wait is bounded; only processes started here are
stopped, by PID. Figures (latencies, RSS, recovery times) are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import socket
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin, Subprotocol

from tests.conftest import token_for
from tests.pg import connections_refused, scratch_postgres
from tests.redis_server import RedisServer, private_redis
from tests.server import Server, run_server

pytestmark = pytest.mark.server

_refs = itertools.count(1)


def report(test: str, **figures: Any) -> None:
    """Print the figures a fault test measured (shown with ``pytest -s``)."""
    shown = " ".join(
        f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()
    )
    print(f"\n[faults] {test}: {shown}")


async def until(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float, what: str
) -> float:
    """Poll ``condition`` until it holds; return the seconds it took. Fails after ``timeout``."""
    started = time.monotonic()
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


class Peer:
    """A ``/ws/`` client whose reader task records every frame it receives.

    ``call`` sends a frame with a fresh ``ref`` and waits for its ack, error or pong;
    ``offsets(stream)`` lists the ``chat.message`` offsets received on the stream, in arrival
    order, across every subscription this peer made.
    """

    def __init__(self, name: str, ws: ClientConnection) -> None:
        self.name = name
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.closed = asyncio.Event()
        self._waiters: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, name: str, base_ws: str, origin: str, token: str) -> Peer:
        ws = await connect(
            f"{base_ws}/ws/",
            origin=Origin(origin),
            subprotocols=[Subprotocol("townsquare"), Subprotocol(f"bearer.{token}")],
            open_timeout=5,
            compression=None,
            proxy=None,
        )
        return cls(name, ws)

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                frame: dict[str, Any] = orjson.loads(text)
                ref = frame.get("ref")
                waiter = self._waiters.pop(ref, None) if isinstance(ref, int) else None
                if waiter is not None and not waiter.done():
                    waiter.set_result(frame)
                self.frames.append(frame)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.closed.set()
            for waiter in self._waiters.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError(f"{self.name}: socket closed"))

    async def call(self, frame: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        ref = next(_refs)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[ref] = waiter
        await self.ws.send(orjson.dumps({**frame, "ref": ref}).decode())
        return await asyncio.wait_for(waiter, timeout)

    async def subscribe(self, stream: str, since: int | None = None) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "subscribe", "stream": stream}
        if since is not None:
            frame["since"] = since
        ack = await self.call(frame)
        assert ack["type"] == "ack", f"{self.name}: {ack}"
        return ack

    def offsets(self, stream: str) -> list[int]:
        return [
            f["offset"]
            for f in self.frames
            if f["type"] == "event" and f["stream"] == stream and f["event"] == "chat.message"
        ]

    def has_messages(self, stream: str, count: int) -> bool:
        """At least ``count`` ``chat.message`` events received on ``stream``."""
        return len(self.offsets(stream)) >= count

    def has_offsets(self, stream: str, offsets: list[int]) -> bool:
        """Exactly these ``chat.message`` offsets received on ``stream``, in this order."""
        return self.offsets(stream) == offsets

    def events(self, stream: str, event: str) -> list[dict[str, Any]]:
        return [
            f
            for f in self.frames
            if f["type"] == "event" and f["stream"] == stream and f["event"] == event
        ]

    async def close(self) -> None:
        await self.ws.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def lobby(server: Server, token: str, name: str = "lobby") -> tuple[int, int]:
    """A public room's ``(room id, last_offset)``, the lobby's by default."""
    rooms = httpx.get(
        f"{server.http}/api/rooms/", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()
    room = next(r for r in rooms if r["name"] == name)
    return int(room["id"]), int(room["last_offset"])


async def stored_offsets(http_base: str, token: str, room: int, after: int) -> list[int]:
    """Offsets of the room's stored messages above ``after``, from the HTTP API, ascending."""
    offsets: list[int] = []
    url: str | None = f"{http_base}/api/rooms/{room}/messages/?page_size=200"
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=10) as h:
        while url:
            page = (await h.get(url)).json()
            offsets += [m["offset"] for m in page["results"] if m["offset"] > after]
            if page["results"] and page["results"][-1]["offset"] <= after:
                break
            url = page["next"]
    return sorted(offsets)


PUBLISH_FAILED = re.compile(r"^(\S+ \S+) ERROR realtime\.publish (publish to \S+ failed)", re.M)


def logged_after(log: str, pattern: re.Pattern[str], wall: float) -> list[str]:
    """Matches of ``pattern`` (group 1: the log line's local time) logged after ``wall``."""
    since = datetime.fromtimestamp(wall)
    return [
        m[2]
        for m in pattern.finditer(log)
        if datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f") > since
    ]


def rss_kib(pid: int) -> int:
    """Resident set size of a process, in KiB (``VmRSS`` of /proc/<pid>/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match[1])


# --- 1. Redis restarted mid-run ----------------------------------------------------------------

PRESENCE_TTL = 3.0
DOWN_SECONDS = 3.5
BURST = 8


@pytest.mark.parametrize("channel_layer", ["core", "pubsub"])
async def test_redis_restart_under_two_servers_loses_no_message(
    tmp_path: Path, channel_layer: str
) -> None:
    """Both Redis channel layers: core (groups and queues as keys; the hub's reader fails
    during the outage) and pub/sub (its connection re-subscribes silently; the hub hears of
    the reconnect). A long outage first, then a quick restart that hardly any publish
    notices."""
    with (
        scratch_postgres() as database_url,
        private_redis(tmp_path / "redis") as redis,
    ):
        env: dict[str, Any] = {
            "DATABASE_URL": database_url,
            "CHANNEL_LAYER": channel_layer,
            "REDIS_URL": redis.url,
            "REDIS_PREFIX": f"faults-{uuid.uuid4().hex[:8]}",
            "RT_HUB_REFRESH_SECONDS": "1",
            "RT_LEASE_TTL_SECONDS": "2",
            "RT_PRESENCE_TTL_SECONDS": str(PRESENCE_TTL),
        }
        with (
            run_server(tmp_path, **env) as a,
            run_server(tmp_path, prepare=False, **env) as b,
        ):
            await _redis_restart(a, b, redis, channel_layer)


async def _redis_restart(a: Server, b: Server, redis: RedisServer, layer: str) -> None:
    tokens = {name: token_for(a, name) for name in ("alice", "bob", "carol", "dave")}
    room, start = lobby(a, tokens["alice"])
    other = lobby(a, tokens["alice"], "random")[0]
    stream = f"chat:room:{room}"
    peers = [
        await Peer.open("alice@a", a.ws, a.origin, tokens["alice"]),
        await Peer.open("bob@b", b.ws, b.origin, tokens["bob"]),
        await Peer.open("carol@b", b.ws, b.origin, tokens["carol"]),
    ]
    alice, bob, _carol = peers
    for peer in peers:
        await peer.subscribe(stream, since=start)
    dave = {"Authorization": f"Bearer {tokens['dave']}"}
    statuses: list[tuple[str, int, float]] = []

    async def post(server: Server, text: str, to: int = room) -> None:
        started = time.monotonic()
        async with httpx.AsyncClient(headers=dave, timeout=20) as http:
            response = await http.post(
                f"{server.http}/api/rooms/{to}/messages/", json={"text": text}
            )
        took = time.monotonic() - started
        statuses.append((text, response.status_code, took))
        assert response.status_code == 201 or response.status_code >= 500, response.text
        assert took < 10, f"POST took {took:.1f} s"

    sends: list[tuple[str, str, float]] = []

    async def send(peer: Peer, text: str) -> None:
        started = time.monotonic()
        reply = await peer.call({"type": "chat.send", "room": room, "text": text}, timeout=20)
        took = time.monotonic() - started
        sends.append((text, reply["type"] if reply["type"] == "ack" else reply["code"], took))
        assert reply["type"] == "ack" or reply.get("code") == "unavailable", reply
        assert took < 10, f"chat.send took {took:.1f} s"

    async def burst(label: str) -> None:
        # Concurrent writes on both servers, so that each process's layer pools several
        # connections; to another room, so that they fill no gap of the lobby's.
        await asyncio.gather(
            *(post(s, f"{label} {i}", other) for s in (a, b) for i in range(BURST))
        )

    # Before: everything flows through Redis.
    await post(a, "before 1")
    await post(b, "before 2")
    await send(alice, "before 3")
    await send(bob, "before 4")
    await burst("burst before")
    stored_before = list(range(start + 1, start + 5))
    for peer in peers:
        await until(partial(peer.has_offsets, stream, stored_before), 10, f"{peer.name} live")

    # Redis goes away (SIGKILL by PID).
    redis.stop()
    down_at = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as http:
        for server in (a, b):
            login = await http.get(f"{server.http}/accounts/login/")
            assert login.status_code == 200
    await asyncio.gather(post(a, "outage 1"), post(b, "outage 2"))
    await asyncio.gather(send(alice, "outage 3"), send(bob, "outage 4"))
    for peer in peers:
        pong = await peer.call({"type": "ping"}, timeout=10)
        assert pong["type"] == "pong"
    # A socket that subscribes now, on a worker that already serves the stream: an ack or a
    # clear `unavailable`, and the socket stays usable.
    late = await Peer.open("dave@a", a.ws, a.origin, tokens["dave"])
    started = time.monotonic()
    reply = await late.call({"type": "subscribe", "stream": stream, "since": start}, timeout=15)
    subscribe_in_outage = (
        reply["type"] if reply["type"] == "ack" else reply["code"],
        time.monotonic() - started,
    )
    assert reply["type"] == "ack" or reply["code"] == "unavailable", reply
    assert (await late.call({"type": "ping"}))["type"] == "pong"
    await late.close()
    # Stay down past a hub refresh, a lease ttl and a presence ttl, serving all along.
    while time.monotonic() - down_at < DOWN_SECONDS:
        async with httpx.AsyncClient(timeout=10) as http:
            for server in (a, b):
                assert (await http.get(f"{server.http}/accounts/login/")).status_code == 200
        await asyncio.sleep(0.2)
    outage = time.monotonic() - down_at

    # Redis comes back on the same port, empty; writes go on during and right after it.
    def start_redis() -> float:
        redis.start()
        return time.time()

    restart = asyncio.create_task(asyncio.to_thread(start_redis))
    await asyncio.gather(post(a, "restart 1"), post(b, "restart 2"), restart)
    up_wall = restart.result()
    up_at = time.monotonic()
    # Connections pooled before the outage and idle during it still point at the old Redis.
    await burst("burst after")
    await post(a, "after 1")
    await send(alice, "after 2")
    await post(b, "after 3")
    await send(bob, "after 4")

    last = lobby(a, tokens["alice"])[1]
    stored = await stored_offsets(a.http, tokens["alice"], room, start)
    assert stored == list(range(start + 1, last + 1)), "stored offsets have a gap"
    persisted = len(stored)

    # Each client ends up with every stored message once, in offset order, live, on the
    # socket it had all along: the hubs notice the outage, re-join their groups and catch up
    # from the database. (A client cannot tell that it missed the last messages of a
    # stream; a socket that stays open must not need a resubscribe to get them.)
    recovered: dict[str, float] = {}
    for peer in peers:
        recovered[peer.name] = await until(
            partial(peer.has_messages, stream, persisted), 10, f"{peer.name} catch-up"
        )
        got = peer.offsets(stream)
        assert got == stored, f"{peer.name} got {got}, stored {stored}"
    await asyncio.sleep(0.5)  # nothing more, no duplicate, arrives late
    for peer in peers:
        assert peer.offsets(stream) == stored, peer.name
    await until(
        lambda: all("event=layer.recovered" in s.log() for s in (a, b)), 10, "both hubs recovered"
    )
    # Once Redis answered again no publish failed: a pooled connection still pointing at the
    # old Redis process is retried at once instead of failing the call.
    for server in (a, b):
        failed = logged_after(server.log(), PUBLISH_FAILED, up_wall + 0.2)
        assert not failed, failed

    # Presence came back too: Redis lost every entry, and the workers' heartbeats restore
    # those of the sockets still open (within a heartbeat, a third of the ttl).
    dave_ws = await Peer.open("dave@a", a.ws, a.origin, tokens["dave"])
    everyone = ["alice", "bob", "carol", "dave"]

    async def presence_restored() -> bool:
        states = len(dave_ws.events(stream, "presence.state"))
        await dave_ws.subscribe(stream, since=stored[-1])
        await until(
            lambda: len(dave_ws.events(stream, "presence.state")) > states, 5, "presence.state"
        )
        state = dave_ws.events(stream, "presence.state")[-1]["data"]["users"]
        return [u["username"] for u in state] == everyone

    try:
        # Bound: one heartbeat (a third of the ttl) restores it; the slack is for a loaded CI.
        presence_took = await until(
            presence_restored, PRESENCE_TTL + 6, "presence after the restart"
        )
    except AssertionError:
        raise AssertionError(dave_ws.events(stream, "presence.state")) from None
    await dave_ws.close()

    # A quick restart: Redis is back at once, so hardly any publish fails anywhere, yet a
    # layer that re-subscribes by itself (pub/sub) drops what is published meanwhile. The
    # hubs' probes notice; messages written right after it still reach every client.
    recoveries = [a.log().count("event=layer.recovered"), b.log().count("event=layer.recovered")]
    quick = time.monotonic()
    await asyncio.to_thread(redis.restart)
    await post(a, "quick 1")
    await post(b, "quick 2")
    stored = await stored_offsets(a.http, tokens["alice"], room, start)
    for peer in peers:
        await until(partial(peer.has_offsets, stream, stored), 10, f"{peer.name} after a blip")
    quick_took = time.monotonic() - quick
    await asyncio.sleep(0.5)
    for peer in peers:
        assert peer.offsets(stream) == stored, peer.name

    def noticed() -> bool:
        return all(
            s.log().count("event=layer.recovered") > n
            for s, n in zip((a, b), recoveries, strict=True)
        )

    await until(noticed, 10, "both hubs to notice the quick restart")
    for peer in peers:
        await peer.close()
    report(
        f"redis-restart[{layer}]",
        outage_s=outage,
        posts=[(s, round(t, 2)) for _, s, t in statuses],
        sends=[(s, round(t, 2)) for _, s, t in sends],
        persisted=persisted,
        caught_up_s={k: round(v, 2) for k, v in recovered.items()},
        since_up_s=time.monotonic() - up_at,
        presence_restored_s=presence_took,
        subscribe_in_outage=subscribe_in_outage,
        quick_restart_delivered_s=quick_took,
    )


# --- 2. One of two workers killed ------------------------------------------------------------

KILL_PRESENCE_TTL = 3.0
KILL_LEASE_TTL = 2.0
SOCKET_OPEN = re.compile(r"event=socket\.open path=/ws/ ")


def leader_of(servers: list[Server]) -> Server | None:
    """The server whose log says it holds the leader lease now (its last lease line)."""
    for server in servers:
        lines = re.findall(r"event=leader\.(acquired|lost)", server.log())
        if lines and lines[-1] == "acquired":
            return server
    return None


async def open_on(
    name: str, nginx_ws: str, origin: str, token: str, want: Server, others: list[Server]
) -> Peer:
    """Open sockets through nginx until one lands on ``want`` (its log shows the open);
    close the ones that landed elsewhere before they subscribe to anything."""
    for _ in range(12):
        counts = [len(SOCKET_OPEN.findall(s.log())) for s in [want, *others]]
        peer = await Peer.open(name, nginx_ws, origin, token)

        def landed(counts: list[int] = counts) -> bool:
            now = [len(SOCKET_OPEN.findall(s.log())) for s in [want, *others]]
            return now != counts

        await until(landed, 5, f"{name}'s socket.open line")
        if len(SOCKET_OPEN.findall(want.log())) > counts[0]:
            return peer
        await peer.close()
    raise AssertionError(f"nginx never sent {name} to port {want.port}")


@pytest.mark.serial  # bob back within the presence ttl: run alone (./test)
async def test_a_killed_worker_behind_nginx_loses_no_message_and_its_users_leave(
    tmp_path: Path,
) -> None:
    from tests.nginx import run_nginx
    from tests.pg import scratch_redis

    with (
        scratch_postgres() as database_url,
        scratch_redis() as (redis_url, prefix),
    ):
        env: dict[str, Any] = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "REDIS_PREFIX": prefix,
            "RT_PRESENCE_TTL_SECONDS": str(KILL_PRESENCE_TTL),
            "RT_LEASE_TTL_SECONDS": str(KILL_LEASE_TTL),
            "RT_HUB_REFRESH_SECONDS": "1",
        }
        with (
            run_server(tmp_path, **env) as a,
            run_server(tmp_path, prepare=False, **env) as b,
            run_nginx(tmp_path / "nginx", [a.port, b.port]) as nginx_port,
        ):
            await _kill_one_worker(a, b, nginx_port)


async def _kill_one_worker(a: Server, b: Server, nginx_port: int) -> None:
    nginx_ws = f"ws://127.0.0.1:{nginx_port}"
    # Kill the leader when there is one (the harder case: the lease, and with it the
    # presence reaper, must pass to the survivor first).
    await until(lambda: leader_of([a, b]) is not None, 10, "a leader")
    victim = leader_of([a, b])
    assert victim is not None
    survivor = b if victim is a else a
    tokens = {name: token_for(survivor, name) for name in ("alice", "bob", "carol", "dave")}
    room, start = lobby(survivor, tokens["alice"])
    stream = f"chat:room:{room}"
    origin = survivor.origin  # nginx passes the Host through; the Origin check compares it

    alice = await open_on("alice", nginx_ws, origin, tokens["alice"], survivor, [victim])
    await alice.subscribe(stream, since=start)
    bob = await open_on("bob", nginx_ws, origin, tokens["bob"], victim, [survivor])
    dave = await open_on("dave", nginx_ws, origin, tokens["dave"], victim, [survivor])
    for peer in (bob, dave):
        await peer.subscribe(stream, since=start)

    def joined(who: str) -> bool:
        return any(
            e["data"]["user"]["username"] == who for e in alice.events(stream, "presence.join")
        )

    await until(lambda: joined("bob") and joined("dave"), 10, "bob and dave to join")
    carol = {"Authorization": f"Bearer {tokens['carol']}"}

    async def post(text: str) -> int:
        async with httpx.AsyncClient(headers=carol, timeout=10) as http:
            response = await http.post(
                f"{survivor.http}/api/rooms/{room}/messages/", json={"text": text}
            )
        assert response.status_code == 201, response.text
        return int(response.json()["offset"])

    before = [await post(f"before {i}") for i in range(3)]
    for peer in (alice, bob, dave):
        await until(partial(peer.has_offsets, stream, before), 10, f"{peer.name} live")

    # SIGKILL the victim, by its PID: no disconnect handlers, no lease release.
    victim.process.kill()
    victim.process.wait(timeout=10)
    killed_at = time.monotonic()
    for peer in (bob, dave):
        await asyncio.wait_for(peer.closed.wait(), 10)
    dropped = time.monotonic() - killed_at

    # While bob is away, carol writes through the survivor.
    away = [await post(f"away {i}") for i in range(5)]

    # bob reconnects through nginx, which now sends him to the survivor, and recovers with
    # `since` = the last offset he saw.
    counts = len(SOCKET_OPEN.findall(survivor.log()))
    bob_again = await Peer.open("bob-again", nginx_ws, origin, tokens["bob"])
    await until(lambda: len(SOCKET_OPEN.findall(survivor.log())) > counts, 5, "bob on the survivor")
    seen = bob.offsets(stream)
    assert seen == before
    ack = await bob_again.subscribe(stream, since=seen[-1])
    assert (ack["replayed"], ack["truncated"]) == (len(away), False)
    after = [await post(f"after {i}") for i in range(2)]
    everything = before + away + after
    await until(lambda: len(bob_again.offsets(stream)) == len(away + after), 10, "bob's replay")
    assert seen + bob_again.offsets(stream) == everything  # none missing, none twice
    await until(lambda: alice.offsets(stream) == everything, 10, "alice's messages")
    assert everything == list(range(start + 1, start + 1 + len(everything)))
    stored = await stored_offsets(survivor.http, tokens["alice"], room, start)
    assert stored == everything

    # dave was only on the dead worker: the leader's reaper (the survivor, once the lease
    # passed) announces his leave when his entry expires.
    def left(who: str) -> bool:
        return any(
            e["data"]["user"]["username"] == who for e in alice.events(stream, "presence.leave")
        )

    # The ttl and the lease bound it; the slack is for a loaded CI machine, not the design.
    deadline = KILL_PRESENCE_TTL + KILL_LEASE_TTL + 12
    await until(lambda: left("dave"), deadline - (time.monotonic() - killed_at), "dave's leave")
    leave_after = time.monotonic() - killed_at
    # alice never left; bob came back within the ttl, so he was never shown as gone.
    assert not left("alice")
    assert not left("bob")
    assert leader_of([survivor]) is survivor, "the lease did not pass to the survivor"
    # Who is present now, as a new socket sees it: alice and bob (reconnected), not dave.
    carol_ws = await Peer.open("carol", nginx_ws, origin, tokens["carol"])
    await carol_ws.subscribe(stream, since=everything[-1])
    await until(lambda: bool(carol_ws.events(stream, "presence.state")), 5, "presence.state")
    state = carol_ws.events(stream, "presence.state")[0]["data"]["users"]
    assert [u["username"] for u in state] == ["alice", "bob", "carol"]
    for peer in (alice, bob_again, carol_ws):
        await peer.close()
    report(
        "worker-killed",
        victim="leader",
        sockets_dropped_s=dropped,
        presence_leave_s=leave_after,
        missed_recovered=len(away),
    )


# --- 3. PostgreSQL briefly unavailable -------------------------------------------------------


def room_row(database_url: str, room: int) -> tuple[int, int]:
    """``(last_offset, number of messages)`` of a room, read straight from PostgreSQL."""
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        offset = conn.execute("SELECT last_offset FROM chat_room WHERE id = %s", (room,)).fetchone()
        count = conn.execute(
            "SELECT count(*) FROM chat_message WHERE room_id = %s", (room,)
        ).fetchone()
    assert offset is not None and count is not None
    return int(offset[0]), int(count[0])


async def test_postgres_refusing_connections_fails_cleanly_and_recovers(tmp_path: Path) -> None:
    with (
        scratch_postgres() as database_url,
        run_server(tmp_path, DATABASE_URL=database_url) as server,
    ):
        token = token_for(server, "alice")
        room, start = lobby(server, token)
        stream = f"chat:room:{room}"
        alice = await Peer.open("alice", server.ws, server.origin, token)
        await alice.subscribe(stream, since=start)
        ack = await alice.call({"type": "chat.send", "room": room, "text": "before"})
        assert (ack["type"], ack["offset"]) == ("ack", start + 1), ack
        before = room_row(database_url, room)
        assert before == (start + 1, before[1])

        with connections_refused(database_url):
            started = time.monotonic()
            reply = await alice.call(
                {"type": "chat.send", "room": room, "text": "while down"}, timeout=20
            )
            send_took = time.monotonic() - started
            assert (reply["type"], reply["code"]) == ("error", "unavailable"), reply
            # The socket stays open and answers.
            assert (await alice.call({"type": "ping"}))["type"] == "pong"
            started = time.monotonic()
            async with httpx.AsyncClient(timeout=20) as http:
                response = await http.post(
                    f"{server.http}/api/rooms/{room}/messages/",
                    json={"text": "while down over http"},
                    headers={"Authorization": f"Bearer {token}"},
                )
            post_took = time.monotonic() - started
            assert response.status_code >= 500, response.text
            assert not alice.closed.is_set()

        # Nothing half-written: the failed writes left no offset and no row.
        assert room_row(database_url, room) == before

        # No restart: once the worker reports ready again (its connection pool reconnects
        # with a backoff of its own, 1 s doubling), the next send goes through.
        async def ready() -> bool:
            async with httpx.AsyncClient(timeout=5) as http:
                return (await http.get(f"{server.http}/readyz")).status_code == 200

        ready_took = await until(ready, 15, "/readyz after the database came back")
        started = time.monotonic()
        ack = await alice.call({"type": "chat.send", "room": room, "text": "after"}, timeout=20)
        recover_took = time.monotonic() - started
        assert (ack["type"], ack["offset"]) == ("ack", start + 2), ack
        await until(lambda: len(alice.offsets(stream)) == 2, 10, "the message after recovery")
        assert alice.offsets(stream) == [start + 1, start + 2]
        assert room_row(database_url, room) == (start + 2, before[1] + 1)
        await alice.close()
        report(
            "postgres-down",
            chat_send_error_s=send_took,
            http_post_status=response.status_code,
            http_post_s=post_took,
            ready_again_s=ready_took,
            next_send_s=recover_took,
        )


# --- 4. A client that never reads ------------------------------------------------------------

OUTBOX_MAX_BYTES = 262_144
FLOOD_EVENTS = 300
PAD = 60_000
CHAT_EVERY = 25
PUBLISH_KEY = "fault-test-publish-key-" + "k" * 24


async def open_slow_reader(server: Server, token: str) -> ClientConnection:
    """A socket that really stops reading: a tiny receive buffer (so the kernel holds little)
    and ``max_queue=1`` (websockets stops reading the socket once one frame waits)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.connect(("127.0.0.1", server.port))
    sock.setblocking(False)
    return await connect(
        f"{server.ws}/ws/",
        sock=sock,
        origin=Origin(server.origin),
        subprotocols=[Subprotocol("townsquare"), Subprotocol(f"bearer.{token}")],
        open_timeout=5,
        compression=None,
        proxy=None,
        max_queue=1,
        max_size=None,
        ping_interval=None,
    )


@pytest.mark.serial  # its ping p99 bound: run alone (./test)
async def test_a_client_that_never_reads_is_cut_off_and_recovers(tmp_path: Path) -> None:
    with run_server(
        tmp_path,
        RT_OUTBOX_MAX_BYTES=str(OUTBOX_MAX_BYTES),
        PUBLISH_API_KEY=PUBLISH_KEY,
        # A trusted backend floods an event of its own (flood.blob, declared nowhere), as
        # production allows: event validation (DEBUG and tests) would refuse it with 400.
        TOWNSQUARE_VALIDATE_EVENTS="0",
    ) as server:
        token = token_for(server, "bob")
        poster = token_for(server, "carol")
        room, start = lobby(server, token)
        stream = f"chat:room:{room}"

        fast = await Peer.open("fast", server.ws, server.origin, token_for(server, "alice"))
        await fast.subscribe(stream, since=start)
        slow = await open_slow_reader(server, token)
        await slow.send(
            orjson.dumps({"type": "subscribe", "stream": stream, "since": start}).decode()
        )
        while (frame := orjson.loads(await asyncio.wait_for(slow.recv(), 5)))["type"] != "ack":
            pass
        # From here on the slow client reads nothing until the flood is over.

        pid = server.process.pid
        rss_before = rss_kib(pid)
        rss_peak = rss_before
        rtts: list[float] = []
        flooding = True

        async def sample_rss() -> None:
            nonlocal rss_peak
            while flooding:
                rss_peak = max(rss_peak, rss_kib(pid))
                await asyncio.sleep(0.05)

        async def pinger() -> None:
            while flooding:
                started = time.monotonic()
                pong = await fast.call({"type": "ping"}, timeout=10)
                assert pong["type"] == "pong"
                rtts.append(time.monotonic() - started)
                await asyncio.sleep(0.06)  # ~16 pings/s, under the 20/s frame limit

        chat_sent: list[int] = []

        async def flood() -> None:
            pad = "x" * PAD
            key = {"X-Townsquare-Key": PUBLISH_KEY}
            bearer = {"Authorization": f"Bearer {poster}"}
            async with httpx.AsyncClient(base_url=server.http, timeout=30) as http:
                for i in range(FLOOD_EVENTS):
                    response = await http.post(
                        "/api/publish/",
                        json={
                            "stream": stream,
                            "event": "flood.blob",
                            "data": {"i": i, "pad": pad},
                        },
                        headers=key,
                    )
                    assert response.status_code == 202, response.text
                    if i % CHAT_EVERY == 0:
                        posted = await http.post(
                            f"/api/rooms/{room}/messages/",
                            json={"text": f"flood {i}"},
                            headers=bearer,
                        )
                        assert posted.status_code == 201, posted.text
                        chat_sent.append(posted.json()["offset"])

        sampler = asyncio.create_task(sample_rss())
        pings = asyncio.create_task(pinger())
        started = time.monotonic()
        await flood()
        flood_took = time.monotonic() - started
        # The fast client gets every event, in order.
        await until(
            lambda: len(fast.events(stream, "flood.blob")) == FLOOD_EVENTS, 20, "the fast client"
        )
        flooding = False
        await asyncio.gather(sampler, pings)
        blobs = [f["data"]["i"] for f in fast.events(stream, "flood.blob")]
        assert blobs == list(range(FLOOD_EVENTS))
        assert (
            fast.offsets(stream) == chat_sent == list(range(start + 1, start + 1 + len(chat_sent)))
        )
        assert not fast.closed.is_set()

        # The slow client was cut off: logged now, and its close frame waits behind what the
        # kernel holds for it.
        await until(lambda: "slow reader closed" in server.log(), 10, "the slow-reader warning")
        seen: list[int] = []
        blobs_seen = 0
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                frame = orjson.loads(await asyncio.wait_for(slow.recv(), 10))
                if frame.get("event") == "chat.message":
                    seen.append(frame["offset"])
                elif frame.get("event") == "flood.blob":
                    blobs_seen += 1
        rcvd = closed.value.rcvd
        assert rcvd is not None and rcvd.code == 4008, closed.value
        assert rcvd.reason == "slow reader: output buffer full"
        assert blobs_seen < FLOOD_EVENTS
        await until(
            lambda: (
                re.search(r"event=socket\.close path=/ws/ user=\d+ code=4008", server.log())
                is not None
            ),
            10,
            "the 4008 close in the log",
        )

        # It reconnects with `since` and gets exactly what it missed.
        assert seen == chat_sent[: len(seen)], (seen, chat_sent)
        again = await Peer.open("slow-again", server.ws, server.origin, token)
        ack = await again.subscribe(stream, since=seen[-1] if seen else start)
        missed = chat_sent[len(seen) :]
        assert ack["replayed"] == len(missed)
        await until(lambda: len(again.offsets(stream)) == len(missed), 10, "the replay")
        assert seen + again.offsets(stream) == chat_sent
        await again.close()
        await fast.close()

        growth_mib = (rss_peak - rss_before) / 1024
        assert growth_mib < 50, f"server RSS grew by {growth_mib:.1f} MiB"
        rtts.sort()
        p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
        assert len(rtts) >= 10, rtts
        assert p99 < 0.2, f"ping p99 {p99 * 1000:.0f} ms"
        report(
            "slow-reader",
            flood_s=flood_took,
            flood_mib=FLOOD_EVENTS * PAD / 2**20,
            slow_blobs_before_close=blobs_seen,
            slow_chat_before_close=len(seen),
            replayed=len(missed),
            rss_before_mib=rss_before / 1024,
            rss_growth_mib=growth_mib,
            pings=len(rtts),
            ping_p50_ms=statistics.median(rtts) * 1000,
            ping_p99_ms=p99 * 1000,
            ping_max_ms=rtts[-1] * 1000,
        )


# --- 5. Redis hung (SIGSTOP) ---------------------------------------------------------------

HUNG_SECONDS = 10.0
#: What every request, subscribe and send must be answered within while Redis hangs.
ANSWER_BOUND = 2.0
HUNG_PRESENCE_TTL = 3.0


def _answer(reply: dict[str, Any]) -> str:
    """``ack``, ``degraded`` (an ack that says so) or the error code."""
    if reply["type"] == "ack":
        return "degraded" if reply.get("degraded") else "ack"
    return str(reply["code"])


async def _subscribed(peer: Peer, stream: str, since: int) -> bool:
    """Subscribe again; True on an ack. A refusal waits a little (the client's backoff)."""
    reply = await peer.call({"type": "subscribe", "stream": stream, "since": since})
    if reply["type"] == "ack":
        return True
    await asyncio.sleep(0.5)
    return False


def _has_event(peer: Peer, stream: str, event: str) -> bool:
    return bool(peer.events(stream, event))


def stored_in_database(database_url: str, room: int, after: int) -> list[int]:
    """Offsets of the room's messages above ``after``, read straight from PostgreSQL."""
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        rows = conn.execute(
            'SELECT "offset" FROM chat_message WHERE room_id = %s AND "offset" > %s '
            'ORDER BY "offset"',
            (room, after),
        ).fetchall()
    return [int(r[0]) for r in rows]


@pytest.mark.serial  # every answer within ANSWER_BOUND: run alone (./test)
@pytest.mark.parametrize("channel_layer", ["pubsub", "core"])
async def test_a_hung_redis_answers_within_bounds_and_loses_no_message(
    tmp_path: Path, channel_layer: str
) -> None:
    with (
        scratch_postgres() as database_url,
        private_redis(tmp_path / "redis") as redis,
    ):
        env: dict[str, Any] = {
            "DATABASE_URL": database_url,
            "CHANNEL_LAYER": channel_layer,
            "REDIS_URL": redis.url,
            "REDIS_PREFIX": f"hung-{uuid.uuid4().hex[:8]}",
            "REDIS_TIMEOUT_SECONDS": "1.0",
            "RT_PRESENCE_TTL_SECONDS": str(HUNG_PRESENCE_TTL),
            "RT_LEASE_TTL_SECONDS": "3",
        }
        with (
            run_server(tmp_path, **env) as a,
            run_server(tmp_path, prepare=False, **env) as b,
        ):
            await _hung_redis(a, b, redis, database_url, channel_layer)


async def _hung_redis(
    a: Server, b: Server, redis: RedisServer, database_url: str, layer: str
) -> None:
    tokens = {name: token_for(a, name) for name in ("alice", "bob", "carol", "dave")}
    room, start = lobby(a, tokens["alice"])
    stream = f"chat:room:{room}"
    alice = await Peer.open("alice@a", a.ws, a.origin, tokens["alice"])
    bob = await Peer.open("bob@b", b.ws, b.origin, tokens["bob"])
    peers = [alice, bob]
    for peer in peers:
        await peer.subscribe(stream, since=start)
    for peer in peers:
        ack = await peer.call({"type": "chat.send", "room": room, "text": f"before {peer.name}"})
        assert ack["type"] == "ack", ack
    before = stored_in_database(database_url, room, start)
    for peer in peers:
        await until(partial(peer.has_offsets, stream, before), 10, f"{peer.name} live")

    took: dict[str, list[float]] = {}

    async def timed[T](what: str, call: Awaitable[T]) -> T:
        started = time.monotonic()
        result = await asyncio.wait_for(call, 15)
        took.setdefault(what, []).append(time.monotonic() - started)
        return result

    bearer = {"Authorization": f"Bearer {tokens['carol']}"}
    log_sizes = {s.port: len(s.log().splitlines()) for s in (a, b)}
    late: list[tuple[Peer, dict[str, Any]]] = []
    pid = redis.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    hung_at = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=15) as http:
            for server in (a, b):
                page = await timed("page", http.get(f"{server.http}/accounts/login/"))
                assert page.status_code == 200
                live = await timed("healthz", http.get(f"{server.http}/healthz"))
                assert live.status_code == 200
                ready = await timed("readyz", http.get(f"{server.http}/readyz"))
                assert ready.status_code == 503, ready.text
                assert ready.json()["channel_layer"] != "ok"
                api = await timed(
                    "api_get", http.get(f"{server.http}/api/rooms/", headers=bearer)
                )
                assert api.status_code == 200
                posted = await timed(
                    "api_post",
                    http.post(
                        f"{server.http}/api/rooms/{room}/messages/",
                        json={"text": f"posted while hung to {server.port}"},
                        headers=bearer,
                    ),
                )
                assert posted.status_code == 201, posted.text
            # Sign-in throttling counts in the Redis cache: it cannot count, so it refuses
            # (never lets a guess through uncounted), as a JSON 503 within the bound.
            started = time.monotonic()
            signed_in = await http.post(
                f"{a.http}/api/token/", json={"username": "carol", "password": "townsquare-demo"}
            )
            token_answer = (signed_in.status_code, round(time.monotonic() - started, 3))
            assert signed_in.status_code == 503, signed_in.text
            assert signed_in.json()["code"] == "unavailable"
            assert token_answer[1] < 2.0, token_answer
        # New sockets on both workers subscribe: an ack (maybe `degraded`) or `unavailable`.
        for server, who in ((a, "carol"), (b, "dave")):
            peer = await Peer.open(f"{who}@{server.port}", server.ws, server.origin, tokens[who])
            reply = await timed(
                "subscribe",
                peer.call({"type": "subscribe", "stream": stream, "since": start}),
            )
            assert reply["type"] == "ack" or reply["code"] == "unavailable", reply
            late.append((peer, reply))
        # Keep sending and pinging on both workers for the rest of the outage.
        sent = 0
        while time.monotonic() - hung_at < HUNG_SECONDS:
            for peer in peers:
                ack = await timed(
                    "chat.send",
                    peer.call({"type": "chat.send", "room": room, "text": f"hung {sent}"}),
                )
                assert ack["type"] == "ack", ack
                sent += 1
                pong = await timed("ping", peer.call({"type": "ping"}))
                assert pong["type"] == "pong"
            await asyncio.sleep(0.2)
        hung_for = time.monotonic() - hung_at
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed = time.monotonic()
    log_lines = {s.port: len(s.log().splitlines()) - log_sizes[s.port] for s in (a, b)}

    slowest = {what: max(times) for what, times in took.items()}
    for what, worst in slowest.items():
        assert worst < ANSWER_BOUND, f"{what} took {worst:.2f} s while Redis hung"

    # A subscribe told `unavailable` is retried, as the bundled client does.
    for peer, reply in late:
        if reply["type"] != "ack":
            await until(partial(_subscribed, peer, stream, start), 10, f"{peer.name} retry")
        peers.append(peer)
    after = await alice.call({"type": "chat.send", "room": room, "text": "after"})
    assert after["type"] == "ack", after

    stored = stored_in_database(database_url, room, start)
    assert stored == list(range(start + 1, stored[-1] + 1)), "stored offsets have a gap"
    caught_up: dict[str, float] = {}  # seconds from SIGCONT
    for peer in peers:
        await until(partial(peer.has_messages, stream, len(stored)), 15, f"{peer.name} catch-up")
        caught_up[peer.name] = time.monotonic() - resumed
    await asyncio.sleep(0.5)  # nothing more, no duplicate, arrives late
    for peer in peers:
        assert peer.offsets(stream) == stored, f"{peer.name}: {peer.offsets(stream)} != {stored}"

    # A subscribe that went through without presence gets the state once the store is back.
    degraded = [peer for peer, reply in late if reply.get("degraded")]
    for peer in degraded:
        await until(
            partial(_has_event, peer, stream, "presence.state"),
            HUNG_PRESENCE_TTL + 5,
            f"{peer.name}'s presence.state",
        )
    for peer in peers:
        await peer.close()
    report(
        f"redis-hung[{layer}]",
        hung_s=hung_for,
        slowest_s={k: round(v, 3) for k, v in sorted(slowest.items())},
        answers={k: len(v) for k, v in sorted(took.items())},
        late_subscribe=[_answer(reply) for _, reply in late],
        stored=len(stored),
        caught_up_after_sigcont_s={k: round(v, 2) for k, v in caught_up.items()},
        log_lines_while_hung=log_lines,
        token_status_s=token_answer,
    )
