"""Logging helpers: no token may reach a log line, and no line floods the log."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

# ?token=…, &token=… and the bearer.<jwt> subprotocol, wherever they appear in a message.
_TOKEN_RE = re.compile(r"((?:[?&]|\b)(?:token|access)=)[^&\s\"']+|(bearer\.)[A-Za-z0-9_\-.]+", re.I)


def redact(text: str) -> str:
    """Replace every token value in ``text`` by ``[redacted]``."""
    return _TOKEN_RE.sub(lambda m: (m.group(1) or m.group(2)) + "[redacted]", text)


class RedactTokensFilter(logging.Filter):
    """A handler filter that rewrites each record's message with tokens redacted.

    uvicorn's access and error logs print WebSocket paths with their query strings as they
    are; this filter sits on every handler so that ``?token=`` never lands in a log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


#: Attribute set on a record once the repeat filter decided on it: its verdict (a record
#: passes every handler's filters, and must be counted and annotated once).
_VERDICT = "_townsquare_repeat_verdict"


class RepeatedLinesFilter(logging.Filter):
    """A handler filter that lets a repeated line through at most once per ``interval``.

    An outage or a flood repeats one line thousands of times (every publish fails the same
    way; every frame of a flooding client is refused the same way). Lines are grouped by a
    key; the first line of a key passes, then at most one per ``interval`` seconds, and the
    one that passes after others were dropped ends with ``(repeated K times)``, K being the
    number dropped since the last one that passed (also set as ``record.repeated``).

    Keys:

    - records at ``template_level`` (default WARNING) and above: ``(logger name, level,
      message template)``. One failure with varying details (the stream, the error's text)
      counts as one line: one per ``interval``.
    - records below it (INFO, DEBUG): ``(logger name, level, formatted message)``, with
      ``identical_burst`` (default 10) lines per ``interval`` before folding. Event lines
      (one per socket opened, per request) stay, even a user's few reconnects in a row; a
      client repeating one request or one refused frame does not fill the log.

    Dropped counts wait for the next line of their key to pass; a key that owes no count
    and saw no line for ``interval`` is forgotten, and at most ``max_keys`` keys are kept
    (the least recently seen go first), so memory stays bounded whatever is logged.
    ``interval`` 0 lets everything through. Thread-safe. Setting: ``LOG_REPEAT_SECONDS``.
    """

    def __init__(
        self,
        interval: float = 10.0,
        template_level: int | str = logging.WARNING,
        identical_burst: int = 10,
        max_keys: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.interval = float(interval)
        self.template_level = (
            logging.getLevelNamesMapping()[template_level]
            if isinstance(template_level, str)
            else template_level
        )
        self.identical_burst = max(1, identical_burst)
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        # key → [start of its current window (monotonic s), lines passed in it, dropped]
        self._seen: OrderedDict[tuple[str, int, str], list[float]] = OrderedDict()

    def tracked(self) -> int:
        """How many keys (distinct lines or templates) the filter remembers now: at most
        ``max_keys``, fewer once keys idle past ``interval`` are forgotten."""
        with self._lock:
            return len(self._seen)

    def _key(self, record: logging.LogRecord) -> tuple[tuple[str, int, str], int]:
        """The record's key and how many lines of it may pass per interval."""
        if record.levelno >= self.template_level and isinstance(record.msg, str):
            return (record.name, record.levelno, record.msg), 1
        return (record.name, record.levelno, record.getMessage()), self.identical_burst

    def filter(self, record: logging.LogRecord) -> bool:
        verdict = getattr(record, _VERDICT, None)
        if verdict is not None:
            return bool(verdict)
        if self.interval <= 0:
            return True
        key, allowance = self._key(record)
        now = self._clock()
        with self._lock:
            seen = self._seen
            entry = seen.get(key)
            if entry is None or now - entry[0] >= self.interval:
                dropped = int(entry[2]) if entry is not None else 0
                seen[key] = [now, 1, 0]
            elif entry[1] < allowance:
                dropped = int(entry[2])
                entry[1] += 1
                entry[2] = 0
            else:
                entry[2] += 1
                seen.move_to_end(key)
                setattr(record, _VERDICT, False)
                return False
            seen.move_to_end(key)
            self._prune(now)
        setattr(record, _VERDICT, True)
        record.repeated = dropped
        if dropped:
            if isinstance(record.msg, str):
                record.msg = f"{record.msg} (repeated {dropped} times)"
            else:
                record.msg, record.args = f"{record.getMessage()} (repeated {dropped} times)", None
        return True

    def _prune(self, now: float) -> None:
        # Under the lock; amortized O(1): keys are in the order they were last seen, so the
        # first ones are the oldest. Forget those whose window is over and that owe no count
        # (their next line passes anyway); then, while a flood of distinct lines keeps the
        # map over its bound, the oldest.
        seen = self._seen
        while seen:
            key, (start, _, dropped) = next(iter(seen.items()))
            if dropped or now - start < self.interval:
                break
            del seen[key]
        while len(seen) > self.max_keys:
            seen.popitem(last=False)


class ClientFaultsFilter(logging.Filter):
    """A handler filter that logs a client's protocol fault as one INFO line, not a traceback.

    uvicorn logs a text frame that is not UTF-8 with ``logger.exception`` (a traceback at
    ERROR), then closes the socket with 1007 as RFC 6455 §8.1 asks. The fault is the
    client's, and any anonymous client could write a traceback per connection: here it is
    one INFO line, ``event=socket.bad_utf8``, which the repeat filter can fold.
    """

    FAULTS = {
        "Invalid UTF-8 sequence received from client.": (
            "event=socket.bad_utf8 detail=a text frame was not UTF-8; closing with 1007"
        ),
    }

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("uvicorn") and isinstance(record.msg, str):
            replacement = self.FAULTS.get(record.msg)
            if replacement is not None:
                record.msg, record.args = replacement, None
                record.levelno, record.levelname = logging.INFO, "INFO"
                record.exc_info, record.exc_text = None, None
        return True
