"""µs to validate one ``chat.message`` payload: msgspec (chosen), pydantic, jsonschema.

Run: ``.venv/bin/python realtime/tests/bench_events.py`` (pydantic is measured when installed:
``pip install pydantic`` in a scratch environment). Not a test; the numbers are quoted in
``realtime/events.py``.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from typing import Any, TypedDict

import jsonschema
import msgspec

DATA = {
    "id": 123456,
    "room": 7,
    "offset": 98765,
    "author": {"id": 3, "username": "carol"},
    "text": "hello there, this is a chat message of moderate length",
    "client_id": "c-1f2e3d",
    "created_at": "2026-11-21T06:28:57.948014+00:00",
}


class User(msgspec.Struct, forbid_unknown_fields=True):
    id: int
    username: str


class Message(msgspec.Struct, forbid_unknown_fields=True):
    id: int
    room: int
    offset: int
    author: User
    text: str
    client_id: str
    created_at: str


class UserDict(TypedDict):
    id: int
    username: str


class MessageDict(TypedDict):
    id: int
    room: int
    offset: int
    author: UserDict
    text: str
    client_id: str
    created_at: str


def cases() -> dict[str, Callable[[], Any]]:
    validator = jsonschema.Draft202012Validator(msgspec.json.schema(Message))
    found: dict[str, Callable[[], Any]] = {
        "msgspec.convert(dict, Struct)": lambda: msgspec.convert(DATA, Message),
        "jsonschema Draft 2020-12": lambda: validator.validate(DATA),
        "disabled (a boolean)": lambda: False,
    }
    try:
        import pydantic
    except ImportError:
        return found
    adapter = pydantic.TypeAdapter(MessageDict)
    found["pydantic TypeAdapter(TypedDict), strict"] = lambda: adapter.validate_python(
        DATA, strict=True
    )
    return found


if __name__ == "__main__":
    for name, case in cases().items():
        n = 2_000 if "jsonschema" in name else 20_000
        best = min(timeit.repeat(case, number=n, repeat=5)) / n
        print(f"{best * 1e6:8.2f} µs  {name}")
