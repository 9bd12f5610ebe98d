"""Integration: the channel layer sharded over two Redis instances (``REDIS_URL`` with two
comma-separated URLs), two workers, clients on both.

1. Chat (11 rooms), stock (5 items) and notifications (4 inboxes), 20 streams spread over
   both shards, written through both workers: every client on either worker gets every
   event once, in order (durable streams: exactly the stored offsets; stock: every version).
2. The second shard is killed and started again, empty, while writes go on. Clients that kept
   their sockets end up with exactly the stored events, caught up by their worker; clients
   that lost theirs come back with ``since`` and, across both sockets, have each stored
   event once, in order. Stock written after the recovery reaches everyone, in order.

Presence, worker statistics, leases and the cache live on the first instance alone
(docs/operations.md, "Redis topology"); the commands each instance served are printed.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
import redis

from realtime.frames import group_name
from tests.conftest import token_for
from tests.pg import scratch_postgres
from tests.redis_server import RedisServer, private_redises
from tests.server import Server, run_server
from tests.test_faults import Peer, report, until

pytestmark = pytest.mark.server

USERS = ("alice", "bob", "carol", "dave")
NEW_ROOMS = 9  # + lobby and random: 11 rooms, 5 items, 4 inboxes = 20 streams
POSTS_PER_ROOM = 4
RECOVERED = "event=layer.recovered"


def user_id(token: str) -> int:
    """The ``sub`` claim of a JWT (read, not verified: the server signed it)."""
    payload = token.split(".")[1]
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return int(claims["sub"])


def stored(database_url: str) -> dict[str, list[int]]:
    """Every durable stream's stored offsets, ascending, straight from PostgreSQL."""
    found: dict[str, list[int]] = {}
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        for room, offset in conn.execute(
            'SELECT room_id, "offset" FROM chat_message ORDER BY room_id, "offset"'
        ):
            found.setdefault(f"chat:room:{room}", []).append(int(offset))
        for user, offset in conn.execute(
            'SELECT recipient_id, "offset" FROM notifications_notification '
            'ORDER BY recipient_id, "offset"'
        ):
            found.setdefault(f"user:{user}", []).append(int(offset))
    return found


def versions(database_url: str) -> dict[str, int]:
    """Each item's stock version, by stream."""
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        rows = conn.execute("SELECT id, version FROM shop_item").fetchall()
    return {f"shop:item:{i}": int(v) for i, v in rows}


def durable_offsets(peer: Peer, stream: str) -> list[int]:
    """Offsets of the durable events (chat messages, notifications) received on ``stream``."""
    event = "notification.created" if stream.startswith("user:") else "chat.message"
    return [f["offset"] for f in peer.events(stream, event)]


def stock_versions(peer: Peer, stream: str) -> list[int]:
    return [f["data"]["version"] for f in peer.events(stream, "shop.stock")]


def stock_reached(peer: Peer, stream: str, version: int) -> bool:
    return stock_versions(peer, stream)[-1:] == [version]


def commands(server: RedisServer) -> Counter[str]:
    """Commands this Redis served so far, by name (``INFO commandstats``)."""
    client = redis.Redis(port=server.port, socket_timeout=2)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()})


def group_channels(server: RedisServer, prefix: str) -> set[str]:
    """Our pub/sub group channels subscribed on this Redis."""
    client = redis.Redis(port=server.port, socket_timeout=2, decode_responses=True)
    try:
        return {str(c) for c in client.pubsub_channels(f"{prefix}__group__*")}
    finally:
        client.close()


class Writer:
    """HTTP writes through either worker, each as one of the demo users."""

    def __init__(self, servers: list[Server], tokens: dict[str, str]) -> None:
        self.servers = servers
        self.clients = {
            (s.port, user): httpx.AsyncClient(
                base_url=s.http, headers={"Authorization": f"Bearer {token}"}, timeout=20
            )
            for s in servers
            for user, token in tokens.items()
        }
        self.statuses: Counter[int] = Counter()

    async def request(self, worker: int, user: str, method: str, url: str, **kw: Any) -> Any:
        response = await self.clients[(self.servers[worker].port, user)].request(method, url, **kw)
        self.statuses[response.status_code] += 1
        assert response.status_code in (200, 201), (method, url, response.text)
        return response.json()

    async def post(self, worker: int, user: str, room: int, text: str) -> None:
        await self.request(
            worker, user, "POST", f"/api/rooms/{room}/messages/", json={"text": text}
        )

    async def stock_chain(self, item: int, first_worker: int, rounds: int) -> None:
        """Changes of one item's stock in turn (so their order is the versions' order), by
        each user in turn on alternating workers: alice (staff) sets it, the others buy one.
        Every change notifies every other watcher."""
        for r in range(rounds):
            user = USERS[r % len(USERS)]
            worker = (first_worker + r) % 2
            if user == "alice":
                await self.request(
                    worker, user, "PATCH", f"/api/items/{item}/", json={"quantity": 500 + r}
                )
            else:
                await self.request(
                    worker, user, "POST", f"/api/items/{item}/purchase/", json={"quantity": 1}
                )

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()


