"""``/sse/`` (realtime.sse) against a real server: the /ws/ frames over Server-Sent Events,
the cursor and ``Last-Event-ID``, POSTed frames, authentication, limits, heartbeats."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from realtime import sse as sse_module
from realtime.sse import CursorError, format_cursor, parse_cursor
from tests.conftest import login_cookies, token_for
from tests.pg import scratch_redis
from tests.server import Server, run_server

PUBLISH_KEY = "sse-test-publish-key"


def test_cursor_round_trips_and_refuses_what_is_not_one() -> None:
    cursor = {"chat:room:2": 17, "user:3": 0}
    assert format_cursor(cursor) == "chat:room:2@17,user:3@0"
    assert parse_cursor(format_cursor(cursor)) == cursor
    assert parse_cursor("") == {}
    for bad in ("chat:room:2", "chat:room:2@-1", "a b@1", "x@1,x@2", "x@1e3", "x@" + "9" * 20):
        with pytest.raises(CursorError):
            parse_cursor(bad)


class _Held:
    """A stand-in for a connection of this process: what ``post`` was handed."""

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        self.bodies: list[bytes] = []

    def post(self, body: bytes) -> int:
        self.bodies.append(body)
        return 202


async def test_a_relayed_frame_is_answered_with_its_status_beside_the_hubs_reader() -> None:
    # channels_redis' core layer: the hub's reader blocks on its channel's pop (made 60 s
    # long here) the whole time. The relay must not wait behind it (a second channel prefix
    # would, for the whole pop), and the poster gets the status the holder gave the frame.
    from channels_redis.core import RedisChannelLayer

    with scratch_redis() as (url, prefix):
        layer = RedisChannelLayer(hosts=[url], prefix=prefix)
        layer.brpop_timeout = 60
        hub_channel = await layer.new_channel(prefix="hub")
        hub_reader = asyncio.get_running_loop().create_task(layer.receive(hub_channel))
        relay = sse_module._Relay(layer)
        held = _Held(user_id=7)
        sse_module._connections["held-key"] = held  # type: ignore[assignment]
        try:
            await relay.start()
            await asyncio.sleep(0)  # the hub's reader holds the pop from here on
            async with asyncio.timeout(20):
                assert await relay.relay(relay.channel, "held-key", 7, b'{"type":"ping"}') == 202
                assert held.bodies == [b'{"type":"ping"}']
                # Another user's frame, an unknown connection: refused, not dropped unseen.
                assert await relay.relay(relay.channel, "held-key", 8, b"{}") == 404
                assert await relay.relay(relay.channel, "gone-key", 7, b"{}") == 404
            assert held.bodies == [b'{"type":"ping"}'] and relay.waiting == {}
            # The hub's own messages still reach the hub's reader.
            await layer.send(hub_channel, {"type": "hub.probe"})
            assert (await asyncio.wait_for(hub_reader, 20))["type"] == "hub.probe"
        finally:
            sse_module._connections.pop("held-key", None)
            hub_reader.cancel()
            if relay.reader is not None:
                relay.reader.cancel()
            await asyncio.gather(hub_reader, *filter(None, [relay.reader]), return_exceptions=True)
            await layer.flush()


@pytest.fixture(scope="module")
def sse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server(
        tmp_path_factory.mktemp("sse"),
        RT_SSE_HEARTBEAT_SECONDS="0.5",
        RT_OUTBOX_MAX_BYTES="200000",
        RT_MAX_FRAME_BYTES="4096",
        PUBLISH_API_KEY=PUBLISH_KEY,
        # The slow-reader flood publishes an undeclared event, as a trusted backend may.
        TOWNSQUARE_VALIDATE_EVENTS="0",
    ) as server:
        yield server


class Records:
    """The records of one ``text/event-stream`` response, parsed."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()

    async def next(self, timeout: float = 5) -> dict[str, Any]:
        """The next record: ``{"event"?, "id"?, "data"?, "comment"?, "retry"?}``."""
        fields: dict[str, Any] = {}
        async with asyncio.timeout(timeout):
            async for line in self.lines:
                if not line:
                    if fields:
                        return fields
                    continue
                name, _, value = line.partition(":")
                fields[name or "comment"] = value[1:] if value.startswith(" ") else value
        raise EOFError("the stream ended")

    async def frame(self, timeout: float = 5) -> tuple[dict[str, Any], str | None]:
        """The next frame (skipping heartbeats) and its ``id:``, if any."""
        async with asyncio.timeout(timeout):
            while True:
                rec = await self.next(timeout)
                if "data" in rec and "event" not in rec:
                    return orjson.loads(rec["data"]), rec.get("id")

    async def until(self, test: Any, timeout: float = 5) -> tuple[dict[str, Any], str | None]:
        """The next frame that passes ``test``, within ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                frame, id_ = await self.frame(timeout)
                if test(frame):
                    return frame, id_


@contextlib.asynccontextmanager
async def sse(
    base: str,
    query: str = "",
    *,
    headers: dict[str, str] | None = None,
    cookies: httpx.Cookies | None = None,
) -> AsyncIterator[tuple[httpx.AsyncClient, Records, str]]:
    """Open ``<base>/sse/?<query>``; yield the client, the records and the POST URL."""
    async with (
        httpx.AsyncClient(base_url=base, cookies=cookies, timeout=10) as client,
        client.stream("GET", f"/sse/?{query}", headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache, no-store"
        records = Records(response)
        hello = await records.next()
        assert hello["event"] == "connected"
        yield client, records, orjson.loads(hello["data"])["post"]


def csrf(cookies: httpx.Cookies) -> dict[str, str]:
    return {"X-CSRFToken": cookies["csrftoken"]}


def room_of(server: Server, token: str, name: str) -> int:
    auth = {"Authorization": f"Bearer {token}"}
    rooms = httpx.get(f"{server.http}/api/rooms/", headers=auth).json()
    found = [r["id"] for r in rooms if r["name"] == name]
    if found:
        return int(found[0])
    made = httpx.post(f"{server.http}/api/rooms/", json={"name": name}, headers=auth)
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


def say(server: Server, token: str, room: int, text: str) -> int:
    response = httpx.post(
        f"{server.http}/api/rooms/{room}/messages/",
        json={"text": text},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.text
    return int(response.json()["offset"])


async def test_the_stream_carries_the_frames_of_ws_with_a_cursor_and_heartbeats(
    sse_server: Server,
) -> None:
    server = sse_server
    token = token_for(server, "alice")
    room = room_of(server, token, "lobby")
    before = say(server, token, room, "before")
    stream = f"chat:room:{room}"
    auth = {"Authorization": f"Bearer {token}"}
    # The same subscription over /ws/ and /sse/ (since 0: a replay), then one live message.
    async with connect(
        f"{server.ws}/ws/",
        origin=server.origin,  # type: ignore[arg-type]
        subprotocols=["townsquare", f"bearer.{token}"],  # type: ignore[list-item]
    ) as ws:
        sub = {"type": "subscribe", "stream": stream, "since": 0, "ref": stream}
        await ws.send(orjson.dumps(sub).decode())
        ws_frames = [orjson.loads(await asyncio.wait_for(ws.recv(), 5))]
        while ws_frames[-1].get("offset") != before:
            ws_frames.append(orjson.loads(await asyncio.wait_for(ws.recv(), 5)))
        async with sse(server.http, f"stream={stream}@0", headers=auth) as (_, records, _post):
            # nginx reads this and passes each record on at once (it hides it from clients).
            assert records.response.headers["x-accel-buffering"] == "no"
            sse_frames: list[dict[str, Any]] = []
            ids: list[str | None] = []
            while not sse_frames or sse_frames[-1].get("offset") != before:
                frame, id_ = await records.frame()
                sse_frames.append(frame)
                ids.append(id_)
            assert sse_frames == ws_frames
            assert sse_frames[0]["type"] == "ack" and sse_frames[0]["replayed"] == before
            # Every frame that moves the cursor carries it: the ack (start 0), the events.
            assert ids[0] == f"{stream}@0"
            for frame, id_ in zip(sse_frames[1:], ids[1:], strict=True):
                assert id_ == (f"{stream}@{frame['offset']}" if "offset" in frame else None)
            offset = say(server, token, room, "live")
            live, live_id = await records.until(lambda f: f.get("offset") == offset)
            ws_live = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
            while ws_live.get("offset") != offset:
                ws_live = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
            assert live == ws_live and live_id == f"{stream}@{offset}"
            # Quiet now: heartbeats (every 0.5 s here) keep the response moving.
            beat = await records.next(timeout=2)
            assert beat == {"comment": "ping"}


async def test_last_event_id_resumes_every_stream_without_gap_or_duplicate(
    sse_server: Server,
) -> None:
    server = sse_server
    token = token_for(server, "alice")
    auth = {"Authorization": f"Bearer {token}"}
    rooms = [room_of(server, token, "lobby"), room_of(server, token, "sse-second")]
    streams = [f"chat:room:{r}" for r in rooms]
    async with sse(server.http, "&".join(f"stream={s}" for s in streams), headers=auth) as (
        _,
        records,
        _,
    ):
        for _ in streams:
            await records.until(lambda f: f.get("type") == "ack")
        seen = [say(server, token, rooms[0], "a1"), say(server, token, rooms[1], "b1")]
        _, last_id = await records.until(
            lambda f: (f.get("stream"), f.get("offset")) == (streams[1], seen[1])
        )
    assert last_id is not None
    assert parse_cursor(last_id) == {streams[0]: seen[0], streams[1]: seen[1]}
    # Missed while away: two in each room.
    missed = {
        s: [say(server, token, r, f"gap {i}") for i in range(2)]
        for s, r in zip(streams, rooms, strict=True)
    }
    async with sse(
        server.http, f"stream={streams[0]}", headers={**auth, "Last-Event-ID": last_id}
    ) as (
        _,
        records,
        _,
    ):
        got: dict[str, list[int]] = {s: [] for s in streams}
        acks = 0
        while acks < 2 or any(len(got[s]) < 2 for s in streams):
            frame, _ = await records.frame()
            if frame["type"] == "ack":
                acks += 1
                assert frame["replayed"] == 2, frame
            elif "offset" in frame:
                got[frame["stream"]].append(frame["offset"])
        assert got == missed
        # And nothing more: a live one comes next, once.
        offset = say(server, token, rooms[1], "after")
        frame, id_ = await records.until(lambda f: "offset" in f)
        assert (frame["stream"], frame["offset"]) == (streams[1], offset)
        assert parse_cursor(id_ or "") == {streams[0]: missed[streams[0]][-1], streams[1]: offset}


async def test_posted_frames_are_answered_on_the_stream(sse_server: Server) -> None:
    server = sse_server
    cookies = login_cookies(server, "alice")
    room = room_of(server, token_for(server, "alice"), "lobby")
    stream = f"chat:room:{room}"
    async with sse(server.http, cookies=cookies) as (client, records, post):
        sub = {"type": "subscribe", "stream": stream, "ref": 1}
        response = await client.post(post, content=orjson.dumps(sub), headers=csrf(cookies))
        assert response.status_code == 202
        ack, ack_id = await records.until(lambda f: f.get("type") == "ack")
        assert (ack["ref"], ack["for"], ack["durable"]) == (1, "subscribe", True)
        assert stream in parse_cursor(ack_id or "")
        # Bad JSON and a non-object: the error frames of /ws/.
        await client.post(post, content=b"{nope", headers=csrf(cookies))
        error, _ = await records.until(lambda f: f["type"] == "error")
        assert error["code"] == "bad_json"
        await client.post(post, content=b"[1]", headers=csrf(cookies))
        assert (await records.frame())[0]["code"] == "bad_frame"
        # Unsubscribe drops the stream from the cursor.
        unsub = {"type": "unsubscribe", "stream": stream, "ref": 3}
        await client.post(post, content=orjson.dumps(unsub), headers=csrf(cookies))
        ack, ack_id = await records.until(lambda f: f.get("type") == "ack")
        assert ack["was_subscribed"] is True and ack_id == ""
        # Refused: no CSRF token, another user, an unknown connection.
        no_csrf = await client.post(post, content=orjson.dumps(sub))
        assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["detail"]
        bob = login_cookies(server, "bob")
        async with httpx.AsyncClient(base_url=server.http, cookies=bob) as other:
            foreign = await other.post(post, content=orjson.dumps(sub), headers=csrf(bob))
            assert foreign.status_code == 403 and foreign.json()["code"] == "forbidden"
            bob_token = {"Authorization": f"Bearer {token_for(server, 'bob')}"}
            foreign = await other.post(post, content=orjson.dumps(sub), headers=bob_token)
            assert foreign.status_code == 403
        forged = post.replace("/sse/", "/sse/x", 1)
        assert (await client.post(forged, content=b"{}", headers=csrf(cookies))).status_code == 404
        # Nothing of the refused POSTs reached the stream: the next frame is a pong.
        await client.post(post, content=b'{"type":"ping","ref":9}', headers=csrf(cookies))
        assert (await records.frame())[0]["type"] == "pong"


async def test_a_session_send_posted_right_after_a_subscribe_is_answered(
    sse_server: Server,
) -> None:
    # Two POSTs back to back, the second before the first's ack: both are answered, in the
    # order posted, and the message comes back as an event of the subscribed room.
    server = sse_server
    cookies = login_cookies(server, "alice")
    room = room_of(server, token_for(server, "alice"), "lobby")
    stream = f"chat:room:{room}"
    async with sse(server.http, cookies=cookies) as (client, records, post):
        sub = {"type": "subscribe", "stream": stream, "ref": "sub"}
        text = f"session {time.monotonic_ns()}"
        send = {"type": "chat.send", "room": room, "text": text, "client_id": text, "ref": "s"}
        for posted in (sub, send):
            response = await client.post(post, content=orjson.dumps(posted), headers=csrf(cookies))
            assert response.status_code == 202, response.text
        answers: list[tuple[str, Any, Any]] = []
        event: dict[str, Any] | None = None
        while len(answers) < 2 or event is None:
            frame, _ = await records.frame()
            if frame["type"] in ("ack", "error"):
                answers.append((frame["type"], frame.get("ref"), frame.get("for")))
            elif frame["type"] == "event" and frame["data"].get("text") == text:
                event = frame
        assert answers == [("ack", "sub", "subscribe"), ("ack", "s", "chat.send")]
        assert event["stream"] == stream and event["data"]["author"]["username"] == "alice"


async def test_a_jwt_in_authorization_signs_in_stream_and_posts(sse_server: Server) -> None:
    server = sse_server
    token = token_for(server, "bob")
    auth = {"Authorization": f"Bearer {token}"}
    room = room_of(server, token, "lobby")
    async with sse(server.http, headers=auth) as (client, records, post):
        send = {"type": "chat.send", "room": room, "text": "jwt", "client_id": "j-1", "ref": "r"}
        assert (
            await client.post(post, content=orjson.dumps(send), headers=auth)
        ).status_code == 202
        ack, _ = await records.frame()
        assert (ack["type"], ack["ref"], ack["duplicate"]) == ("ack", "r", False)
        bad = {"Authorization": "Bearer not-a-token"}
        refused = await client.post(post, content=b"{}", headers=bad)
        assert refused.status_code == 401 and refused.json()["code"] == "token_invalid"
    # Anonymous: the stream works, members-only streams are refused as on /ws/.
    async with sse(server.http, f"stream=chat:room:{room}") as (_, records, _):
        error, _ = await records.frame()
        assert (error["type"], error["code"], error["ref"]) == (
            "error",
            "unauthenticated",
            f"chat:room:{room}",
        )


async def test_bad_requests_are_refused_before_the_stream(sse_server: Server) -> None:
    async with httpx.AsyncClient(base_url=sse_server.http) as client:
        bad = await client.get("/sse/", headers={"Last-Event-ID": "chat:room:1"})
        assert bad.status_code == 400 and bad.json()["code"] == "invalid"
        bad = await client.get("/sse/?stream=no%20spaces")
        assert bad.status_code == 400
        foreign = await client.get("/sse/", headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403


async def test_an_oversize_frame_closes_with_1009(sse_server: Server) -> None:
    token = token_for(sse_server, "alice")
    auth = {"Authorization": f"Bearer {token}"}
    async with sse(sse_server.http, headers=auth) as (client, records, post):
        response = await client.post(post, content=b'"' + b"x" * 5000 + b'"', headers=auth)
        assert response.status_code == 202
        closing = await records.next()
        while closing.get("event") != "close":
            closing = await records.next()
        assert orjson.loads(closing["data"]) == {"code": 1009, "reason": "frame too big"}
        with pytest.raises(EOFError):
            await records.next()
        # The stream has ended: a frame posted to it now is refused, not accepted and lost.
        late = await client.post(post, content=b'{"type":"ping"}', headers=auth)
        assert late.status_code == 404 and late.json()["code"] == "not_found"


def test_a_slow_reader_is_closed_per_policy(sse_server: Server) -> None:
    # A client that stops reading: its receive window (4 kB, set before connecting), the
    # server's socket buffers and then the consumer's outbox (OUTBOX_MAX_BYTES, 200 kB here)
    # fill up, and the consumer closes it with 4008 as it would a socket. Bounded by bytes
    # published, not by time: 2,000 events of 3 kB are over ten times what the buffers hold.
    server = sse_server
    with socket.socket() as raw:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", server.port))
        raw.sendall(b"GET /sse/?stream=feed HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = raw.recv(4096)
        assert head.startswith(b"HTTP/1.1 200"), head
        event = {"stream": "feed", "event": "feed.tick", "data": {"n": 1, "text": "x" * 3000}}
        published = 0
        with httpx.Client(base_url=server.http, timeout=30) as client:
            while "slow reader closed path=/sse/" not in server.log():
                assert published < 2000, "the slow reader was never closed"
                for _ in range(20):
                    answer = client.post(
                        "/api/publish/", json=event, headers={"X-Townsquare-Key": PUBLISH_KEY}
                    )
                    assert answer.status_code in (200, 202), answer.text
                published += 20
        # Reading again, the client finds the end of the response: with the close record
        # (4008) last if it got out within CLOSE_WRITE_SECONDS behind the unread output (here
        # it depends on when the reading starts), else dropped unfinished.
        raw.settimeout(30)
        received = head
        while chunk := raw.recv(1 << 16):
            received += chunk
        if b"event: close" in received:
            tail = received[received.rindex(b"event: close") :]
            assert tail.startswith(
                b'event: close\ndata: {"code":4008,"reason":"slow reader: output buffer full"}'
            ), tail
            assert b"data: " not in tail[len(b"event: close\ndata: ") :]
        assert received.count(b"data: ") < published
        # The consumer ended with 4008 before the server let the connection go.
        assert "path=/sse/ user=anonymous code=4008" in server.log()
