"""Operator metrics of the real-time core, in Prometheus' model (``prometheus-client``).

Every metric object lives here, next to the few helpers the core calls; ``GET /metrics/``
(``realtime.health.metrics``) exposes them in Prometheus' text format.

| metric | type | labels | unit / meaning |
|---|---|---|---|
| ``townsquare_sockets_open`` | gauge (``livesum``) | | sockets accepted and not yet closed |
| ``townsquare_frames_in_total`` | counter | ``type`` | client frames received |
| ``townsquare_frames_out_total`` | counter | ``type`` | frames queued to clients |
| ``townsquare_publish_to_send_seconds`` | histogram | | seconds from ``apublish`` to the hub |
|  |  |  | handing the frame to local outboxes |
| ``townsquare_errors_total`` | counter | ``code`` | ``error`` frames sent, by ``ErrorCode`` |
| ``townsquare_closes_total`` | counter | ``code`` | sockets the server closed, by close code |
| ``townsquare_channel_layer_failures_total`` | counter | ``op`` | failed channel-layer calls |

Label values are bounded: frame types are the protocol's own (``subscribe``, ``unsubscribe``,
``ping``, registered actions such as ``chat.send``) plus ``unknown`` (a string type nobody
registered), ``invalid`` (not JSON, not an object, no string ``type``), ``binary``,
``dropped`` (over the rate or size limit, not read) and ``seed`` (frames of the
seed-compatible endpoints, which have no ``type``). Outbound types are ``event``, ``ack``,
``error``, ``pong`` and ``seed`` (seed renderings and greetings). Close codes outside the
known set count as ``other``.

Several worker processes (``manage.py serve --workers N``) use prometheus-client's
multiprocess mode: ``serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before
the workers start, each worker writes its values to memory-mapped files there, and
``exposition()`` merges them. Without the variable (one process: the embedded server,
in-process tests) the default registry is exposed as it is.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from .protocol import CloseCode, ErrorCode

#: The environment variable that switches prometheus-client to multiprocess mode. It must be
#: set before ``prometheus_client`` is first imported in a process (it picks its value class
#: at import), which is why ``manage.py serve`` sets it before uvicorn spawns the workers.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Upper bounds of the publish-to-send histogram, in seconds: 0.1 ms (in process) to 5 s (a
#: backed-up layer); anything slower lands in ``+Inf``.
# fmt: off
PUBLISH_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)
# fmt: on

SOCKETS_OPEN = Gauge(
    "townsquare_sockets_open",
    "WebSocket connections accepted and not yet closed.",
    # Summed over live processes only: a dead worker's sockets are gone with it.
    multiprocess_mode="livesum",
)
FRAMES_IN = Counter(
    "townsquare_frames_in_total", "Client frames received, by frame type.", ["type"]
)
FRAMES_OUT = Counter(
    "townsquare_frames_out_total", "Frames queued to clients, by server frame type.", ["type"]
)
PUBLISH_TO_SEND = Histogram(
    "townsquare_publish_to_send_seconds",
    "Seconds from apublish() to the hub handing the frame to its local outboxes, "
    "once per frame per process (clocks of different hosts add their skew).",
    buckets=PUBLISH_BUCKETS,
)
ERRORS = Counter("townsquare_errors_total", "Error frames sent, by error code.", ["code"])
CLOSES = Counter(
    "townsquare_closes_total", "Sockets closed by the server, by close code.", ["code"]
)
LAYER_FAILURES = Counter(
    "townsquare_channel_layer_failures_total",
    "Channel-layer calls that raised, by operation.",
    ["op"],
)

#: Close codes counted under their own label; any other counts as ``other``.
KNOWN_CLOSE_CODES = frozenset({1000, 1001, 1011, *CloseCode})


class _ByLabel:
    """A one-label metric whose children are cached.

    ``Counter.labels()`` takes a lock and builds a key on every call; a dict lookup is what
    a per-frame path can afford. Callers pass only bounded label values.
    """

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: Counter, values: Iterable[str] = ()) -> None:
        self._metric = metric
        self._children: dict[str, Counter] = {}
        # Children created up front export 0 instead of nothing, so rate() and absent()
        # alerts work before the first event.
        for value in values:
            self.child(value)

    def child(self, value: str) -> Counter:
        child = self._children.get(value)
        if child is None:
            child = self._children[value] = self._metric.labels(value)
        return child


_in = _ByLabel(
    FRAMES_IN,
    ("subscribe", "unsubscribe", "ping", "unknown", "invalid", "binary", "dropped", "seed"),
)
_out = _ByLabel(FRAMES_OUT, ("event", "ack", "error", "pong", "seed"))
_errors = _ByLabel(ERRORS, tuple(str(code) for code in ErrorCode))
_closes = _ByLabel(CLOSES, (*(str(code) for code in sorted(KNOWN_CLOSE_CODES)), "other"))
_layer = _ByLabel(LAYER_FAILURES, ("publish", "receive", "group_add", "group_discard"))


def frame_in(type_: str) -> None:
    """Count one client frame of ``type_`` (a bounded label, see the module docstring)."""
    _in.child(type_).inc()


def frames_out(type_: str, count: int = 1) -> None:
    """Count ``count`` frames of ``type_`` queued to clients (fan-out passes its total once)."""
    _out.child(type_).inc(count)


def error_sent(code: ErrorCode) -> None:
    """Count one ``error`` frame with ``code``."""
    _errors.child(str(code)).inc()


def closed(code: int) -> None:
    """Count one close started by the server with WebSocket close ``code``."""
    _closes.child(str(code) if code in KNOWN_CLOSE_CODES else "other").inc()


def socket_opened() -> None:
    """A socket was accepted."""
    SOCKETS_OPEN.inc()


def socket_closed() -> None:
    """An accepted socket closed."""
    SOCKETS_OPEN.dec()


def layer_failure(op: str) -> None:
    """Count one failed channel-layer call: ``publish``, ``receive``, ``group_add`` or
    ``group_discard``."""
    _layer.child(op).inc()


@contextmanager
def counting_failures(op: str) -> Iterator[None]:
    """Count a channel-layer call that raises as a failure of ``op``; the error propagates.

    ``asyncio.CancelledError`` is not a failure (it is not an ``Exception``).
    """
    try:
        yield
    except Exception:
        layer_failure(op)
        raise


def publish_delivered(published_at: Any) -> None:
    """Observe the publish-to-send latency of a frame published at ``published_at``.

    Args:
        published_at: the ``ts`` of the channel-layer message, ``time.time()`` seconds at
            ``apublish``; frames from publishers that set none (older code) are skipped.
    """
    if isinstance(published_at, (int, float)):
        # Across hosts the clocks may disagree; a negative latency is skew, not speed.
        PUBLISH_TO_SEND.observe(max(0.0, time.time() - published_at))


def exposition() -> tuple[bytes, str]:
    """Return the current metrics as ``(body, content type)`` in Prometheus' text format.

    In multiprocess mode the values of every worker that wrote to the directory are merged
    (counters and histograms summed; the open-sockets gauge over live workers only).
    """
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    _forget_dead_workers(path)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _forget_dead_workers(path: str) -> None:
    # uvicorn restarts a worker that died, under a new pid; the dead one's live gauge file
    # would keep its last socket count forever. prometheus-client leaves the cleanup to the
    # caller (mark_process_dead), and no hook runs when uvicorn reaps a worker, so check here.
    if os.name != "posix":  # os.kill(pid, 0) is a liveness probe on POSIX only
        return
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        pid_text = os.path.basename(name).rsplit("_", 1)[-1].removesuffix(".db")
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, path)
        except PermissionError:
            pass  # alive, under another user


def reset_directory(path: str) -> None:
    """Prepare ``path`` as a multiprocess directory: create it, delete stale ``*.db`` files.

    Files of the calling process are kept: a process that already imported
    ``prometheus_client`` in multiprocess mode holds them open (memory-mapped).
    """
    os.makedirs(path, exist_ok=True)
    own = f"_{os.getpid()}.db"
    for name in glob.glob(os.path.join(path, "*.db")):
        if not name.endswith(own):
            os.remove(name)
