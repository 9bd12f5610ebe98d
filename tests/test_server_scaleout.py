"""Integration: two worker processes writing one room at once; every subscriber on either
sees the room's messages in offset order with no gap and no duplicate."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol

from tests.conftest import token_for
from tests.pg import scratch_postgres, scratch_redis
from tests.server import Server, run_server

pytestmark = pytest.mark.server

POSTS = 60


async def subscriber(server: Server, token: str, stream: str) -> ClientConnection:
    ws = await connect(
        f"{server.ws}/ws/",
        origin=Origin(server.origin),
        subprotocols=[Subprotocol("townsquare"), Subprotocol(f"bearer.{token}")],
    )
    await ws.send(orjson.dumps({"type": "subscribe", "stream": stream}).decode())
    while orjson.loads(await asyncio.wait_for(ws.recv(), 5)).get("type") != "ack":
        pass
    return ws


async def messages(ws: ClientConnection, count: int) -> list[int]:
    """Offsets of the next ``count`` chat messages (fewer if none comes for 15 s)."""
    offsets: list[int] = []
    while len(offsets) < count:
        try:
            frame = orjson.loads(await asyncio.wait_for(ws.recv(), 15))
        except TimeoutError:
            break
        if frame.get("event") == "chat.message":
            offsets.append(frame["offset"])
    return offsets


async def test_two_workers_writing_one_room_keep_offset_order(tmp_path: Path) -> None:
    with (
        scratch_postgres() as database_url,
        scratch_redis() as (redis_url, prefix),
    ):
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
            token = token_for(a, "carol")
            async with httpx.AsyncClient(base_url=a.http) as http:
                response = await http.get(
                    "/api/rooms/", headers={"Authorization": f"Bearer {token}"}
                )
            rooms = response.json()
            room = next(r["id"] for r in rooms if r["name"] == "lobby")
            stream = f"chat:room:{room}"
            listeners = [await subscriber(a, token, stream), await subscriber(b, token, stream)]
            headers = {"Authorization": f"Bearer {token}"}
            async with (
                httpx.AsyncClient(base_url=a.http, headers=headers, timeout=30) as to_a,
                httpx.AsyncClient(base_url=b.http, headers=headers, timeout=30) as to_b,
            ):
                posts = await asyncio.gather(
                    *(
                        (to_a if i % 2 else to_b).post(
                            f"/api/rooms/{room}/messages/", json={"text": f"w{i}"}
                        )
                        for i in range(POSTS)
                    )
                )
            assert all(p.status_code == 201 for p in posts)
            offsets = sorted(p.json()["offset"] for p in posts)
            assert offsets == list(range(1, POSTS + 1))
            for ws in listeners:
                assert await messages(ws, POSTS) == offsets
                await ws.close()
