"""Integration: metrics, health checks and socket logs on real server processes.

``/metrics/`` is checked on two uvicorn workers (Redis layer), where every worker writes its
own values and the endpoint must merge them; ``/readyz`` on PostgreSQL, whose database is
made unreachable and then reachable again under a running server.
"""

from __future__ import annotations

import asyncio
import glob
import re
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect

from tests.pg import connections_refused, scratch_postgres, scratch_redis
from tests.server import Server, run_server

pytestmark = pytest.mark.server


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name{labels}`` in a Prometheus text exposition."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    raise AssertionError(f"no sample {name}{labels} in:\n{text}")


async def get(server: Server, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as client:
        return await client.get(path)


async def scrape(server: Server) -> str:
    response = await get(server, "/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def eventually(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait until ``condition()`` holds: the server handles a close after the client saw it,
    and no frame tells the client when that happened."""
    deadline = time.monotonic() + 10
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def open_socket(server: Server) -> ClientConnection:
    return await connect(f"{server.ws}/ws/", origin=server.origin, open_timeout=5)  # type: ignore[arg-type]


async def ping(ws: ClientConnection) -> None:
    await ws.send(orjson.dumps({"type": "ping"}).decode())
    pong = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
    assert pong["type"] == "pong", pong


def workers_seen(server: Server) -> set[str]:
    """Pids of the worker processes that logged an accepted socket."""
    return set(re.findall(r"event=socket\.open path=/ws/ user=\S+ worker=(\d+)", server.log()))


def test_healthz_answers_without_login(server: Server) -> None:
    response = httpx.get(f"{server.http}/healthz", timeout=5)
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_socket_close_is_logged_with_its_code(server: Server) -> None:
    ws = await open_socket(server)
    await ping(ws)
    await ws.close(code=1001)
    pattern = re.compile(r"event=socket\.close path=/ws/ user=anonymous code=1001 seconds=\d")

    async def logged() -> bool:
        return pattern.search(server.log()) is not None

    await eventually(logged, "the socket.close log line")


async def test_metrics_merge_frames_and_sockets_across_two_workers(tmp_path: Path) -> None:
    with (
        scratch_redis() as (redis_url, prefix),
        run_server(
            tmp_path, extra_args=("--workers", "2"), REDIS_URL=redis_url, REDIS_PREFIX=prefix
        ) as server,
    ):
        # serve made a fresh metrics directory of its own for this run.
        made = f"{tempfile.gettempdir()}/townsquare-metrics-{server.process.pid}-*"
        assert len(glob.glob(made)) == 1
        sockets: list[ClientConnection] = []
        pings = 0
        try:
            # The kernel picks the worker that accepts each connection: open sockets until
            # both workers hold some (each is logged once its ping is answered).
            while len(sockets) < 3 or len(workers_seen(server)) < 2:
                assert len(sockets) < 60, f"only workers {workers_seen(server)} got sockets"
                sockets.append(await open_socket(server))
                await ping(sockets[-1])
                pings += 1
            # At least 7 pings in all, spread over the sockets (so over both workers).
            while pings < 7:
                await ping(sockets[pings % len(sockets)])
                pings += 1

            text = await scrape(server)
            assert sample(text, "townsquare_frames_in_total", type="ping") == pings
            assert sample(text, "townsquare_frames_out_total", type="pong") == pings
            assert sample(text, "townsquare_sockets_open") == len(sockets)

            await sockets.pop().close()

            async def dropped() -> bool:
                return sample(await scrape(server), "townsquare_sockets_open") == len(sockets)

            await eventually(dropped, "the open-sockets gauge to drop by one")
            ready = await get(server, "/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["channel_layer"] == "ok"
        finally:
            for ws in sockets:
                await ws.close()
    assert glob.glob(made) == [], "serve left its metrics directory behind"


def test_readyz_follows_the_database_down_and_back_up(tmp_path: Path) -> None:
    with (
        scratch_postgres() as database_url,
        run_server(tmp_path, DATABASE_URL=database_url) as server,
    ):
        readyz = f"{server.http}/readyz"
        response = httpx.get(readyz, timeout=10)
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "ready", "database": "ok", "channel_layer": "ok"}

        with connections_refused(database_url):
            response = httpx.get(readyz, timeout=10)
            assert response.status_code == 503, response.text
            body = response.json()
            assert body["status"] == "unavailable"
            assert body["database"] == "OperationalError"
            assert body["channel_layer"] == "ok"
            assert httpx.get(f"{server.http}/healthz", timeout=5).status_code == 200

        # No restart: the next check opens a new connection.
        response = httpx.get(readyz, timeout=10)
        assert response.status_code == 200, response.text
        assert "event=health.not_ready part=database error=OperationalError" in server.log()
