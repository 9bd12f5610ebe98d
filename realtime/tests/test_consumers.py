"""The `/ws/` consumers (realtime/consumers.py): frames and error frames, subscribe,
unsubscribe and ping, the Origin check, sign-in refused at connect (4001), bugs (1011),
pipelined actions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.test import override_settings

from realtime import actions
from realtime.actions import ActionContext
from realtime.hub import get_hub
from realtime.publish import apublish
from realtime.tokens import ALGORITHM, ISSUER

from .conftest import LOG, communicator, receive, send

pytestmark = pytest.mark.django_db(transaction=True)


async def test_ping_answers_pong_with_ref(ws: WebsocketCommunicator) -> None:
    await send(ws, {"type": "ping", "ref": 7})
    pong = await receive(ws)
    assert pong["type"] == "pong"
    assert pong["ref"] == 7
    assert abs(pong["time"] - time.time()) < 5


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{not json", "bad_json"),
        ("[1, 2]", "bad_frame"),
        ('"subscribe"', "bad_frame"),
        ("{}", "bad_frame"),
        ('{"type": 5}', "bad_frame"),
        ('{"type": "launch.missiles"}', "unknown_type"),
        ('{"type": "ping", "ref": {"x": 1}}', "invalid"),
        ('{"type": "subscribe"}', "invalid"),
        ('{"type": "subscribe", "stream": "has space"}', "invalid"),
        ('{"type": "subscribe", "stream": "a.b"}', "invalid"),
        ('{"type": "subscribe", "stream": "test:open\\n"}', "invalid"),
        ('{"type": "subscribe", "stream": "nosuchkind:1"}', "unknown_stream"),
        ('{"type": "subscribe", "stream": "test:log", "since": -1}', "invalid"),
        ('{"type": "subscribe", "stream": "test:log", "since": "3"}', "invalid"),
        ('{"type": "subscribe", "stream": "test:log", "since": true}', "invalid"),
        ('{"type": "subscribe", "stream": "test:open", "since": 3}', "invalid"),
        ('{"type": "unsubscribe", "stream": 3}', "invalid"),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_stays_usable(
    ws: WebsocketCommunicator, text: str, code: str
) -> None:
    await ws.send_to(text_data=text)
    error = await receive(ws)
    assert error["type"] == "error"
    assert error["code"] == code
    assert error["detail"]
    await send(ws, {"type": "ping", "ref": "after"})
    assert (await receive(ws))["ref"] == "after"


async def test_binary_frames_close_the_socket_with_1003(ws: WebsocketCommunicator) -> None:
    await ws.send_to(bytes_data=b"\x00\x01")
    closed = await ws.receive_output(timeout=2)
    assert closed == {
        "type": "websocket.close",
        "code": 1003,
        "reason": "binary frames are not accepted",
    }


async def test_error_carries_the_ref_of_the_failing_frame(ws: WebsocketCommunicator) -> None:
    await send(ws, {"type": "subscribe", "stream": "nosuch", "ref": "s1"})
    error = await receive(ws)
    assert error["ref"] == "s1"
    assert error["code"] == "unknown_stream"


async def test_subscribe_acks_sends_snapshot_then_live_events(ws: WebsocketCommunicator) -> None:
    await send(ws, {"type": "subscribe", "stream": "test:open:a1", "ref": 1})
    ack = await receive(ws)
    assert ack == {
        "type": "ack",
        "ref": 1,
        "for": "subscribe",
        "stream": "test:open:a1",
        "durable": False,
        "replayed": 0,
        "truncated": False,
    }
    assert await receive(ws) == {
        "type": "event",
        "stream": "test:open:a1",
        "event": "test.snapshot",
        "data": {"key": "a1"},
    }
    assert await apublish("test:open:a1", "test.changed", {"n": 1}) is True
    assert await apublish("test:open:other", "test.changed", {"n": 2}) is True
    assert await apublish("test:open:a1", "test.changed", {"n": 3}) is True
    first, second = await receive(ws), await receive(ws)
    assert [first["data"], second["data"]] == [{"n": 1}, {"n": 3}]
    assert first["event"] == "test.changed"
    assert await ws.receive_nothing(timeout=0.1)


async def test_unsubscribe_stops_events_and_is_idempotent(ws: WebsocketCommunicator) -> None:
    await send(ws, {"type": "subscribe", "stream": "test:open:u"})
    await receive(ws)
    await receive(ws)  # snapshot
    await send(ws, {"type": "unsubscribe", "stream": "test:open:u", "ref": "x"})
    assert await receive(ws) == {
        "type": "ack",
        "ref": "x",
        "for": "unsubscribe",
        "stream": "test:open:u",
        "was_subscribed": True,
    }
    await apublish("test:open:u", "test.changed", {})
    assert await ws.receive_nothing(timeout=0.1)
    await send(ws, {"type": "unsubscribe", "stream": "test:open:u"})
    assert (await receive(ws))["was_subscribed"] is False
    assert get_hub().local_subscribers("test:open:u") == 0


async def test_replay_is_capped_and_says_truncated(ws: WebsocketCommunicator) -> None:
    LOG.update({i: f"line {i}" for i in range(1, 8)})
    with override_settings(TOWNSQUARE_REALTIME={**settings.TOWNSQUARE_REALTIME, "REPLAY_MAX": 3}):
        comm = communicator()
        assert (await comm.connect())[0]
        await send(comm, {"type": "subscribe", "stream": "test:log", "since": 0})
        ack = await receive(comm)
        assert (ack["replayed"], ack["truncated"]) == (3, True)
        offsets = [(await receive(comm))["offset"] for _ in range(3)]
        assert offsets == [1, 2, 3]
        await comm.disconnect()


async def test_resubscribing_replaces_the_subscription(ws: WebsocketCommunicator) -> None:
    for _ in range(2):
        await send(ws, {"type": "subscribe", "stream": "test:open:r"})
        assert (await receive(ws))["type"] == "ack"
        await receive(ws)
    assert get_hub().local_subscribers("test:open:r") == 1
    await apublish("test:open:r", "test.changed", {"once": True})
    assert (await receive(ws))["data"] == {"once": True}
    assert await ws.receive_nothing(timeout=0.1)


async def test_foreign_or_missing_origin_is_refused() -> None:
    for origin in (b"http://evil.example", None):
        comm = communicator(origin=origin)
        connected, _ = await comm.connect()
        assert connected is False
        await comm.disconnect()


async def test_forbidden_stream_gets_forbidden_and_anonymous_gets_unauthenticated(
    ws: WebsocketCommunicator,
) -> None:
    await send(ws, {"type": "subscribe", "stream": "test:mine:alice"})
    assert (await receive(ws))["code"] == "unauthenticated"
    assert get_hub().local_subscribers("test:mine:alice") == 0


@pytest.mark.parametrize(
    ("claims_change", "key", "detail"),
    [
        ({"exp": int(time.time()) - 10}, None, "token_expired"),
        ({}, "not-the-secret-but-long-enough-for-hs256-0123456789", "token_invalid"),
        ({"typ": "refresh"}, None, "token_invalid"),
        ({"sub": "999999"}, None, "token_invalid"),
    ],
)
async def test_expired_forged_or_foreign_tokens_close_with_4001(
    alice: User, claims_change: dict[str, object], key: str | None, detail: str
) -> None:
    now = int(time.time())
    claims = {"sub": str(alice.pk), "iat": now, "exp": now + 60, "iss": ISSUER, "typ": "access"}
    claims.update(claims_change)
    token = jwt.encode(claims, key or settings.SECRET_KEY, algorithm=ALGORITHM)
    comm = communicator(subprotocols=["townsquare", f"bearer.{token}"])
    assert (await comm.connect())[0]
    error = await receive(comm)
    assert (error["type"], error["code"], error["reason"]) == ("error", "unauthenticated", detail)
    assert error["detail"].startswith("the token")
    closed = await comm.receive_output(timeout=2)
    assert (closed["type"], closed["code"]) == ("websocket.close", 4001)
    await comm.disconnect()


async def test_garbage_token_closes_with_4001() -> None:
    comm = communicator("/ws/?token=not.a.jwt")
    assert (await comm.connect())[0]
    assert (await receive(comm))["reason"] == "token_invalid"
    assert (await comm.receive_output(timeout=2))["code"] == 4001
    await comm.disconnect()


async def test_disconnect_leaves_the_hub(ws: WebsocketCommunicator) -> None:
    await send(ws, {"type": "subscribe", "stream": "test:open:gone"})
    await receive(ws)
    hub = get_hub()
    assert hub.local_subscribers("test:open:gone") == 1
    await ws.disconnect()
    assert hub.local_subscribers("test:open:gone") == 0
    assert hub.stream_count == 0


async def test_a_bug_in_a_frame_handler_closes_with_1011() -> None:
    async def broken(ctx: ActionContext, frame: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("bug")

    actions.register_action("test.broken", broken)
    comm: WebsocketCommunicator = communicator()
    assert (await comm.connect())[0]
    await send(comm, {"type": "test.broken"})
    closed = await comm.receive_output(timeout=2)
    assert (closed["type"], closed["code"]) == ("websocket.close", 1011)


# --- pipelined actions ----------------------------------------------------------------------


@pytest.fixture
def gate_action() -> Iterator[asyncio.Event]:
    """A pipelined ``test.gate`` action that answers ``{n}`` once the event is set;
    ``{"fail": "bug"}`` raises a bug, ``{"fail": "denied"}`` a PermissionDenied."""
    gate = asyncio.Event()

    async def handler(ctx: Any, frame: dict[str, Any]) -> dict[str, Any]:
        if frame.get("fail") == "bug":
            raise RuntimeError("a bug")
        if frame.get("fail") == "denied":
            raise PermissionDenied("no")
        await gate.wait()
        return {"n": frame.get("n")}

    actions.register_action("test.gate", handler, pipelined=True)
    yield gate


async def test_a_pipelined_action_lets_later_frames_be_answered_first(
    ws: WebsocketCommunicator, gate_action: asyncio.Event
) -> None:
    await send(ws, {"type": "test.gate", "n": 1, "ref": "a"})
    await send(ws, {"type": "ping", "ref": "p"})
    assert (await receive(ws))["type"] == "pong"  # answered while test.gate waits
    await send(ws, {"type": "test.gate", "fail": "denied", "ref": "d"})
    assert await receive(ws) == {
        "type": "error",
        "code": "forbidden",
        "detail": "no",
        "ref": "d",
    }
    gate_action.set()
    assert await receive(ws) == {"type": "ack", "ref": "a", "for": "test.gate", "n": 1}


async def test_a_socket_stops_reading_past_max_pipelined_actions_in_flight(
    gate_action: asyncio.Event,
) -> None:
    pipelined = 5  # the MAX_PIPELINED setting
    limits = {
        **settings.TOWNSQUARE_REALTIME,
        "FRAME_BURST": 1000,
        "FRAMES_PER_SECOND": 1000,
        "MAX_PIPELINED": pipelined,
    }
    with override_settings(TOWNSQUARE_REALTIME=limits):
        ws = communicator()
        assert (await ws.connect())[0]
        for n in range(pipelined):
            await send(ws, {"type": "test.gate", "n": n, "ref": n})
        await send(ws, {"type": "ping", "ref": "p"})
        assert await ws.receive_nothing(timeout=0.3)  # the ping waits behind the pipeline
        gate_action.set()
        frames = [await receive(ws) for _ in range(pipelined + 1)]
        assert [f["ref"] for f in frames if f["type"] == "ack"] == list(range(pipelined))
        assert [f["ref"] for f in frames if f["type"] == "pong"] == ["p"]
        await ws.disconnect()


async def test_a_bug_in_a_pipelined_action_closes_the_socket_with_1011(
    ws: WebsocketCommunicator, gate_action: asyncio.Event
) -> None:
    await send(ws, {"type": "test.gate", "fail": "bug", "ref": 1})
    closed = await ws.receive_output(timeout=2)
    assert closed == {"type": "websocket.close", "code": 1011, "reason": "internal error"}
