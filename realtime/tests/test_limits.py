"""Limits applied when a frame is read: rate, queued work, replay cost, connection caps."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from channels.testing import ApplicationCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.test import override_settings

from realtime import actions
from realtime.actions import ActionContext
from realtime.limits import ConnectionCaps, ReplayLanes, TokenBucket, connection_caps

from .conftest import LOG, bearer, communicator, receive, send

pytestmark = pytest.mark.django_db(transaction=True)


class Gate:
    """A test action ``test.wait`` that blocks until released and records what happened."""

    def __init__(self) -> None:
        self.started: list[Any] = []
        self.finished: list[Any] = []
        self.cancelled: list[Any] = []
        self.release = asyncio.Event()
        self.entered = asyncio.Event()

    async def __call__(self, ctx: ActionContext, frame: dict[str, Any]) -> dict[str, Any]:
        self.started.append(frame.get("n"))
        self.entered.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(frame.get("n"))
            raise
        self.finished.append(frame.get("n"))
        return {"n": frame.get("n")}


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    actions.register_action("test.wait", gate)
    yield gate


@override_settings(TOWNSQUARE_REALTIME={"FRAMES_PER_SECOND": 0.001, "FRAME_BURST": 3})
async def test_frames_are_counted_when_read_not_when_handled(gate: Gate) -> None:
    # The first frame blocks the socket's handling; the rate limit must still answer the
    # frames behind it at once, not after the blocked one finishes.
    comm = communicator()
    assert (await comm.connect())[0]
    await send(comm, {"type": "test.wait", "n": 1, "ref": "w"})
    await asyncio.wait_for(gate.entered.wait(), 2)
    for n in range(2, 7):
        await send(comm, {"type": "ping", "ref": n})
    # Burst 3: frames 1-3 admitted (2 and 3 queued behind the blocked one), 4-6 refused now.
    refused = [await receive(comm) for _ in range(3)]
    assert [(f["type"], f["code"]) for f in refused] == [("error", "rate_limited")] * 3
    assert gate.finished == []
    gate.release.set()
    answers = [await receive(comm) for _ in range(3)]
    assert [(f["type"], f["ref"]) for f in answers] == [("ack", "w"), ("pong", 2), ("pong", 3)]
    await comm.disconnect()


async def test_disconnect_cancels_the_frame_being_handled_and_drops_the_queue(
    gate: Gate,
) -> None:
    comm = communicator()
    assert (await comm.connect())[0]
    await send(comm, {"type": "test.wait", "n": 1})
    await asyncio.wait_for(gate.entered.wait(), 2)
    await send(comm, {"type": "test.wait", "n": 2})
    await send(comm, {"type": "test.wait", "n": 3})
    await comm.disconnect()
    gate.release.set()
    await asyncio.sleep(0)  # let anything wrongly left running take its turn
    assert gate.started == [1]
    assert gate.cancelled == [1]
    assert gate.finished == []


@override_settings(TOWNSQUARE_REALTIME={"MAX_QUEUED_FRAMES": 2})
async def test_a_full_queue_pauses_reading_and_loses_nothing(gate: Gate) -> None:
    comm = communicator()
    assert (await comm.connect())[0]
    await send(comm, {"type": "test.wait", "n": 0, "ref": 0})
    await asyncio.wait_for(gate.entered.wait(), 2)
    for n in range(1, 6):
        await send(comm, {"type": "ping", "ref": n})
    assert await comm.receive_nothing(timeout=0.1)
    gate.release.set()
    answers = [await receive(comm) for _ in range(6)]
    assert [f["ref"] for f in answers] == [0, 1, 2, 3, 4, 5]
    await comm.disconnect()


@override_settings(
    TOWNSQUARE_REALTIME={
        "REPLAY_MAX": 100,
        "REPLAY_ROWS_PER_SECOND": 2.0,
        "REPLAY_ROWS_BURST": 20,
    }
)
async def test_a_replay_is_charged_by_its_rows(alice: User) -> None:
    LOG.update({o: f"line {o}" for o in range(1, 201)})
    comm = communicator(subprotocols=bearer(alice))
    assert (await comm.connect())[0]
    await send(comm, {"type": "subscribe", "stream": "test:log", "since": 0, "ref": "a"})
    ack = await receive(comm)
    assert (ack["ref"], ack["replayed"], ack["truncated"]) == ("a", 100, True)
    lines = [await receive(comm) for _ in range(100)]
    assert [f["offset"] for f in lines] == list(range(1, 101))
    # 100 rows against a budget of 20 (2 a second): 80 rows of debt, 40 s to repay.
    await send(comm, {"type": "subscribe", "stream": "test:log", "since": 100, "ref": "b"})
    refused = await receive(comm)
    assert (refused["type"], refused["code"], refused["ref"]) == ("error", "rate_limited", "b")
    assert 39 <= refused["retry_after"] <= 40
    # Frames that replay nothing still pass while the replay is repaid.
    await send(comm, {"type": "ping", "ref": "p"})
    assert (await receive(comm))["type"] == "pong"
    await comm.disconnect()


@override_settings(TOWNSQUARE_REALTIME={"MAX_SOCKETS_PER_USER": 2})
async def test_sockets_over_the_per_user_cap_are_refused_at_the_handshake(alice: User) -> None:
    first, second = (communicator(subprotocols=bearer(alice)) for _ in range(2))
    assert (await first.connect())[0]
    assert (await second.connect())[0]
    third = communicator(subprotocols=bearer(alice))
    assert await third.connect() == (False, 1000)
    # An anonymous socket from the same address is not this user's.
    anonymous = communicator()
    assert (await anonymous.connect())[0]
    await first.disconnect()
    again = communicator(subprotocols=bearer(alice))
    assert (await again.connect())[0]
    for comm in (second, anonymous, again):
        await comm.disconnect()
    assert alice.pk not in connection_caps.users


@override_settings(TOWNSQUARE_REALTIME={"MAX_SOCKETS_PER_ADDRESS": 1})
async def test_the_per_address_cap_answers_429_where_the_server_can() -> None:
    from townsquare.asgi import application

    first = communicator()
    first.scope["client"] = ("127.0.0.1", 39999)
    assert (await first.connect())[0]
    scope = {
        "type": "websocket",
        "path": "/ws/",
        "raw_path": b"/ws/",
        "query_string": b"",
        "headers": [(b"origin", b"http://127.0.0.1")],
        "subprotocols": [],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "extensions": {"websocket.http.response": {}},
    }
    refused = ApplicationCommunicator(application, scope)
    await refused.send_input({"type": "websocket.connect"})
    start = await refused.receive_output(timeout=2)
    body = await refused.receive_output(timeout=2)
    assert start["type"] == "websocket.http.response.start"
    assert start["status"] == 429
    assert (b"retry-after", b"10") in start["headers"]
    assert body["type"] == "websocket.http.response.body"
    assert b'"code":"too_many_connections"' in body["body"]
    await refused.send_input({"type": "websocket.disconnect", "code": 1006})
    await refused.wait(timeout=2)
    await first.disconnect()
    assert "127.0.0.1" not in connection_caps.addresses


def test_connection_caps_count_and_release() -> None:
    caps = ConnectionCaps()
    assert caps.admit(1, "10.0.0.1", per_user=2, per_address=3) is None
    assert caps.admit(1, "10.0.0.1", per_user=2, per_address=3) is None
    assert caps.admit(1, "10.0.0.1", per_user=2, per_address=3) == "user"
    assert caps.admit(None, "10.0.0.1", per_user=2, per_address=3) is None
    assert caps.admit(None, "10.0.0.1", per_user=2, per_address=3) == "address"
    assert caps.admit(2, "10.0.0.2", per_user=0, per_address=0) is None
    for key in (1, 1, None, 2):
        caps.release(key, "10.0.0.1" if key != 2 else "10.0.0.2")
    assert (dict(caps.users), dict(caps.addresses)) == ({}, {})


def test_token_bucket_goes_into_debt_and_repays() -> None:
    bucket = TokenBucket(rate=10.0, burst=5)
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    bucket.charge(10)
    assert bucket.in_debt()
    assert 0.9 < bucket.seconds_to_repay() <= 1.0


async def test_replay_lanes_serialize_one_key_and_not_others() -> None:
    lanes = ReplayLanes()
    order: list[str] = []
    inside = asyncio.Event()
    release = asyncio.Event()

    async def hold(key: str, name: str) -> None:
        async with lanes.lane(key):
            order.append(f"{name} in")
            inside.set()
            await release.wait()
            order.append(f"{name} out")

    first = asyncio.create_task(hold("alice", "a1"))
    await inside.wait()
    second = asyncio.create_task(hold("alice", "a2"))
    other = asyncio.create_task(hold("bob", "b1"))
    await asyncio.sleep(0)
    assert order == ["a1 in", "b1 in"]
    release.set()
    await asyncio.gather(first, second, other)
    assert order.index("a2 in") > order.index("a1 out")
    assert len(lanes) == 0  # every lane released and dropped


async def test_too_many_streams_is_refused_with_an_error() -> None:
    limits = {**settings.TOWNSQUARE_REALTIME, "MAX_STREAMS_PER_SOCKET": 2}
    with override_settings(TOWNSQUARE_REALTIME=limits):
        comm = communicator()
        assert (await comm.connect())[0]
        for key in ("a", "b"):
            await send(comm, {"type": "subscribe", "stream": f"test:open:{key}"})
            assert (await receive(comm))["type"] == "ack"
            await receive(comm)
        await send(comm, {"type": "subscribe", "stream": "test:open:c", "ref": 3})
        error = await receive(comm)
        assert (error["code"], error["ref"]) == ("too_many_streams", 3)
        await comm.disconnect()


async def test_oversized_frame_closes_with_1009() -> None:
    limits = {**settings.TOWNSQUARE_REALTIME, "MAX_FRAME_BYTES": 1000}
    with override_settings(TOWNSQUARE_REALTIME=limits):
        comm = communicator()
        assert (await comm.connect())[0]
        await comm.send_to(text_data='{"type": "ping", "pad": "' + "x" * 1000 + '"}')
        closed = await comm.receive_output(timeout=2)
        assert closed == {"type": "websocket.close", "code": 1009, "reason": "frame too big"}
        await comm.disconnect()


async def test_multibyte_frame_over_the_byte_limit_closes_with_1009() -> None:
    limits = {**settings.TOWNSQUARE_REALTIME, "MAX_FRAME_BYTES": 1000}
    with override_settings(TOWNSQUARE_REALTIME=limits):
        comm = communicator()
        assert (await comm.connect())[0]
        # 400 characters, 1,200 bytes in UTF-8.
        await comm.send_to(text_data='{"type": "ping", "pad": "' + "€" * 400 + '"}')
        assert (await comm.receive_output(timeout=2))["code"] == 1009
        await comm.disconnect()


async def test_flood_gets_rate_limited_errors_then_close_4029() -> None:
    limits = {
        **settings.TOWNSQUARE_REALTIME,
        "FRAMES_PER_SECOND": 1.0,
        "FRAME_BURST": 3,
        "RATE_LIMIT_CLOSE_AFTER": 5,
    }
    with override_settings(TOWNSQUARE_REALTIME=limits):
        comm = communicator()
        assert (await comm.connect())[0]
        for i in range(3 + 5):
            await send(comm, {"type": "ping", "ref": i})
        pongs = [await receive(comm) for _ in range(3)]
        assert [p["ref"] for p in pongs] == [0, 1, 2]
        errors = [await receive(comm) for _ in range(4)]
        assert [e["code"] for e in errors] == ["rate_limited"] * 4
        closed = await comm.receive_output(timeout=2)
        assert (closed["type"], closed["code"]) == ("websocket.close", 4029)
        await comm.disconnect()
