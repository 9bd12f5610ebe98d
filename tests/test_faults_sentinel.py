"""Fault test: Redis through Sentinel, its primary SIGKILLed under load.

A private primary, one replica (``--replicaof``) and three sentinels (quorum 2, a master
unreachable for 1 s is down; ``tests/redis_server.py``), all on free ports. Two ``serve``
workers reach Redis only through the sentinels (``REDIS_SENTINELS``,
``REDIS_SENTINEL_MASTER``). Clients on both workers send ``chat.send`` to one room, as a
client that wants exactly-once does (a fresh ``client_id`` per message, resent on
``unavailable`` or no answer), while every client listens. The primary is SIGKILLed; the
sentinels promote the replica; the workers' channel layer, presence, leases and cache follow
it. Then every connected client has every stored message (read from PostgreSQL) once, in
order, and every acknowledged message is stored once.

Printed (``pytest -s``): the promotion time, the longest a ``chat.send`` waited for its ack,
the longest a message took to reach every client, and the time from the kill until every
message reaches every client within a second again ("live again").

Everything runs on 127.0.0.1; every wait is bounded; only processes started here are
stopped, by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import token_for
from tests.pg import scratch_postgres
from tests.redis_server import SentinelGroup, private_sentinel_group
from tests.server import Server, run_server
from tests.test_faults import Peer, lobby, report, until

pytestmark = pytest.mark.server

USERS = ("alice", "bob", "carol", "dave")
#: Seconds between two sends of one client (4 clients: ~16 messages a second in all).
SEND_EVERY = 0.25
#: Load before the kill, and the longest the load goes on after it.
BEFORE_KILL = 1.5
AFTER_KILL_MAX = 25.0
#: Once every message reaches every client within this many seconds, deliveries are "live".
LIVE = 1.0
#: Sends go on this long after deliveries are live again.
AFTER_LIVE = 2.0


class Stamped(list[dict[str, Any]]):
    """A peer's frames, each stamped with the monotonic time it arrived (``_at``)."""

    def append(self, frame: dict[str, Any]) -> None:
        frame["_at"] = time.monotonic()
        super().append(frame)


async def open_peer(name: str, server: Server, token: str) -> Peer:
    peer = await Peer.open(name, server.ws, server.origin, token)
    peer.frames = Stamped()  # before its reader task first runs
    return peer


def stored_rows(database_url: str, room: int, after: int) -> list[tuple[int, str]]:
    """``(offset, client_id)`` of the room's messages above ``after``, from PostgreSQL."""
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        rows = conn.execute(
            'SELECT "offset", client_id FROM chat_message WHERE room_id = %s AND "offset" > %s '
            'ORDER BY "offset"',
            (room, after),
        ).fetchall()
    return [(int(o), str(c)) for o, c in rows]


