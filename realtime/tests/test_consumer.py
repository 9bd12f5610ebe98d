"""The `/ws/` protocol consumer: frames, errors, streams, replay, limits, origin and auth."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.test import override_settings

from realtime import actions
from realtime.frames import Frame
from realtime.hub import get_hub
from realtime.protocol import encode_event
from realtime.publish import apublish
from realtime.registry import Event
from realtime.tokens import ALGORITHM, ISSUER

from .conftest import LOG, StalledServer, bearer, communicator, receive, send, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def alice(django_user_model: type[User]) -> User:
    return django_user_model.objects.create_user("alice", password="pw-alice-123")


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


async def test_replay_since_sends_exactly_the_missed_events_in_order_then_live(
    ws: WebsocketCommunicator,
) -> None:
    LOG.update({1: "one", 2: "two", 3: "three", 4: "four"})
    await send(ws, {"type": "subscribe", "stream": "test:log", "since": 2, "ref": "r"})
    ack = await receive(ws)
    assert (ack["durable"], ack["replayed"], ack["truncated"]) == (True, 2, False)
    replayed = [await receive(ws), await receive(ws)]
    assert [(f["offset"], f["data"]["text"]) for f in replayed] == [(3, "three"), (4, "four")]
    # A late publish of an offset already replayed is dropped; the next one passes.
    await apublish("test:log", "test.line", {"text": "four"}, offset=4)
    await apublish("test:log", "test.line", {"text": "five"}, offset=5)
    live = await receive(ws)
    assert (live["offset"], live["data"]["text"]) == (5, "five")
    assert await ws.receive_nothing(timeout=0.1)


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


async def test_frames_published_during_replay_are_delivered_once_after_it(
    ws: WebsocketCommunicator,
) -> None:
    LOG.update({1: "one", 2: "two"})
    hub = get_hub()
    await send(ws, {"type": "subscribe", "stream": "test:log", "since": 0})
    ack = await receive(ws)
    assert ack["replayed"] == 2
    # Offsets 2 (duplicate of the replay) and 3 arrive through the hub.
    hub.deliver(Frame("test:log", 2, encode_event("test:log", "test.line", {"text": "two"}, 2)))
    hub.deliver(Frame("test:log", 3, encode_event("test:log", "test.line", {"text": "3"}, 3)))
    offsets = [(await receive(ws))["offset"] for _ in range(3)]
    assert offsets == [1, 2, 3]
    assert await ws.receive_nothing(timeout=0.1)


async def test_resubscribing_replaces_the_subscription(ws: WebsocketCommunicator) -> None:
    for _ in range(2):
        await send(ws, {"type": "subscribe", "stream": "test:open:r"})
        assert (await receive(ws))["type"] == "ack"
        await receive(ws)
    assert get_hub().local_subscribers("test:open:r") == 1
    await apublish("test:open:r", "test.changed", {"once": True})
    assert (await receive(ws))["data"] == {"once": True}
    assert await ws.receive_nothing(timeout=0.1)


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


async def test_slow_reader_is_closed_with_4008_and_its_queue_dropped() -> None:
    limits = {**settings.TOWNSQUARE_REALTIME, "OUTBOX_MAX_BYTES": 5000}
    server = StalledServer()
    with override_settings(TOWNSQUARE_REALTIME=limits):
        comm = communicator(app=server)
        assert (await comm.connect())[0]
        await send(comm, {"type": "subscribe", "stream": "test:open:slow"})
        assert (await receive(comm))["type"] == "ack"
        assert (await receive(comm))["event"] == "test.snapshot"
        text = encode_event("test:open:slow", "test.big", {"pad": "x" * 1000})
        hub = get_hub()
        # The client stops reading: the server's send blocks. The first frame's send waits,
        # the next ones queue until the 5,000-byte bound is passed.
        server.flowing.clear()
        for _ in range(10):
            hub.deliver(Frame("test:open:slow", None, text))
        server.flowing.set()
        outputs = []
        while True:
            output = await comm.receive_output(timeout=2)
            outputs.append(output)
            if output["type"] == "websocket.close":
                break
        assert outputs[-1]["code"] == 4008
        assert outputs[-1]["reason"] == "slow reader: output buffer full"
        # Nothing queued after the overflow was sent: at most the frame already in send.
        assert len(outputs) <= 2
        await comm.disconnect()


async def test_a_reader_that_keeps_up_gets_every_frame_written_at_once() -> None:
    comm = communicator()
    assert (await comm.connect())[0]
    await send(comm, {"type": "subscribe", "stream": "test:open:fast"})
    assert (await receive(comm))["type"] == "ack"
    await receive(comm)
    hub = get_hub()
    for n in range(200):
        hub.deliver(Frame("test:open:fast", None, encode_event("test:open:fast", "e", {"n": n})))
    # Written inside deliver(), with no task in between: all 200 are already out.
    assert comm.output_queue.qsize() == 200
    received = [await receive(comm) for _ in range(200)]
    assert [f["data"]["n"] for f in received] == list(range(200))
    await comm.disconnect()


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


async def test_session_cookie_signs_the_socket_in(alice: User) -> None:
    comm = communicator(cookie=await database_sync_to_async(session_cookie)(alice))
    assert (await comm.connect())[0]
    await send(comm, {"type": "subscribe", "stream": "test:mine:alice"})
    assert (await receive(comm))["type"] == "ack"
    await send(comm, {"type": "subscribe", "stream": "test:mine:bob"})
    assert (await receive(comm))["code"] == "forbidden"
    await comm.disconnect()


async def test_jwt_in_subprotocol_signs_in_and_the_token_is_not_echoed(alice: User) -> None:
    comm = communicator(subprotocols=bearer(alice))
    connected, subprotocol = await comm.connect()
    assert connected
    assert subprotocol == "townsquare"
    await send(comm, {"type": "subscribe", "stream": "test:mine:alice"})
    assert (await receive(comm))["type"] == "ack"
    await comm.disconnect()


async def test_jwt_in_query_string_signs_in(alice: User) -> None:
    token = bearer(alice)[1].removeprefix("bearer.")
    comm = communicator(f"/ws/?token={token}")
    assert (await comm.connect())[0]
    await send(comm, {"type": "subscribe", "stream": "test:mine:alice"})
    assert (await receive(comm))["type"] == "ack"
    await comm.disconnect()


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


async def test_a_channel_layer_failure_on_subscribe_is_unavailable_and_leaves_nothing(
    ws: WebsocketCommunicator,
) -> None:
    hub = get_hub()

    async def broken_group_add(group: str, channel: str) -> None:
        raise ConnectionError("layer down")

    assert hub.layer is not None
    original = hub.layer.group_add
    hub.layer.group_add = broken_group_add
    try:
        await send(ws, {"type": "subscribe", "stream": "test:open:down", "ref": 1})
        error = await receive(ws)
        assert (error["code"], error["ref"]) == ("unavailable", 1)
        assert hub.local_subscribers("test:open:down") == 0
    finally:
        hub.layer.group_add = original
    await send(ws, {"type": "subscribe", "stream": "test:open:down"})
    assert (await receive(ws))["type"] == "ack"


async def test_the_hub_rejoins_groups_the_layer_forgot() -> None:
    from realtime.frames import group_name
    from realtime.hub import Hub, Listener

    hub = Hub(get_hub().layer)
    assert hub.layer is not None
    arrived = asyncio.Event()
    received: list[Frame] = []

    class Collector(Listener):
        def deliver(self, frame: Frame) -> None:
            received.append(frame)
            arrived.set()

    await hub.subscribe("test:open:forgotten", Collector())
    # What a Redis restart or group expiry does: membership gone behind the hub's back.
    await hub.layer.group_discard(group_name("test:open:forgotten"), hub.link.channel)
    await apublish("test:open:forgotten", "test.lost", {"n": 0})
    await hub.link.rejoin()
    await apublish("test:open:forgotten", "test.back", {"n": 1})
    await asyncio.wait_for(arrived.wait(), 2)
    assert [f.payload["event"] for f in received] == ["test.back"]
    await hub.close()


def _line(offset: int, text: str) -> Frame:
    return Frame("test:log", offset, encode_event("test:log", "test.line", {"text": text}, offset))


async def _subscribed_log(since: int) -> WebsocketCommunicator:
    comm = communicator()
    assert (await comm.connect())[0]
    await send(comm, {"type": "subscribe", "stream": "test:log", "since": since})
    ack = await receive(comm)
    for _ in range(ack["replayed"]):
        await receive(comm)
    return comm


async def test_overtaken_frames_are_put_back_in_order_without_a_query() -> None:
    LOG.update({1: "one"})
    comm = await _subscribed_log(0)
    hub = get_hub()
    hub.deliver(_line(3, "three"))  # overtook 2
    assert await comm.receive_nothing(timeout=0.05)
    hub.deliver(_line(2, "two"))
    assert [(await receive(comm))["offset"] for _ in range(2)] == [2, 3]
    hub.deliver(_line(2, "two"))  # a late duplicate
    assert await comm.receive_nothing(timeout=0.05)
    await comm.disconnect()


async def test_a_gap_is_filled_from_the_database_after_the_wait() -> None:
    limits = {**settings.TOWNSQUARE_REALTIME, "GAP_WAIT_SECONDS": 0.05}
    with override_settings(TOWNSQUARE_REALTIME=limits):
        LOG.update({1: "one"})
        comm = await _subscribed_log(0)
        LOG.update({2: "two", 3: "three"})  # committed; the publish of 2 was lost
        get_hub().deliver(_line(3, "three"))
        frames = [await receive(comm) for _ in range(2)]
        assert [(f["offset"], f["data"]["text"]) for f in frames] == [(2, "two"), (3, "three")]
        assert await comm.receive_nothing(timeout=0.1)
        await comm.disconnect()


async def test_a_gap_fetch_is_shared_by_every_local_subscriber() -> None:
    from realtime import registry

    calls: list[tuple[int, int]] = []
    rows = {1: "one", 2: "two"}

    def replay(key: str, since: int, limit: int) -> list[Event]:
        calls.append((since, limit))
        return [Event("test.line", {"text": rows[o]}, o) for o in sorted(rows) if o > since][:limit]

    registry.register_stream("test:counted", authorize=lambda user, key: None, replay=replay)
    limits = {**settings.TOWNSQUARE_REALTIME, "GAP_WAIT_SECONDS": 0.05}
    with override_settings(TOWNSQUARE_REALTIME=limits):
        sockets = []
        for _ in range(5):
            comm = communicator()
            assert (await comm.connect())[0]
            await send(comm, {"type": "subscribe", "stream": "test:counted", "since": 1})
            assert (await receive(comm))["replayed"] == 1
            assert (await receive(comm))["offset"] == 2
            sockets.append(comm)
        calls.clear()
        rows[3] = "three"
        rows[4] = "four"
        text = encode_event("test:counted", "test.line", {"text": "four"}, 4)
        get_hub().deliver(Frame("test:counted", 4, text))
        for comm in sockets:
            assert [(await receive(comm))["offset"] for _ in range(2)] == [3, 4]
            await comm.disconnect()
        assert calls == [(2, 1)]


async def test_a_gap_the_database_cannot_fill_is_skipped() -> None:
    limits = {**settings.TOWNSQUARE_REALTIME, "GAP_WAIT_SECONDS": 0.05}
    with override_settings(TOWNSQUARE_REALTIME=limits):
        LOG.update({1: "one"})
        comm = await _subscribed_log(0)
        get_hub().deliver(_line(3, "three"))
        assert (await receive(comm))["offset"] == 3
        await comm.disconnect()


async def test_without_since_live_frames_are_ordered_from_the_head(
    ws: WebsocketCommunicator,
) -> None:
    LOG.update({1: "one"})
    await send(ws, {"type": "subscribe", "stream": "test:log"})
    assert (await receive(ws))["replayed"] == 0
    hub = get_hub()
    hub.deliver(_line(3, "three"))  # overtook 2: held, not taken as the start
    hub.deliver(_line(2, "two"))
    assert [(await receive(ws))["offset"] for _ in range(2)] == [2, 3]
    assert await ws.receive_nothing(timeout=0.05)


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
