"""The log filters: repeated lines folded with a count; installed on the project's handler."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import pytest

from realtime.logging import ClientFaultsFilter, RedactTokensFilter, RepeatedLinesFilter


class Clock:
    """A monotonic clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Capture(logging.Handler):
    """Keeps every record that got past its filters, formatted."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def capture(clock: Clock) -> Iterator[tuple[logging.Logger, Capture, RepeatedLinesFilter]]:
    logger = logging.getLogger("townsquare.test.repeats")
    handler = Capture()
    repeats = RepeatedLinesFilter(interval=10.0, clock=clock)
    handler.addFilter(repeats)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        yield logger, handler, repeats
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def test_ten_thousand_identical_warnings_pass_once_per_interval_with_a_count(
    capture: tuple[logging.Logger, Capture, RepeatedLinesFilter], clock: Clock
) -> None:
    logger, handler, _ = capture
    step = 2**-7  # exact in binary: 128 lines a second, 1,280 per 10 s interval
    for _ in range(10_000):
        logger.warning("publish to %s failed", "chat:room:1")
        clock.now += step  # 10,000 lines over 78 s
    # The first, then one per 10 s: at 0 s, 10 s, ..., 70 s.
    assert len(handler.lines) == 8
    assert handler.lines[0] == "publish to chat:room:1 failed"
    # Each later one counts the lines dropped since the previous one.
    assert handler.lines[1:] == ["publish to chat:room:1 failed (repeated 1279 times)"] * 7
    assert [r.repeated for r in handler.records] == [0] + [1279] * 7  # type: ignore[attr-defined]
    # The drops after the last line that passed wait for the next one: none is lost.
    clock.now += 10
    logger.warning("publish to %s failed", "chat:room:1")
    assert handler.lines[-1] == "publish to chat:room:1 failed (repeated 1039 times)"
    assert 8 + 7 * 1279 + 1039 == 10_000


def test_a_burst_within_the_interval_is_one_line(
    capture: tuple[logging.Logger, Capture, RepeatedLinesFilter], clock: Clock
) -> None:
    logger, handler, _ = capture
    for _ in range(10_000):
        logger.error("hub: channel layer receive failed")
    assert handler.lines == ["hub: channel layer receive failed"]
    clock.now += 10
    logger.error("hub: channel layer receive failed")
    assert handler.lines[-1] == "hub: channel layer receive failed (repeated 9999 times)"


def test_distinct_messages_pass(
    capture: tuple[logging.Logger, Capture, RepeatedLinesFilter],
) -> None:
    logger, handler, _ = capture
    for i in range(50):
        logger.warning(f"warning number {i}")
    logger.warning("%s failed", "publish")
    logger.error("%s failed", "publish")  # another level: another key
    logging.getLogger("townsquare.test.other").addHandler(handler)
    try:
        other = logging.getLogger("townsquare.test.other")
        other.propagate = False
        other.warning("%s failed", "publish")  # another logger: another key
    finally:
        logging.getLogger("townsquare.test.other").removeHandler(handler)
    assert handler.lines == [f"warning number {i}" for i in range(50)] + ["publish failed"] * 3


def test_warnings_fold_by_template_info_lines_only_when_identical(
    capture: tuple[logging.Logger, Capture, RepeatedLinesFilter], clock: Clock
) -> None:
    logger, handler, _ = capture
    # A warning whose details vary is still the same warning: folded.
    for stream in ("chat:room:1", "chat:room:2", "chat:room:3"):
        logger.warning("subscribe to %s failed", stream)
    assert handler.lines == ["subscribe to chat:room:1 failed"]
    # One INFO line per socket opened stays, and a user's few reconnects in a row (up to
    # identical_burst = 10 identical lines per interval); a flood of one line is folded.
    for user in (1, 2, 3):
        logger.info("event=socket.open path=/ws/ user=%s", user)
    for _ in range(1000):
        logger.info("event=socket.error code=%s path=/ws/ user=%s", "invalid", 4)
    clock.now += 10
    logger.info("event=socket.error code=%s path=/ws/ user=%s", "invalid", 4)
    assert handler.lines[1:] == [
        "event=socket.open path=/ws/ user=1",
        "event=socket.open path=/ws/ user=2",
        "event=socket.open path=/ws/ user=3",
        *["event=socket.error code=invalid path=/ws/ user=4"] * 10,
        "event=socket.error code=invalid path=/ws/ user=4 (repeated 990 times)",
    ]


def test_a_record_through_two_filtered_handlers_is_counted_once(clock: Clock) -> None:
    logger = logging.getLogger("townsquare.test.twice")
    repeats = RepeatedLinesFilter(interval=10.0, clock=clock)
    first, second = Capture(), Capture()
    for handler in (first, second):
        handler.addFilter(repeats)
        logger.addHandler(handler)
    logger.propagate = False
    try:
        for _ in range(3):
            logger.warning("layer down")
        clock.now += 10
        logger.warning("layer down")
    finally:
        for handler in (first, second):
            logger.removeHandler(handler)
        logger.propagate = True
    assert first.lines == second.lines == ["layer down", "layer down (repeated 2 times)"]


def test_a_traceback_keeps_its_exception_and_interval_zero_passes_everything(
    clock: Clock,
) -> None:
    logger = logging.getLogger("townsquare.test.tb")
    handler = Capture()
    handler.addFilter(RepeatedLinesFilter(interval=10.0, clock=clock))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for _ in range(5):
            try:
                raise ConnectionError("Redis went away")
            except ConnectionError:
                logger.exception("publish failed")
        clock.now += 10
        try:
            raise ConnectionError("Redis went away")
        except ConnectionError:
            logger.exception("publish failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert len(handler.lines) == 2
    assert handler.lines[1].startswith("publish failed (repeated 4 times)\nTraceback")
    assert "ConnectionError: Redis went away" in handler.lines[1]

    everything = RepeatedLinesFilter(interval=0)
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "same", None, None)
    assert all(everything.filter(record) for _ in range(100))


def test_memory_is_bounded_by_max_keys(clock: Clock) -> None:
    repeats = RepeatedLinesFilter(interval=10.0, max_keys=100, clock=clock)
    passed = 0
    for i in range(10_000):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "request %d", (i,), None)
        passed += repeats.filter(record)
    assert passed == 10_000  # distinct lines all pass
    assert repeats.tracked() == 100
    # Keys that owe no count and are older than the interval are forgotten as lines come.
    clock.now += 11
    repeats.filter(logging.LogRecord("x", logging.INFO, __file__, 1, "later", None, None))
    assert repeats.tracked() == 1


def test_the_project_handler_folds_repeats_before_redacting() -> None:
    # Installed by townsquare/settings.py LOGGING on the console handler that every logger
    # writes to (root, django, uvicorn's).
    console = logging.getHandlerByName("console")
    assert console is not None
    for name in ("", "django", "uvicorn.error", "uvicorn.access", "realtime.publish"):
        logger = logging.getLogger(name)
        while logger.propagate and logger.parent is not None and not logger.handlers:
            logger = logger.parent
        assert console in logger.handlers, name
    kinds = [type(f) for f in console.filters]
    assert kinds == [ClientFaultsFilter, RepeatedLinesFilter, RedactTokensFilter], kinds
    repeats = console.filters[1]
    assert isinstance(repeats, RepeatedLinesFilter)
    assert repeats.interval == 10.0


def test_a_client_sending_bad_utf8_writes_one_info_line_not_a_traceback() -> None:
    try:
        b"\xff".decode()
    except UnicodeDecodeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "uvicorn.error",
        logging.ERROR,
        __file__,
        1,
        "Invalid UTF-8 sequence received from client.",
        None,
        exc_info,
    )
    assert ClientFaultsFilter().filter(record)
    line = logging.Formatter("%(levelname)s %(name)s %(message)s").format(record)
    assert line == (
        "INFO uvicorn.error event=socket.bad_utf8 detail=a text frame was not UTF-8; "
        "closing with 1007"
    )
    # Other uvicorn errors (a bug in the application) keep their traceback.
    bug = logging.LogRecord(
        "uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI app\n", None, exc_info
    )
    assert ClientFaultsFilter().filter(bug)
    assert (bug.levelno, bug.exc_info) == (logging.ERROR, exc_info)