class Sender:
    """One client sending ``chat.send`` in a loop, exactly-once style: each message keeps its
    ``client_id`` until acked; ``unavailable`` or no answer in 3 s sends it again."""

    def __init__(self, peer: Peer, room: int) -> None:
        self.peer = peer
        self.room = room
        #: client_id → (first sent, acked, offset), monotonic seconds.
        self.acked: dict[str, tuple[float, float, int]] = {}
        self.retries = 0

    async def run(self, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            client_id = f"{self.peer.name}-{n}-{uuid.uuid4().hex[:6]}"
            first = time.monotonic()
            while True:
                try:
                    reply = await self.peer.call(
                        {
                            "type": "chat.send",
                            "room": self.room,
                            "text": client_id,
                            "client_id": client_id,
                        },
                        timeout=3,
                    )
                except TimeoutError:
                    reply = {"type": "error", "code": "timeout"}
                if reply["type"] == "ack":
                    self.acked[client_id] = (first, time.monotonic(), int(reply["offset"]))
                    break
                assert reply.get("code") in ("unavailable", "timeout"), reply
                self.retries += 1
                await asyncio.sleep(0.2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SEND_EVERY)


def arrivals(peers: list[Peer], stream: str) -> dict[int, float]:
    """Offset → when the last of ``peers`` received it (absent: someone has not yet)."""
    latest: dict[int, float] = {}
    seen: Counter[int] = Counter()
    for peer in peers:
        for f in peer.events(stream, "chat.message"):
            seen[f["offset"]] += 1
            latest[f["offset"]] = max(latest.get(f["offset"], 0.0), f["_at"])
    return {o: t for o, t in latest.items() if seen[o] == len(peers)}


async def test_a_sentinel_failover_under_load_loses_no_message(tmp_path: Path) -> None:
    with (
        scratch_postgres() as database_url,
        # The sentinels get acquainted (a few seconds) while the servers start.
        private_sentinel_group(tmp_path / "redis", wait=False) as group,
    ):
        env: dict[str, Any] = {
            "DATABASE_URL": database_url,
            "REDIS_SENTINELS": group.sentinels_setting,
            "REDIS_SENTINEL_MASTER": group.master,
            "REDIS_PREFIX": f"sentinel-{uuid.uuid4().hex[:8]}",
            "RT_HUB_REFRESH_SECONDS": "1",
            "RT_LEASE_TTL_SECONDS": "2",
            "RT_PRESENCE_TTL_SECONDS": "3",
        }
        with (
            run_server(tmp_path, **env) as a,
            run_server(tmp_path, prepare=False, **env) as b,
        ):
            await _failover(a, b, group, database_url)


async def _failover(a: Server, b: Server, group: SentinelGroup, database_url: str) -> None:
    tokens = {user: token_for(a, user) for user in USERS}
    room, start = lobby(a, tokens["alice"])
    stream = f"chat:room:{room}"
    peers = [
        await open_peer(f"{user}@{label}", server, tokens[user])
        for user in USERS
        for label, server in (("a", a), ("b", b))
    ]
    for peer in peers:
        await peer.subscribe(stream, since=start)
    # Both workers reach Redis through the sentinels: the primary carries their traffic.
    old_master = group.primary.port
    assert group.master_ports() == {old_master}
    await asyncio.to_thread(group.wait_ready)
    senders = [Sender(peer, room) for peer in peers[0::3]]  # alice@a, bob@b, dave@a
    assert {s.peer.name[-1] for s in senders} == {"a", "b"}

    stop = asyncio.Event()
    load = [asyncio.create_task(s.run(stop)) for s in senders]
    try:
        await asyncio.sleep(BEFORE_KILL)
        live_before = arrivals(peers, stream)
        assert live_before, "nothing delivered before the kill"

        group.primary.stop()  # SIGKILL, by PID
        killed = time.monotonic()
        promoted = await until(lambda: group.promoted() is not None, 20, "a promotion")
        new_master = group.promoted()
        assert new_master is not None and new_master.port != old_master

        def delivered_after_kill() -> bool:
            # A message first sent after the promotion has reached every client.
            late = [
                o for s in senders for first, _, o in s.acked.values() if first > killed + promoted
            ]
            got = arrivals(peers, stream)
            return bool(late) and all(o in got for o in late)

        await until(delivered_after_kill, AFTER_KILL_MAX, "deliveries after the promotion")
        await asyncio.sleep(AFTER_LIVE)
    finally:
        stop.set()
        await asyncio.gather(*load)

    # Every acknowledged message is stored once, at its offset; offsets have no gap.
    rows = stored_rows(database_url, room, start)
    offsets = [o for o, _ in rows]
    assert offsets == list(range(start + 1, start + 1 + len(rows))), "stored offsets have a gap"
    by_client = Counter(c for _, c in rows)
    acked = {cid: o for s in senders for cid, (_, _, o) in s.acked.items()}
    assert all(by_client[cid] == 1 for cid in acked), "an acked message stored twice or never"
    assert dict(rows) == {o: cid for cid, o in acked.items()}, "an ack named another offset"

    # Every connected client: every stored message, once, in order, on the socket it kept.
    for peer in peers:
        await until(partial(peer.has_messages, stream, len(offsets)), 15, f"{peer.name} caught up")
        assert peer.offsets(stream) == offsets, (peer.name, peer.offsets(stream), offsets)
    await asyncio.sleep(0.5)  # nothing more, no duplicate, arrives late
    for peer in peers:
        assert peer.offsets(stream) == offsets, peer.name
        assert not peer.closed.is_set(), f"{peer.name} lost its socket"
    for server in (a, b):
        assert "event=layer.recovered" in server.log(), f"{server.port} never recovered"
        # The readiness probe (the layer's Redis through Sentinel) and a sign-in (its
        # failure counter in the cache, on the promoted master) work on the new master.
        async with httpx.AsyncClient(timeout=5) as http:
            assert (await http.get(f"{server.http}/readyz")).status_code == 200
        token_for(server, "carol")

    # What clients saw.
    sent = {o: first for s in senders for first, _, o in s.acked.values()}
    got = arrivals(peers, stream)
    delay = {o: got[o] - sent[o] for o in sent}
    ack_waits = [acked_at - first for s in senders for first, acked_at, _ in s.acked.values()]
    after_kill = sorted(o for o in sent if sent[o] > killed)
    slow = [o for o in after_kill if delay[o] > LIVE]
    # Live again: from the kill until every later message reached everyone within LIVE s.
    live_again = max((sent[o] for o in slow), default=killed) - killed
    for peer in peers:
        await peer.close()
    report(
        "sentinel-failover",
        promotion_s=promoted,
        messages=len(offsets),
        sent_after_kill=len(after_kill),
        delayed_over_1s=len(slow),
        max_delivery_s=max(delay[o] for o in after_kill),
        max_ack_wait_s=max(ack_waits),
        send_retries=sum(s.retries for s in senders),
        live_again_s=live_again,
        since_kill_s=time.monotonic() - killed,
    )
