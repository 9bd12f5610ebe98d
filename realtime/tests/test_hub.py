"""The process-local hub (realtime/hub.py): fan-out to the local subscribers of a stream,
membership, the ``Subscriber`` protocol, revocation, failures that leave nothing behind."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator

from realtime.frames import Frame
from realtime.hub import Hub, Listener, Subscriber, get_hub
from realtime.protocol import encode_event

from .conftest import LOG, receive, send

pytestmark = pytest.mark.django_db(transaction=True)


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


class Recorder(Listener):
    """A ``Subscriber`` that records what the hub hands it; ``user_id`` and ``last_offset``
    as a signed-in socket's."""

    def __init__(self, user_id: int | None = None, last_offset: int = -1) -> None:
        self.user_id = user_id
        self.last_offset = last_offset
        self.frames: list[Frame] = []
        self.revoked: list[str] = []

    def deliver(self, frame: Frame) -> None:
        self.frames.append(frame)

    def revoke(self, detail: str) -> None:
        self.revoked.append(detail)


def event(stream: str, n: int, offset: int | None = None) -> Frame:
    return Frame(stream, offset, encode_event(stream, "n", {"n": n}, offset))


async def test_deliver_hands_the_same_frame_to_the_streams_subscribers_only() -> None:
    hub = Hub(None)
    a, b, other = Recorder(), Recorder(), Recorder()
    await hub.subscribe("test:open:a", a)
    await hub.subscribe("test:open:a", b)
    await hub.subscribe("test:open:b", other)
    frame = event("test:open:a", 1)
    hub.deliver(frame)
    hub.deliver(event("test:open:nobody", 2))  # no local subscriber: nothing happens
    assert a.frames == [frame] and b.frames == [frame]
    assert a.frames[0] is b.frames[0]  # encoded once, shared
    assert other.frames == []
    await hub.close()


async def test_membership_counts_each_subscriber_once_and_forgets_empty_streams() -> None:
    hub = Hub(None)
    a, b = Recorder(), Recorder()
    await hub.subscribe("test:open:m", a)
    await hub.subscribe("test:open:m", a)  # again: still one
    await hub.subscribe("test:open:m", b)
    assert (hub.local_subscribers("test:open:m"), hub.stream_count) == (2, 1)
    await hub.unsubscribe("test:open:m", a)
    await hub.unsubscribe("test:open:m", a)  # twice: a no-op
    await hub.unsubscribe("test:open:never", a)  # never subscribed: a no-op
    assert (hub.local_subscribers("test:open:m"), hub.stream_count) == (1, 1)
    hub.deliver(event("test:open:m", 1))
    assert (len(a.frames), len(b.frames)) == (0, 1)
    await hub.unsubscribe("test:open:m", b)
    assert (hub.local_subscribers("test:open:m"), hub.stream_count) == (0, 0)
    await hub.close()


async def test_revoke_local_ends_only_that_users_subscriptions_to_that_stream() -> None:
    hub = Hub(None)
    alice_here, alice_there, bob, anonymous = Recorder(1), Recorder(1), Recorder(2), Recorder()
    await hub.subscribe("test:mine:x", alice_here)
    await hub.subscribe("test:mine:x", bob)
    await hub.subscribe("test:mine:x", anonymous)
    await hub.subscribe("test:mine:y", alice_there)
    hub.revoke_local("test:mine:x", 1, "removed from the room")
    assert alice_here.revoked == ["removed from the room"]
    assert bob.revoked == anonymous.revoked == alice_there.revoked == []
    await hub.close()


async def test_catch_up_reads_from_the_lowest_offset_a_subscriber_passed_on() -> None:
    LOG.update({o: f"line {o}" for o in range(1, 6)})
    hub = Hub(None)
    behind, ahead, listener = Recorder(last_offset=2), Recorder(last_offset=4), Recorder()
    for subscriber in (behind, ahead, listener):
        await hub.subscribe("test:log", subscriber)
    await hub.subscribe("test:open:x", Recorder(last_offset=1))  # not durable: skipped
    await hub.catch_up()
    # Everyone gets what the stream stored after 2; each subscriber drops what it sent.
    for subscriber in (behind, ahead, listener):
        assert [(f.offset, f.payload["data"]["text"]) for f in subscriber.frames] == [
            (3, "line 3"),
            (4, "line 4"),
            (5, "line 5"),
        ]
    await hub.close()


def test_a_listener_is_a_subscriber_with_no_renderer_offset_or_user() -> None:
    listener: Subscriber = Listener()
    assert (listener.renderer, listener.last_offset, listener.user_id) == (None, -1, None)
    listener.revoke("nothing to revoke")  # no user: accepted and ignored
    with pytest.raises(NotImplementedError):
        listener.deliver(event("test:open:x", 1))
