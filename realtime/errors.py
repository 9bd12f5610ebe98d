"""One mapping from exceptions to error answers, for the socket and the HTTP API alike.

``map_exception(exc)`` gives ``(ErrorCode, detail, HTTP status)`` or None for a bug. The
socket consumers answer with an ``error`` frame of that code (``RealtimeConsumer``); the
DRF exception handler (``realtime.api_errors``) answers ``{"detail", "code"}`` with that
status; the apps' API views map their services' exceptions through ``api_errors.api_error``,
which uses this table too.

- ``ProtocolError`` → its own code, ``HTTP_STATUS[code]``;
- Django's ``PermissionDenied`` → ``forbidden`` 403; ``ObjectDoesNotExist`` → ``not_found``
  404; ``ValidationError`` → ``invalid`` 400; ``events.InvalidEvent`` (an undeclared event,
  refused while validation is on) → ``invalid`` 400;
- ``DataError``, ``OverflowError``, a ``ValueError`` about NUL (``is_bad_input``) →
  ``invalid`` 400;
- ``IntegrityError`` → ``conflict`` 409;
- ``OperationalError``, ``InterfaceError``, any other ``DatabaseError``, ``redis.RedisError``
  → ``unavailable`` 503.

An integrity error is the client's write clashing with what is stored (a duplicate, a row
that went away): retrying the same write fails the same way, so it is not ``unavailable``.
Ideas: Django's exception hierarchy (PEP 249's ``DatabaseError`` family), DRF's "Custom
exception handling"; OWASP REST Security cheat sheet ("Error handling": say what, never how).
"""

from __future__ import annotations

from typing import NamedTuple

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.db import DatabaseError, DataError, IntegrityError, InterfaceError
from redis.exceptions import RedisError

from .events import InvalidEvent
from .protocol import ErrorCode, ProtocolError

#: The HTTP status of each error code (the API's answer for the socket's code).
HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.BAD_JSON: 400,
    ErrorCode.BAD_FRAME: 400,
    ErrorCode.UNKNOWN_TYPE: 400,
    ErrorCode.INVALID: 400,
    ErrorCode.UNKNOWN_STREAM: 404,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.TOO_MANY_STREAMS: 429,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.CONFLICT: 409,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.UNSUBSCRIBED: 410,
}

#: Detail of ``invalid`` for input the database refused.
BAD_INPUT_DETAIL = "a value is out of range or contains a character that is not allowed"
#: Detail of ``conflict``.
CONFLICT_DETAIL = "the write conflicts with what is stored; nothing was written"


class MappedError(NamedTuple):
    """An exception's answer: ``code`` (an ``ErrorCode``), ``detail`` (a sentence for the
    client, never the exception's internals) and ``status`` (HTTP)."""

    code: ErrorCode
    detail: str
    status: int


def is_bad_input(exc: BaseException) -> bool:
    """True for errors that only the client's input can cause, raised below the serializers.

    - ``django.db.DataError``: the database refused a value (PostgreSQL: ``bigint out of
      range``, a text with a NUL byte: ``PostgreSQL text fields cannot contain NUL``);
    - ``OverflowError``: SQLite's driver cannot bind an int beyond 64 bits;
    - ``ValueError`` about NUL characters (psycopg's "A string literal cannot contain NUL").

    Other ``ValueError``s are bugs.
    """
    if isinstance(exc, (DataError, OverflowError)):
        return True
    return isinstance(exc, ValueError) and "NUL" in str(exc)


def _mapped(code: ErrorCode, detail: str) -> MappedError:
    return MappedError(code, detail, HTTP_STATUS[code])


def map_exception(exc: BaseException) -> MappedError | None:
    """Map an exception from a handler, a service or a view to its error answer (see the
    module's table); None for exceptions that are bugs (logged; the socket closes with
    1011, the API answers 500)."""
    if isinstance(exc, ProtocolError):
        return _mapped(exc.code, exc.detail)
    if isinstance(exc, PermissionDenied):
        return _mapped(ErrorCode.FORBIDDEN, str(exc) or "not allowed")
    if isinstance(exc, ObjectDoesNotExist):
        # str(exc) names the model ("Room matching query does not exist."): say less.
        return _mapped(ErrorCode.NOT_FOUND, "no such object")
    if isinstance(exc, ValidationError):
        return _mapped(ErrorCode.INVALID, "; ".join(exc.messages))
    if isinstance(exc, InvalidEvent):
        # Only while validation is on (DEBUG, tests): an event nobody declared.
        return _mapped(ErrorCode.INVALID, str(exc))
    if is_bad_input(exc):
        return _mapped(ErrorCode.INVALID, BAD_INPUT_DETAIL)
    if isinstance(exc, IntegrityError):
        return _mapped(ErrorCode.CONFLICT, CONFLICT_DETAIL)
    if isinstance(exc, RedisError):
        return _mapped(
            ErrorCode.UNAVAILABLE, "the shared cache is unavailable; nothing was written, retry"
        )
    # InterfaceError (a broken connection) is no DatabaseError in PEP 249's tree.
    if isinstance(exc, (DatabaseError, InterfaceError)):
        return _mapped(
            ErrorCode.UNAVAILABLE, "the database is unavailable; nothing was written, retry"
        )
    return None
