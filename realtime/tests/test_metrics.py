"""Metrics (realtime/metrics.py) and what the socket logs, in process; the endpoints that
serve them are tested in test_health.py.

Counters are process-wide and other tests move them too, so each test reads a value before
and after what it does and asserts the difference.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import override_settings
from prometheus_client import REGISTRY

from realtime import metrics
from realtime.frames import Frame
from realtime.hub import Hub, Listener
from realtime.protocol import encode_event
from realtime.publish import apublish

from .conftest import communicator, receive, send

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


def value(name: str, labels: dict[str, str] | None = None) -> float:
    """The current value of one sample of the default registry (0 when it has none yet)."""
    found = REGISTRY.get_sample_value(name, labels or {})
    return 0.0 if found is None else found


class Deltas:
    """Values of several samples before an action, to assert by how much each moved."""

    def __init__(self, *samples: tuple[str, dict[str, str]]) -> None:
        self.samples = samples
        self.before = [value(name, labels) for name, labels in samples]

    def moved(self) -> list[float]:
        return [value(n, lb) - b for (n, lb), b in zip(self.samples, self.before, strict=True)]


def frames_in(type_: str) -> tuple[str, dict[str, str]]:
    return "townsquare_frames_in_total", {"type": type_}


def frames_out(type_: str) -> tuple[str, dict[str, str]]:
    return "townsquare_frames_out_total", {"type": type_}


def errors(code: str) -> tuple[str, dict[str, str]]:
    return "townsquare_errors_total", {"code": code}


def closes(code: str) -> tuple[str, dict[str, str]]:
    return "townsquare_closes_total", {"code": code}


def layer_failures(op: str) -> tuple[str, dict[str, str]]:
    return "townsquare_channel_layer_failures_total", {"op": op}


SOCKETS_OPEN: tuple[str, dict[str, str]] = ("townsquare_sockets_open", {})
LATENCY_COUNT: tuple[str, dict[str, str]] = ("townsquare_publish_to_send_seconds_count", {})


# --- frames ------------------------------------------------------------------------------


async def test_pings_count_as_frames_in_and_pongs_as_frames_out(
    ws: WebsocketCommunicator,
) -> None:
    deltas = Deltas(frames_in("ping"), frames_out("pong"))
    for i in range(5):
        await send(ws, {"type": "ping", "ref": i})
        assert (await receive(ws))["type"] == "pong"
    assert deltas.moved() == [5, 5]


@pytest.mark.parametrize(
    ("text", "label", "code"),
    [
        ("{not json", "invalid", "bad_json"),
        ("[1, 2]", "invalid", "bad_frame"),
        ('{"type": 5}', "invalid", "bad_frame"),
        ('{"type": "launch.missiles"}', "unknown", "unknown_type"),
        ('{"type": "subscribe", "stream": "nosuchkind:1"}', "subscribe", "unknown_stream"),
    ],
)
async def test_error_frames_count_by_code_and_the_frame_by_its_type(
    ws: WebsocketCommunicator, text: str, label: str, code: str
) -> None:
    deltas = Deltas(frames_in(label), errors(code), frames_out("error"))
    await ws.send_to(text_data=text)
    assert (await receive(ws))["code"] == code
    assert deltas.moved() == [1, 1, 1]


async def test_binary_frames_count_as_binary(ws: WebsocketCommunicator) -> None:
    deltas = Deltas(frames_in("binary"), errors("bad_frame"), closes("1003"))
    await ws.send_to(bytes_data=b"\x00")
    assert (await ws.receive_output(timeout=2))["code"] == 1003
    assert deltas.moved() == [1, 0, 1]


async def test_subscribe_counts_the_ack_and_the_snapshot(ws: WebsocketCommunicator) -> None:
    deltas = Deltas(frames_in("subscribe"), frames_out("ack"), frames_out("event"))
    await send(ws, {"type": "subscribe", "stream": "test:open:m"})
    assert (await receive(ws))["type"] == "ack"
    assert (await receive(ws))["event"] == "test.snapshot"
    assert deltas.moved() == [1, 1, 1]


# --- sockets and closes ------------------------------------------------------------------


async def test_sockets_open_goes_up_on_accept_and_down_on_close() -> None:
    before = value(*SOCKETS_OPEN)
    comms = [communicator() for _ in range(3)]
    for comm in comms:
        assert (await comm.connect())[0]
    assert value(*SOCKETS_OPEN) == before + 3
    for comm in comms:
        await comm.disconnect()
    assert value(*SOCKETS_OPEN) == before


async def test_a_close_for_a_limit_counts_under_its_code() -> None:
    limits = {**settings.TOWNSQUARE_REALTIME, "MAX_FRAME_BYTES": 100}
    with override_settings(TOWNSQUARE_REALTIME=limits):
        deltas = Deltas(closes("1009"), frames_in("dropped"))
        comm = communicator()
        assert (await comm.connect())[0]
        await comm.send_to(text_data='{"type": "ping", "pad": "' + "x" * 200 + '"}')
        assert (await comm.receive_output(timeout=2))["code"] == 1009
        await comm.disconnect()
    assert deltas.moved() == [1, 1]


def test_unknown_close_codes_share_one_label() -> None:
    deltas = Deltas(closes("other"), closes("4029"))
    metrics.closed(4999)
    metrics.closed(4029)
    assert deltas.moved() == [1, 1]


# --- fan-out -----------------------------------------------------------------------------


async def test_publish_counts_one_event_per_local_subscriber_and_one_latency() -> None:
    subscribers = [communicator() for _ in range(3)]
    bystander = communicator()
    for comm in [*subscribers, bystander]:
        assert (await comm.connect())[0]
    for comm in subscribers:
        await send(comm, {"type": "subscribe", "stream": "test:open:fan"})
        await receive(comm)  # ack
        await receive(comm)  # snapshot
    deltas = Deltas(frames_out("event"), LATENCY_COUNT)
    assert await apublish("test:open:fan", "test.changed", {"n": 1}) is True
    for comm in subscribers:
        assert (await receive(comm))["data"] == {"n": 1}
    assert await bystander.receive_nothing(timeout=0.05)
    assert deltas.moved() == [3, 1]
    for comm in [*subscribers, bystander]:
        await comm.disconnect()


class FakeSubscriber(Listener):
    """A hub subscriber that records frames; ``renderer`` as a seed endpoint's."""

    def __init__(self, renderer: Any = None) -> None:
        self.renderer = renderer
        self.frames: list[Frame] = []

    def deliver(self, frame: Frame) -> None:
        self.frames.append(frame)


