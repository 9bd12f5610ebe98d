"""``GET /api/asyncapi.json``: an AsyncAPI 3.0 document of ``/ws/`` that names every stream
kind, event and client frame, whose schemas are valid JSON Schema and accept the frames the
server sends; docs/protocol.md's event tables say the same."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from jsonschema import Draft202012Validator

from realtime import actions, events, registry

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
APP_KINDS = {"chat:room", "shop:item", "user", "dashboard", "feed"}


@pytest.fixture
def document() -> dict[str, Any]:
    response = Client().get("/api/asyncapi.json", HTTP_HOST="127.0.0.1")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def _validator(document: dict[str, Any], message: str) -> Draft202012Validator:
    # The payload, with the document as the resource its $refs point into.
    return Draft202012Validator({**document, "$ref": f"#/components/messages/{message}/payload"})


def test_the_document_has_asyncapi_3s_required_fields(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] and document["info"]["version"]
    assert document["servers"]["default"] == {
        "host": "127.0.0.1",
        "protocol": "ws",
        "pathname": "/ws/",
    }
    for key, channel in document["channels"].items():
        assert re.fullmatch(r"[A-Za-z0-9.\-_]+", key)
        for parameter in re.findall(r"\{([^}]+)\}", channel["address"]):
            assert parameter in channel["parameters"]
    for operation in document["operations"].values():
        assert operation["action"] in ("send", "receive")
        assert operation["channel"]["$ref"].startswith("#/channels/")
        # AsyncAPI 3: an operation's messages are a subset of its channel's.
        channel_ref = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/")
    for key in document["components"]["messages"]:
        assert re.fullmatch(r"[A-Za-z0-9.\-_]+", key)
    for ref in _refs(document):
        _resolve(document, ref)  # every $ref points at something


def test_every_schema_is_valid_json_schema_2020_12(document: dict[str, Any]) -> None:
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    for message in document["components"]["messages"].values():
        Draft202012Validator.check_schema(message["payload"])


def test_every_stream_kind_event_and_action_is_described(document: dict[str, Any]) -> None:
    addresses = {c["address"] for c in document["channels"].values()}
    assert {"chat:room:{id}", "shop:item:{id}", "user:{id}", "dashboard", "feed", "/ws/"} <= (
        addresses
    )
    described = {k for k in registry.kinds() if events.declared(k)}
    assert APP_KINDS <= described == {c["title"] for c in document["channels"].values()} - {
        "The socket"
    }
    messages = document["components"]["messages"]
    for kind in described:
        channel = document["channels"][kind.replace(":", ".")]
        carried = {e.name for e in events.declared(kind) if not e.internal}
        if registry.resolve(kind)[0].presence:
            carried |= {e.name for e in events.declared(events.PRESENCE)}
        assert {m.removeprefix("event.") for m in channel["messages"]} == carried
        assert document["operations"][f"receive.{kind.replace(':', '.')}"]["action"] == "receive"
    internal = {e.name for e in events.declared() if e.internal}
    assert internal == {"workers.changed", "dashboard.dirty"}
    assert not {f"event.{name}" for name in internal} & set(messages)
    sends = {op["summary"] for op in document["operations"].values() if op["action"] == "send"}
    assert len(sends) == len(events.declared_actions())
    # Every frame the server answers is declared: the core's own and every registered action.
    declared_names = {a.name for a in events.declared_actions()}
    assert set(actions.RESERVED_TYPES) | set(actions.registered()) <= declared_names
    for action in ("subscribe", "unsubscribe", "ping", "typing", "chat.send"):
        operation = document["operations"][f"send.{action}"]
        assert operation["messages"] == [
            {"$ref": f"#/channels/socket/messages/action.{action}"}
        ]
        replies = [m["$ref"].rsplit("/", 1)[1] for m in operation["reply"]["messages"]]
        assert replies == ["pong" if action == "ping" else f"ack.{action}", "error"]


def _doc_event_frames() -> list[dict[str, Any]]:
    text = PROTOCOL_MD.read_text()
    frames = []
    for block in re.findall(r"```json\n(.*?)```", text, re.S):
        for line in block.splitlines():
            if line.startswith("{"):
                frame = json.loads(line)
                if isinstance(frame, dict) and frame.get("type") == "event":
                    frames.append(frame)
    return frames


def test_the_documents_example_frames_match_the_schemas(document: dict[str, Any]) -> None:
    frames = _doc_event_frames()
    assert {f["event"] for f in frames} >= {"chat.members", "shop.stock", "notification.created"}
    for frame in frames:
        _validator(document, f"event.{frame['event']}").validate(frame)
    good = {"type": "event", "stream": "shop:item:2", "event": "shop.stock"}
    validator = _validator(document, "event.shop.stock")
    assert not validator.is_valid(
        {**good, "data": {"item": "2", "name": "x", "quantity": 1, "version": 1}}
    )
    assert not validator.is_valid({**good, "data": {"item": 2}})
    chat = _validator(document, "event.chat.message")
    data = {
        "id": 1,
        "room": 1,
        "offset": 1,
        "author": {"id": 1, "username": "a"},
        "text": "hi",
        "client_id": "",
        "created_at": "2026-11-21T06:28:57.948014+00:00",
    }
    message = {"type": "event", "stream": "chat:room:1", "event": "chat.message", "data": data}
    assert chat.is_valid({**message, "offset": 1})
    assert not chat.is_valid(message)  # durable: the offset is required


def _top_level_keys(cell: str) -> set[str]:
    """The keys of the first ``{...}`` in a table cell, at its top level."""
    start = cell.index("{")
    depth, keys = 0, set()
    for match in re.finditer(r'[{}\[\]]|"([^"]+)"\s*:', cell[start:]):
        token = match.group(0)
        if token in "{[":
            depth += 1
        elif token in "}]":
            depth -= 1
            if depth == 0:
                break
        elif depth == 1:
            keys.add(match.group(1))
    return keys


def _doc_event_tables() -> dict[str, set[str]]:
    """``{event: its data's top-level fields}`` from protocol.md's "Streams that exist"."""
    text = PROTOCOL_MD.read_text()
    section = text.split("## Streams that exist", 1)[1].split("\n## ", 1)[0]
    found: dict[str, set[str]] = {}
    for row in re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \|(.*)\|$", section, re.M):
        name, rest = row
        cell = rest.split("|")[-1]
        if "below" in cell:
            table = section.split(f"`{name}` data:", 1)[1].split("\n\n", 2)[1]
            fields: set[str] = set()
            for field in re.findall(r"^\| `([^`]+)`(?: / `([^`]+)`)? \|", table, re.M):
                fields.update(f for f in field if f)
            found[name] = fields - {"field"}
        else:
            found[name] = _top_level_keys(cell)
    return found


def _payload_fields(document: dict[str, Any], event: str) -> set[str]:
    data = document["components"]["messages"][f"event.{event}"]["payload"]["properties"]["data"]
    schema = _resolve(document, data["$ref"]) if "$ref" in data else data
    return set(schema["properties"])


def test_protocol_md_event_tables_match_the_document(document: dict[str, Any]) -> None:
    tables = _doc_event_tables()
    public = {
        e.name
        for e in events.declared()
        if not e.internal and (e.kind in APP_KINDS or e.kind == events.PRESENCE)
    }
    assert set(tables) == public
    for event, fields in tables.items():
        assert fields == _payload_fields(document, event), event
