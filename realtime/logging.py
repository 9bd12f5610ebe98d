"""Logging helpers: no token may reach a log line."""

from __future__ import annotations

import logging
import re

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