async def test_two_shards_carry_every_stream_between_two_workers(tmp_path: Path) -> None:
    with (
        scratch_postgres() as database_url,
        private_redises(tmp_path / "redis", 2) as shards,
    ):
        prefix = f"shards-{uuid.uuid4().hex[:8]}"
        env: dict[str, Any] = {
            "DATABASE_URL": database_url,
            "REDIS_URL": ",".join(s.url for s in shards),
            "REDIS_PREFIX": prefix,
            "RT_HUB_REFRESH_SECONDS": "1",
            "RT_LEASE_TTL_SECONDS": "2",
            "RT_PRESENCE_TTL_SECONDS": "3",
        }
        with (
            run_server(tmp_path, **env) as a,
            run_server(tmp_path, prepare=False, **env) as b,
        ):
            await _shards(a, b, shards, database_url, prefix)


async def _shards(
    a: Server, b: Server, shards: list[RedisServer], database_url: str, prefix: str
) -> None:
    servers = [a, b]
    tokens = {user: token_for(a, user) for user in USERS}
    writer = Writer(servers, tokens)
    # The streams: 11 rooms, 5 items, each user's inbox; everybody watches every item.
    listed = await writer.request(0, "alice", "GET", "/api/rooms/")
    rooms = [r["id"] for r in listed if r["name"] in ("lobby", "random")]
    run = uuid.uuid4().hex[:6]
    for i in range(NEW_ROOMS):
        created = await writer.request(
            i % 2, "alice", "POST", "/api/rooms/", json={"name": f"shard-{run}-{i}"}
        )
        rooms.append(created["id"])
    items = [i["id"] for i in await writer.request(1, "bob", "GET", "/api/items/")]
    for n, user in enumerate(USERS):
        for item in items:
            await writer.request(n % 2, user, "POST", f"/api/items/{item}/watch/")
    inboxes = {user: f"user:{user_id(token)}" for user, token in tokens.items()}
    chat_streams = [f"chat:room:{r}" for r in rooms]
    item_streams = [f"shop:item:{i}" for i in items]
    assert len(chat_streams) + len(item_streams) + len(inboxes) == 20

    async def open_peer(user: str, worker: int, since: dict[str, int] | None = None) -> Peer:
        server = servers[worker]
        peer = await Peer.open(f"{user}@{'ab'[worker]}", server.ws, server.origin, tokens[user])
        for stream in [*chat_streams, inboxes[user]]:
            await peer.subscribe(stream, since=(since or {}).get(stream, 0))
        for stream in item_streams:
            await peer.subscribe(stream)
        return peer

    # One socket per user on each worker.
    peers = [await open_peer(user, w) for user in USERS for w in (0, 1)]

    # Both shards carry groups (consistent hashing spreads 20 streams over two).
    channels = [group_channels(shard, prefix) for shard in shards]
    assert all(channels), f"a shard carries no group: {[len(c) for c in channels]}"
    assert not channels[0] & channels[1]
    ours = {f"{prefix}__group__{group_name(s)}" for s in [*chat_streams, *item_streams]}
    assert ours <= channels[0] | channels[1], ours - (channels[0] | channels[1])

    async def traffic(label: str, stock_rounds: int) -> None:
        # Chat to every room through both workers at once; stock changes of every item in
        # turn per item (its notifications to every other watcher), items at once.
        await asyncio.gather(
            *(
                writer.post((r + i) % 2, USERS[(r + i) % 4], room, f"{label} {i}")
                for r, room in enumerate(rooms)
                for i in range(POSTS_PER_ROOM)
            ),
            *(writer.stock_chain(item, n % 2, stock_rounds) for n, item in enumerate(items)),
        )

    def exact(peer: Peer, user: str, truth: dict[str, list[int]]) -> bool:
        return all(
            durable_offsets(peer, s) == truth.get(s, []) for s in [*chat_streams, inboxes[user]]
        )

    async def everyone_exact(group: list[tuple[Peer, str]], what: str) -> dict[str, list[int]]:
        truth = stored(database_url)
        for peer, user in group:
            try:
                await until(partial(exact, peer, user, truth), 15, f"{peer.name} {what}")
            except AssertionError:
                wrong = {
                    s: (durable_offsets(peer, s), truth.get(s))
                    for s in [*chat_streams, inboxes[user]]
                    if durable_offsets(peer, s) != truth.get(s, [])
                }
                raise AssertionError(f"{peer.name} {what}: {wrong}") from None
        return truth

    pairs = [(peer, USERS[n // 2]) for n, peer in enumerate(peers)]
    before = [commands(s) for s in shards]
    started = time.monotonic()
    await traffic("one", stock_rounds=len(USERS))
    truth = await everyone_exact(pairs, "phase 1")
    took = time.monotonic() - started
    after = [commands(s) for s in shards]
    for inbox in inboxes.values():
        # Each of 4 changes per item notifies the 3 other watchers: 3 per item per user.
        assert len(truth[inbox]) >= 3 * len(items), (inbox, truth[inbox])
    # Stock: after the snapshot, every version once, in order.
    final = versions(database_url)
    for peer in peers:
        for stream in item_streams:
            await until(partial(stock_reached, peer, stream, final[stream]), 10, "stock")
            got = stock_versions(peer, stream)
            assert got == list(range(got[0], final[stream] + 1)), (peer.name, stream, got)
            assert len(got) == len(USERS) + 1, (peer.name, stream, got)

    # Shard 2 is killed (SIGKILL by PID) and started again, empty, on the same port, while
    # chat and stock writes go on; one socket per user is gone meanwhile.
    recoveries = [s.log().count(RECOVERED) for s in servers]
    gone, kept = pairs[0::2], pairs[1::2]  # each user's socket on a, and the one on b
    for peer, _ in gone:
        await peer.close()
    restart_started = time.monotonic()
    victim = shards[1]
    victim.stop()
    await traffic("outage", stock_rounds=2)
    await asyncio.to_thread(victim.start)
    await until(
        lambda: all(s.log().count(RECOVERED) > n for s, n in zip(servers, recoveries, strict=True)),
        15,
        "both workers to recover from the shard's restart",
    )
    recovered_after = time.monotonic() - restart_started
    # The clients that lost their sockets come back: a new one, with since = the last offset
    # seen on each durable stream.
    returned = []
    for peer, user in gone:
        since = {s: (durable_offsets(peer, s) or [0])[-1] for s in [*chat_streams, inboxes[user]]}
        returned.append((peer, await open_peer(user, 0, since), user))
    stock_mark = versions(database_url)
    await traffic("after", stock_rounds=4)

    # The sockets kept open: caught up by their worker, each stored event once, in order.
    truth = await everyone_exact(kept, "after the restart")
    # The sockets that came back: across both, each stored event once, in order.
    for old, new, user in returned:

        def whole(old: Peer = old, new: Peer = new, user: str = user) -> bool:
            return all(
                durable_offsets(old, s) + durable_offsets(new, s) == truth.get(s, [])
                for s in [*chat_streams, inboxes[user]]
            )

        await until(whole, 15, f"{new.name} with since")
    # Stock written after the recovery reaches every socket open then, once and in order.
    final = versions(database_url)
    for peer in [p for p, _ in kept] + [n for _, n, _ in returned]:
        for stream in item_streams:
            await until(partial(stock_reached, peer, stream, final[stream]), 10, "stock")
            got = stock_versions(peer, stream)
            assert got == sorted(set(got)), (peer.name, stream, got)
            later = [v for v in got if v > stock_mark[stream]]
            assert later == list(range(stock_mark[stream] + 1, final[stream] + 1)), (
                peer.name,
                stream,
                got,
            )
    await asyncio.sleep(0.5)  # nothing more, no duplicate, arrives late
    for peer, user in kept:
        assert exact(peer, user, truth), peer.name

    for peer, _ in kept:
        await peer.close()
    for _, new, _ in returned:
        await new.close()
    await writer.close()

    served = [after[i] - before[i] for i in range(2)]
    layer = {"publish", "subscribe", "unsubscribe"}
    report(
        "redis-shards",
        phase1_s=took,
        phase1_writes=sum(writer.statuses.values()),
        shard_groups=[len(c) for c in channels],
        commands_per_shard=[sum(c.values()) for c in served],
        publishes_per_shard=[c["publish"] for c in served],
        designated_other_commands_per_s=round(
            sum(v for k, v in served[0].items() if k not in layer) / took, 1
        ),
        designated_other_commands=dict(
            (k, v) for k, v in served[0].most_common(8) if k not in layer
        ),
        restart_recovered_s=recovered_after,
        statuses=dict(writer.statuses),
    )
