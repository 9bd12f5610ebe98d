"""The one exception mapping (realtime/errors.py), shared by sockets and the HTTP API."""

from __future__ import annotations

import pytest
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.db import DataError, IntegrityError, InterfaceError, OperationalError
from redis.exceptions import RedisError

from realtime.errors import HTTP_STATUS, map_exception
from realtime.protocol import ErrorCode, ProtocolError


@pytest.mark.parametrize(
    ("exc", "code", "status"),
    [
        (ProtocolError(ErrorCode.TOO_MANY_STREAMS, "x"), "too_many_streams", 429),
        (PermissionDenied("members only"), "forbidden", 403),
        (ObjectDoesNotExist("Room matching query does not exist."), "not_found", 404),
        (ValidationError("too long"), "invalid", 400),
        (DataError("value out of range for type bigint"), "invalid", 400),
        (ValueError("A string literal cannot contain NUL (0x00) characters."), "invalid", 400),
        (IntegrityError("duplicate key"), "conflict", 409),
        (OperationalError("connection refused"), "unavailable", 503),
        (InterfaceError("connection already closed"), "unavailable", 503),
        (RedisError("Timeout"), "unavailable", 503),
    ],
)
def test_each_exception_has_one_code_and_status(exc: Exception, code: str, status: int) -> None:
    mapped = map_exception(exc)
    assert mapped is not None
    assert (str(mapped.code), mapped.status) == (code, status)


def test_details_never_leak_internals() -> None:
    mapped = map_exception(ObjectDoesNotExist("Room matching query does not exist."))
    assert mapped is not None and "Room" not in mapped.detail
    mapped = map_exception(IntegrityError('duplicate key value violates "chat_message_pkey"'))
    assert mapped is not None and "chat_message" not in mapped.detail
    mapped = map_exception(ValidationError(["too long", "empty"]))
    assert mapped is not None and mapped.detail == "too long; empty"


@pytest.mark.parametrize("exc", [ValueError("a bug"), KeyError("x"), RuntimeError("x")])
def test_bugs_map_to_nothing(exc: Exception) -> None:
    assert map_exception(exc) is None


def test_every_error_code_has_a_status() -> None:
    assert set(HTTP_STATUS) == set(ErrorCode)
