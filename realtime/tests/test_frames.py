"""The layer's wire format (realtime/frames.py): group names, and a ``Frame`` decoded and
rendered at most once per process however many sockets take it."""

from __future__ import annotations

import pytest

from realtime.frames import Frame, group_name
from realtime.protocol import encode_event


@pytest.mark.parametrize(
    ("stream", "group"),
    [
        ("chat:room:42", "rt.chat.room.42"),
        ("user:7", "rt.user.7"),
        ("sys:workers", "rt.sys.workers"),
        ("shop:item:a-b_c", "rt.shop.item.a-b_c"),
    ],
)
def test_a_streams_group_is_rt_dot_its_name_with_dots(stream: str, group: str) -> None:
    assert group_name(stream) == group


def test_the_payload_is_the_native_frame_decoded_once() -> None:
    text = encode_event("test:log", "test.line", {"text": "hi"}, 3)
    frame = Frame("test:log", 3, text)
    assert (frame.stream, frame.offset, frame.text) == ("test:log", 3, text)
    payload = frame.payload
    assert payload == {
        "type": "event",
        "stream": "test:log",
        "event": "test.line",
        "data": {"text": "hi"},
        "offset": 3,
    }
    assert frame.payload is payload  # not decoded again


def test_each_renderer_runs_once_per_frame_and_a_skip_is_remembered() -> None:
    calls: list[str] = []

    def seed(frame: Frame) -> str | None:
        calls.append("seed")
        return '{"seed": ' + str(frame.payload["data"]["n"]) + "}"

    def skip(frame: Frame) -> str | None:
        calls.append("skip")
        return None

    frame = Frame("test:open:x", None, encode_event("test:open:x", "n", {"n": 5}))
    assert [frame.render(seed) for _ in range(3)] == ['{"seed": 5}'] * 3
    assert [frame.render(skip) for _ in range(3)] == [None] * 3
    assert calls == ["seed", "skip"]
    other = Frame("test:open:x", None, encode_event("test:open:x", "n", {"n": 6}))
    assert other.render(seed) == '{"seed": 6}'  # the cache is per frame
    assert calls == ["seed", "skip", "seed"]