def _seed(frame: Frame) -> str | None:
    return '{"seed": true}'


def _skips_everything(frame: Frame) -> str | None:
    return None


async def test_seed_renderings_count_as_seed_and_skipped_ones_not_at_all() -> None:
    hub = Hub(None)
    native = [FakeSubscriber() for _ in range(2)]
    seeds = [FakeSubscriber(_seed) for _ in range(3)]
    skipping = FakeSubscriber(_skips_everything)
    for subscriber in [*native, *seeds, skipping]:
        await hub.subscribe("test:open:seed", subscriber)
    frame = Frame("test:open:seed", None, encode_event("test:open:seed", "x", {}))

    deltas = Deltas(frames_out("event"), frames_out("seed"))
    hub.deliver(frame)
    assert deltas.moved() == [2, 3]

    for subscriber in seeds[:2]:
        await hub.unsubscribe("test:open:seed", subscriber)
    await hub.unsubscribe("test:open:seed", seeds[0])  # twice: no double count
    deltas = Deltas(frames_out("event"), frames_out("seed"))
    hub.deliver(Frame("test:open:seed", None, frame.text))
    assert deltas.moved() == [2, 1]


# --- channel-layer failures --------------------------------------------------------------


class BrokenLayer:
    """A channel layer whose every call fails, as Redis does when it is down."""

    async def new_channel(self, prefix: str = "") -> str:
        return f"{prefix}.broken"

    async def group_add(self, group: str, channel: str) -> None:
        raise ConnectionError("down")

    async def group_discard(self, group: str, channel: str) -> None:
        raise ConnectionError("down")

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        raise ConnectionError("down")

    async def receive(self, channel: str) -> dict[str, Any]:
        raise ConnectionError("down")


