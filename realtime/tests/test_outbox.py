"""The socket outbox: written at once while the client keeps up, queued in order behind a
blocked send, bounded, and closed after what was queued."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from realtime.frames import Frame
from realtime.hub import get_hub
from realtime.outbox import Outbox
from realtime.protocol import encode_event

from .conftest import StalledServer, communicator, receive, send


class FakeServer:
    """An ASGI ``send`` that records what it was given; while ``flowing`` is clear it blocks,
    as uvicorn's does under TCP backpressure."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.interrupted = 0
        self.gone = False

    async def send(self, message: dict[str, Any]) -> None:
        if self.gone:
            raise ConnectionResetError("client went away")
        try:
            await self.flowing.wait()
        except BaseException:  # cancelled, or closed unfinished
            self.interrupted += 1
            raise
        self.sent.append(message.get("text", message))


def outbox(server: FakeServer, max_bytes: int = 100) -> tuple[Outbox, list[int]]:
    overflows: list[int] = []
    box = Outbox(server.send, max_bytes=max_bytes, on_overflow=lambda: overflows.append(1))
    return box, overflows


async def test_frames_are_written_inside_put_with_no_task() -> None:
    server = FakeServer()
    box, _ = outbox(server)
    for n in range(5):
        assert box.put(f"f{n}") is True
        assert server.sent[-1] == f"f{n}"  # already handed to the server
    assert not box.writing
    assert box.pending_bytes == 0


async def test_a_blocked_send_queues_later_frames_in_order_then_the_writer_ends() -> None:
    server = FakeServer()
    box, _ = outbox(server, max_bytes=1000)
    assert box.put("a")
    server.flowing.clear()
    for text in ("b", "c", "d"):
        assert box.put(text)
    assert server.sent == ["a"]
    assert box.writing
    assert box.pending_bytes == 2  # "b" is inside the blocked send; "c" and "d" wait
    server.flowing.set()
    await asyncio.wait_for(box.flush(), 1)
    assert server.sent == ["a", "b", "c", "d"]
    assert box.put("e")  # written at once again
    assert server.sent[-1] == "e"
    assert not box.writing


async def test_overflow_calls_back_once_and_refuses_further_frames() -> None:
    server = FakeServer()
    box, overflows = outbox(server, max_bytes=10)
    server.flowing.clear()
    assert box.put("x" * 8)  # in the blocked send
    assert box.put("y" * 8)  # queued: 8 of 10
    assert box.put("z" * 8) is False  # 16 > 10: a slow reader
    assert box.overflowed
    assert overflows == [1]
    assert box.pending_bytes == 0
    assert box.put("more") is False
    assert overflows == [1]
    await box.stop()
    assert server.interrupted == 1


async def test_close_follows_every_queued_frame() -> None:
    server = FakeServer()
    box, _ = outbox(server, max_bytes=1000)
    server.flowing.clear()
    box.put("one")
    box.put("two")
    box.close(4000, "bye")
    assert box.put("late") is False
    server.flowing.set()
    await asyncio.wait_for(box.flush(), 1)
    assert server.sent == ["one", "two", {"type": "websocket.close", "code": 4000, "reason": "bye"}]


async def test_close_with_nothing_queued_is_written_at_once() -> None:
    server = FakeServer()
    box, _ = outbox(server)
    box.close(1000)
    assert server.sent == [{"type": "websocket.close", "code": 1000, "reason": ""}]


async def test_abort_drops_the_queue_and_cancels_the_blocked_send() -> None:
    server = FakeServer()
    box, _ = outbox(server, max_bytes=1000)
    server.flowing.clear()
    box.put("stuck")
    box.put("queued")
    aborting = asyncio.ensure_future(box.abort(4008, "slow"))
    try:
        for _ in range(10):  # a few loop turns: the writer is cancelled, then abort sends
            await asyncio.sleep(0)
        assert server.interrupted == 1
        assert not aborting.done()  # its close frame waits for the socket like any send
    finally:
        server.flowing.set()
    await asyncio.wait_for(aborting, 1)
    assert server.sent == [{"type": "websocket.close", "code": 4008, "reason": "slow"}]


async def test_put_wait_waits_for_the_queue_to_drain_below_half() -> None:
    server = FakeServer()
    box, _ = outbox(server, max_bytes=20)
    server.flowing.clear()
    box.put("a" * 6)  # in send
    box.put("b" * 6)
    box.put("c" * 6)  # 12 queued: over half of 20
    waiter = asyncio.ensure_future(box.put_wait("d" * 6))
    await asyncio.sleep(0)
    assert not waiter.done()
    server.flowing.set()
    assert await asyncio.wait_for(waiter, 1) is True
    await asyncio.wait_for(box.flush(), 1)
    assert server.sent == ["a" * 6, "b" * 6, "c" * 6, "d" * 6]


@pytest.mark.parametrize("blocked_first", [False, True])
async def test_a_failed_send_drops_output_and_put_says_so(blocked_first: bool) -> None:
    server = FakeServer()
    box, overflows = outbox(server, max_bytes=1000)
    if blocked_first:
        server.flowing.clear()
        box.put("waiting")
        box.put("queued")
        server.gone = True  # the next send raises
        server.flowing.set()
        await asyncio.wait_for(box.flush(), 1)
    else:
        server.gone = True
        assert box.put("first") is False
    assert box.put("after") is False
    assert box.pending_bytes == 0
    assert overflows == []


async def test_a_send_that_returns_another_kind_of_awaitable_still_delivers_in_order() -> None:
    # ASGI only promises an awaitable (granian's send returns a future of its own).
    sent: list[Any] = []

    def send(message: dict[str, Any]) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()

        def written() -> None:
            sent.append(message.get("text", message))
            future.set_result(None)

        asyncio.get_running_loop().call_soon(written)
        return future

    box = Outbox(send, max_bytes=1000, on_overflow=lambda: None)
    for n in range(5):
        assert box.put(f"f{n}")
    box.close(1000)
    await asyncio.wait_for(box.flush(), 1)
    assert sent == [
        "f0",
        "f1",
        "f2",
        "f3",
        "f4",
        {"type": "websocket.close", "code": 1000, "reason": ""},
    ]


# --- through a socket -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
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


@pytest.mark.django_db(transaction=True)
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
