"""The wire protocol of `/ws/`: frame shapes, error codes and close codes.

Every frame is one JSON object in one WebSocket text message. docs/protocol.md is the
reference for clients; this module is the one place the server builds frames.

Client → server:
    ``{"type": "subscribe", "stream": str, "since": int?, "ref": str|int?}``
    ``{"type": "unsubscribe", "stream": str, "ref"?}``
    ``{"type": "ping", "ref"?}``
    feature actions registered by apps, e.g. ``{"type": "chat.send", "room": int, "text": str,
    "client_id": str}``

Server → client:
    ``{"type": "event", "stream": str, "offset": int?, "event": str, "data": object}``
    ``{"type": "ack", "ref": str|int|null, "for": str, ...}``
    ``{"type": "error", "code": str, "detail": str, "ref"?: str|int, "stream"?: str}``
    ``{"type": "pong", "ref"?: str|int, "time": float}`` (server time, Unix seconds)

Close codes follow RFC 6455 §7.4; 4000–4999 are ours.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any

import orjson


class CloseCode(IntEnum):
    """WebSocket close codes the server uses (RFC 6455 §7.4.1 and the 4000–4999 private range)."""

    #: The client sent a binary frame; the protocol is JSON text only (RFC 6455 "unsupported
    #: data").
    UNSUPPORTED_DATA = 1003
    #: A client frame was larger than ``MAX_FRAME_BYTES`` (RFC 6455 "message too big").
    MESSAGE_TOO_BIG = 1009
    #: The server failed on a bug while handling a frame (RFC 6455 "internal error"); the
    #: error is in the server's log.
    INTERNAL_ERROR = 1011
    #: The credentials offered (token) were invalid or expired; get a new token, then reconnect.
    UNAUTHENTICATED = 4001
    #: The sign-in that opened the socket ended: a logout of its session, a password change
    #: (other sessions, older tokens), the account deactivated or deleted
    #: (``realtime.signout``); final: sign in again, then reconnect.
    SIGNED_OUT = 4002
    #: The endpoint needs a signed-in user or a membership the user does not have.
    FORBIDDEN = 4003
    #: The socket's unsent output exceeded ``OUTBOX_MAX_BYTES`` (slow reader); reconnect with
    #: ``since`` to recover durable streams.
    SLOW_READER = 4008
    #: The client kept sending over the rate limit after being told (``rate_limited`` errors).
    RATE_LIMITED = 4029


class ErrorCode(StrEnum):
    """``code`` values of ``error`` frames. The socket stays open after each of them."""

    #: The text was not valid JSON.
    BAD_JSON = "bad_json"
    #: Valid JSON, but not an object with a string ``type``, or a binary message.
    BAD_FRAME = "bad_frame"
    #: ``type`` names no frame the server knows.
    UNKNOWN_TYPE = "unknown_type"
    #: A field is missing or has the wrong type or value; ``detail`` names it.
    INVALID = "invalid"
    #: The stream name matches no registered stream kind.
    UNKNOWN_STREAM = "unknown_stream"
    #: The user may not read that stream or do that action.
    FORBIDDEN = "forbidden"
    #: The object named (room, stream id) does not exist.
    NOT_FOUND = "not_found"
    #: Subscribing would exceed ``MAX_STREAMS_PER_SOCKET``.
    TOO_MANY_STREAMS = "too_many_streams"
    #: The frame was dropped: more than ``FRAMES_PER_SECOND`` (burst ``FRAME_BURST``), or a
    #: ``subscribe`` with ``since`` while the socket's replay budget is spent (``retry_after``,
    #: seconds, says when to try again).
    RATE_LIMITED = "rate_limited"
    #: The action needs a signed-in user.
    UNAUTHENTICATED = "unauthenticated"
    #: The write conflicts with what is stored (a uniqueness or integrity rule of the
    #: database refused it); nothing was written; retrying the same frame fails the same way.
    CONFLICT = "conflict"
    #: A dependency (database, channel layer) failed; nothing was written; retry later.
    UNAVAILABLE = "unavailable"
    #: The server's subscription ended (e.g. membership revoked); ``detail`` says why.
    UNSUBSCRIBED = "unsubscribed"


class ProtocolError(Exception):
    """Raised by a frame handler to answer with an ``error`` frame; the socket stays open.

    Attributes:
        code: one of ``ErrorCode``.
        detail: a human-readable sentence for the client.
    """

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def dumps(obj: Any) -> str:
    """Encode a JSON-able object as compact JSON text (orjson; datetimes as RFC 3339)."""
    return orjson.dumps(obj).decode()


def encode_event(stream: str, event: str, data: Any, offset: int | None = None) -> str:
    """Encode one ``event`` frame. Called once per publish, never once per recipient."""
    frame: dict[str, Any] = {"type": "event", "stream": stream, "event": event, "data": data}
    if offset is not None:
        frame["offset"] = offset
    return dumps(frame)


def encode_ack(ref: Any, for_type: str, **fields: Any) -> str:
    """Encode an ``ack`` frame answering the client frame whose ``ref`` and ``type`` are given."""
    return dumps({"type": "ack", "ref": ref, "for": for_type, **fields})


def encode_error(code: ErrorCode, detail: str, ref: Any = None, **fields: Any) -> str:
    """Encode an ``error`` frame; ``ref`` is included only when the client frame had one."""
    frame: dict[str, Any] = {"type": "error", "code": str(code), "detail": detail}
    if ref is not None:
        frame["ref"] = ref
    frame.update(fields)
    return dumps(frame)
