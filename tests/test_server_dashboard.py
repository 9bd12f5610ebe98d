"""Integration: the feed ticker and the dashboard on two workers with Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.typing import Origin, Subprotocol

from tests.conftest import token_for
from tests.pg import scratch_redis
from tests.server import Server, run_server

pytestmark = pytest.mark.server

INTERVAL = 0.5


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[Server]:
    with (
        scratch_redis() as (redis_url, prefix),
        run_server(
            tmp_path,
            extra_args=("--workers", "2"),
            REDIS_URL=redis_url,
            REDIS_PREFIX=prefix,
            FEED_INTERVAL_SECONDS=str(INTERVAL),
            RT_LEASE_TTL_SECONDS="2",
        ) as server,
    ):
        yield server


async def test_the_feed_ticks_once_per_interval_across_two_workers_and_stops(
    two_workers: Server,
) -> None:
    server = two_workers
    staff = {"Authorization": f"Bearer {token_for(server, 'alice')}"}
    # Seed 000's page: ws/test/, {"value": n} on connect and on every change.
    sockets = [
        await connect(f"{server.ws}/ws/test/", origin=Origin(server.origin)) for _ in range(4)
    ]
    for ws in sockets:
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 5)) == {"value": 0}
    async with httpx.AsyncClient(base_url=server.http, headers=staff) as http:
        switched = await http.post("/api/feed/", json={"on": True})
        assert switched.json() == {"on": True, "records": 0}
        started = time.monotonic()
        for ws in sockets:
            values = [orjson.loads(await asyncio.wait_for(ws.recv(), 5))["value"] for _ in range(6)]
            assert values == [1, 2, 3, 4, 5, 6]
        elapsed = time.monotonic() - started
        # Two tickers would give about twice as many records as intervals.
        assert elapsed >= 5 * INTERVAL * 0.8, elapsed
        off = await http.post("/api/feed/", json={"on": False})
        assert off.status_code == 200
        stopped_at = off.json()["records"]
        # Nothing more after the switch is off: wait out three intervals.
        for ws in sockets:
            try:
                while True:
                    value = orjson.loads(await asyncio.wait_for(ws.recv(), 3 * INTERVAL))["value"]
                    assert value <= stopped_at + 1  # a tick already under way may land
            except TimeoutError:
                pass
        final = (await http.get("/api/feed/")).json()["records"]
        assert final <= stopped_at + 1
    for ws in sockets:
        await ws.close()


async def test_the_dashboard_counts_sockets_on_both_workers(two_workers: Server) -> None:
    server = two_workers
    token = token_for(server, "bob")
    dash = await connect(
        f"{server.ws}/ws/",
        origin=Origin(server.origin),
        subprotocols=[Subprotocol("townsquare"), Subprotocol(f"bearer.{token}")],
    )
    await dash.send(orjson.dumps({"type": "subscribe", "stream": "dashboard"}).decode())
    assert orjson.loads(await dash.recv())["type"] == "ack"
    # The kernel spreads connections over the workers; open more until both have some.
    others = []
    while True:
        others += [
            await connect(f"{server.ws}/ws/test/", origin=Origin(server.origin)) for _ in range(6)
        ]
        expected = len(others) + 1
        while True:
            frame = orjson.loads(await asyncio.wait_for(dash.recv(), 15))
            if frame.get("event") != "dashboard.update":  # presence on the dashboard
                continue
            sockets = frame["data"]["sockets"]
            if sockets["total"] == expected:
                break
        if len(sockets["workers"]) == 2 or len(others) >= 42:
            break
    assert len(sockets["workers"]) == 2, sockets
    assert sum(sockets["workers"].values()) == expected
    assert frame["data"]["users_online"] == 1
    for ws in others:
        await ws.close()
    await dash.close()