async def test_channel_layer_failures_count_by_operation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("realtime.publish.get_channel_layer", BrokenLayer)
    deltas = Deltas(layer_failures("publish"), layer_failures("group_add"))
    assert await apublish("test:open:x", "test.changed", {}) is False
    hub = Hub(BrokenLayer())
    with pytest.raises(ConnectionError):
        await hub.subscribe("test:open:x", FakeSubscriber())
    assert deltas.moved() == [1, 1]
    await hub.close()


# --- logs --------------------------------------------------------------------------------


async def test_socket_lines_are_logfmt_with_worker_and_close_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="realtime.consumers")
    comm = communicator()
    assert (await comm.connect())[0]
    await comm.send_to(text_data="{not json")
    await receive(comm)
    await comm.disconnect(code=1001)
    lines = {r.getMessage().split(" ", 1)[0]: r for r in caplog.records}
    opened = lines["event=socket.open"]
    assert opened.getMessage() == f"event=socket.open path=/ws/ user=anonymous worker={os.getpid()}"
    error = lines["event=socket.error"]
    assert error.levelno == logging.INFO
    assert error.getMessage() == "event=socket.error code=bad_json path=/ws/ user=anonymous"
    closed = lines["event=socket.close"].getMessage()
    assert "path=/ws/ user=anonymous code=1001 seconds=" in closed
    assert closed.endswith(f" worker={os.getpid()}")


async def test_rate_limited_errors_log_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="realtime.consumers")
    limits = {**settings.TOWNSQUARE_REALTIME, "FRAMES_PER_SECOND": 0.001, "FRAME_BURST": 1}
    with override_settings(TOWNSQUARE_REALTIME=limits):
        deltas = Deltas(errors("rate_limited"), frames_in("dropped"))
        comm = communicator()
        assert (await comm.connect())[0]
        await send(comm, {"type": "ping"})
        await send(comm, {"type": "ping"})
        assert (await receive(comm))["type"] == "pong"
        assert (await receive(comm))["code"] == "rate_limited"
        await comm.disconnect()
    assert deltas.moved() == [1, 1]
    [record] = [r for r in caplog.records if "code=rate_limited" in r.getMessage()]
    assert record.levelno == logging.DEBUG


# --- multiprocess mode -------------------------------------------------------------------

# A worker stand-in: counts like a worker process, reports, and stays alive until told.
WORKER = textwrap.dedent(
    """
    import sys
    from realtime import metrics

    metrics.socket_opened()
    metrics.socket_opened()
    metrics.frame_in("ping")
    print("counted", flush=True)
    sys.stdin.readline()
    """
)


def test_multiprocess_exposition_sums_workers_and_forgets_dead_ones_sockets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, metrics.MULTIPROC_ENV: str(tmp_path)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "counted"
        body = metrics.exposition()[0].decode()
        assert "townsquare_sockets_open 4.0" in body
        assert 'townsquare_frames_in_total{type="ping"} 2.0' in body
        first = workers[0]
        first.communicate("\n", timeout=30)
        body = metrics.exposition()[0].decode()
        # The dead worker's sockets are gone; what it counted stays counted.
        assert "townsquare_sockets_open 2.0" in body
        assert 'townsquare_frames_in_total{type="ping"} 2.0' in body
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.communicate("\n", timeout=30)


def test_reset_directory_removes_stale_files_but_not_this_process(tmp_path: Path) -> None:
    stale = tmp_path / "counter_1.db"
    own = tmp_path / f"counter_{os.getpid()}.db"
    other = tmp_path / "notes.txt"
    for path in (stale, own, other):
        path.write_bytes(b"")
    metrics.reset_directory(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([own.name, other.name])
