"""Integration: ``/sse/`` on two worker processes (PostgreSQL, the Redis channel layer).

Each connection lives on one worker; a client's POSTs may reach any worker (behind a load
balancer they usually reach another one). A frame POSTed to the other worker is relayed to
the one holding the connection, answered there on the stream, and the poster gets the status
it was given there; events cross workers as on ``/ws/``. The ports are each worker's own, so
which worker holds what is known.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from realtime.tests.test_sse import sse
from tests.conftest import login_cookies, token_for
from tests.pg import scratch_postgres, scratch_redis
from tests.server import Server, run_server

pytestmark = pytest.mark.server


@dataclass
class Workers:
    a: Server
    b: Server


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    workdir = tmp_path_factory.mktemp("sse-scaleout")
    with (
        scratch_postgres() as database_url,
        scratch_redis() as (redis_url, prefix),
        # A migrates and loads the demo data; B only serves the same database.
        run_server(
            workdir, DATABASE_URL=database_url, REDIS_URL=redis_url, REDIS_PREFIX=prefix
        ) as a,
        run_server(
            workdir,
            prepare=False,
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            REDIS_PREFIX=prefix,
        ) as b,
    ):
        yield Workers(a=a, b=b)


def bearer(access: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access}"}


def lobby_id(base: str, access: str) -> int:
    rooms = httpx.get(f"{base}/api/rooms/", headers=bearer(access), timeout=10).json()
    return int(next(r["id"] for r in rooms if r["name"] == "lobby"))


async def test_sse_posts_to_the_other_backend_are_relayed_and_delivery_crosses_backends(
    workers: Workers,
) -> None:
    a, b = workers.a, workers.b
    alice_cookies = login_cookies(a, "alice")  # the session is in the shared database
    csrf = {"X-CSRFToken": alice_cookies["csrftoken"]}
    bob = token_for(b, "bob")
    lobby = lobby_id(a.http, bob)
    stream = f"chat:room:{lobby}"
    async with (
        sse(a.http, cookies=alice_cookies) as (_, alice, alice_post),
        sse(b.http, f"stream={stream}", headers=bearer(bob)) as (_, bobs, bob_post),
        httpx.AsyncClient(timeout=10, cookies=alice_cookies, headers=csrf) as as_alice,
        httpx.AsyncClient(timeout=10, headers=bearer(bob)) as as_bob,
    ):
        await bobs.until(lambda f: f.get("ref") == stream)

        async def on(who: httpx.AsyncClient, url: str, frame: dict[str, Any]) -> httpx.Response:
            return await who.post(url, content=orjson.dumps(frame))

        # alice's stream is on A; her session POSTs go to B, which relays them to A.
        text = f"relayed {uuid.uuid4()}"
        sub = {"type": "subscribe", "stream": stream, "ref": "sub"}
        say = {"type": "chat.send", "room": lobby, "text": text, "client_id": text, "ref": "say"}
        for frame in (sub, say):
            answer = await on(as_alice, b.http + alice_post, frame)
            assert answer.status_code == 202, answer.text
        acks = [(await alice.until(lambda f: f["type"] in ("ack", "error")))[0] for _ in range(2)]
        assert [(f["type"], f["ref"]) for f in acks] == [("ack", "sub"), ("ack", "say")]
        # bob, on B, hears it at the ack's offset.
        heard, _ = await bobs.until(lambda f: f.get("event") == "chat.message")
        assert (heard["data"]["text"], heard["offset"]) == (text, acks[1]["offset"])
        # bob's JWT POST goes to A, relayed to his stream on B; alice on A hears it.
        reply = f"back {uuid.uuid4()}"
        say = {"type": "chat.send", "room": lobby, "text": reply, "ref": "r"}
        answer = await on(as_bob, a.http + bob_post, say)
        assert answer.status_code == 202, answer.text
        ack, _ = await bobs.until(lambda f: f["type"] in ("ack", "error"))
        assert (ack["type"], ack["ref"]) == ("ack", "r")
        heard, _ = await alice.until(
            lambda f: f.get("event") == "chat.message" and f["data"]["text"] == reply
        )
        assert heard["offset"] == ack["offset"] and heard["data"]["author"]["username"] == "bob"
        # Refused before any relay: alice's frame to bob's stream.
        foreign = await on(as_alice, a.http + bob_post, sub)
        assert foreign.status_code == 403
        # alice's stream ends (a frame over MAX_FRAME_BYTES closes it with 1009); a frame
        # relayed to it afterwards is refused by A with 404, not accepted and lost.
        big = b'"' + b"x" * 70_000 + b'"'
        answer = await as_alice.post(b.http + alice_post, content=big)
        assert answer.status_code == 202
        while (closing := await alice.next()).get("event") != "close":
            pass
        assert orjson.loads(closing["data"])["code"] == 1009
        late = await on(as_alice, b.http + alice_post, sub)
        assert late.status_code == 404 and late.json()["code"] == "not_found"
