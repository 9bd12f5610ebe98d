"""An AsyncAPI 3.0 document of ``/ws/``, built from the declarations (``realtime.events``) and
served at ``GET /api/asyncapi.json``.

Shape (AsyncAPI 3.0.0, https://www.asyncapi.com/docs/reference/specification/v3.0.0):

- ``channels``: one per registered stream kind that has declared events, keyed by the kind
  with ``:`` as ``.`` (``chat.room``); ``address`` is the stream-name pattern given by
  ``events.describe_kind`` (``chat:room:{id}``; ``<kind>:{key}`` by default); ``messages``
  are the kind's events (and the presence events on kinds registered with
  ``presence=True``). Plus the ``socket`` channel (address ``/ws/``) with the client frames
  and the server's ``ack``, ``error`` and ``pong``.
- ``operations``: ``receive`` of each stream kind's events; ``send`` of each client frame
  type (``subscribe``, ``unsubscribe``, ``ping``, ``typing``, ``chat.send``, …), with a
  ``reply`` (the ``ack``, or ``pong`` for ``ping``).
- ``components.messages``: every event (``event.<name>``: the whole ``event`` frame, with
  ``data`` the declared payload) and client frame (``action.<type>``) and server frame;
  ``components.schemas``: the payload types, as msgspec writes them (JSON Schema).

Internal events (``sys:`` streams) never reach a socket and are left out. Event names keep
their dots; channel and component keys use only letters, digits, ``.``, ``-`` and ``_``, as
the specification requires of component keys.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from . import events, registry
from .protocol import ErrorCode

TITLE = "Townsquare WebSocket protocol"
VERSION = "1.0.0"
_KEY_RE = re.compile(r"[^A-Za-z0-9.\-_]")


def _key(name: str) -> str:
    return _KEY_RE.sub("_", name.replace(":", "."))


def _ref(*parts: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(parts)}


def _frame_schema(
    type_: str, fields: dict[str, Any], required: list[str], **extra: Any
) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"type": {"const": type_}, **fields},
        "required": ["type", *required],
        **extra,
    }


_REF_SCHEMA: dict[str, Any] = {
    "description": "The client's reference, copied into the answer.",
    "type": ["string", "integer", "null"],
}


def build(host: str = "127.0.0.1:8000", secure: bool = False) -> dict[str, Any]:
    """The AsyncAPI document, as a JSON-able dict (see the module docstring)."""
    kinds = [k for k in registry.kinds() if events.declared(k)]
    event_types = [e for k in kinds for e in events.declared(k) if not e.internal]
    presence = events.declared(events.PRESENCE)
    actions = events.declared_actions()
    payload_types = (
        [e.payload for e in event_types + presence]
        + [a.frame for a in actions]
        + [a.ack for a in actions if a.ack is not None]
    )
    roots, schemas = msgspec.json.schema_components(
        payload_types, ref_template="#/components/schemas/{name}"
    )
    payload_of = dict(zip(map(id, payload_types), roots, strict=True))

    messages: dict[str, Any] = {}
    for e in [*event_types, *presence]:
        key = f"event.{e.name}"
        if key in messages:
            continue
        fields: dict[str, Any] = {
            "stream": {"type": "string"},
            "event": {"const": e.name},
            "data": payload_of[id(e.payload)],
        }
        required = ["stream", "event", "data"]
        if e.durable:
            fields["offset"] = {"type": "integer", "minimum": 1}
            required.append("offset")
        messages[key] = {
            "name": e.name,
            "title": e.name,
            "summary": e.summary or e.name,
            "payload": _frame_schema("event", fields, required, additionalProperties=False),
            "x-durable": bool(e.durable),
            "x-snapshot": e.snapshot,
        }
    for a in actions:
        frame = payload_of[id(a.frame)]
        messages[f"action.{a.name}"] = {
            "name": a.name,
            "title": a.name,
            "summary": a.summary or a.name,
            "payload": {"allOf": [frame, _frame_schema(a.name, {"ref": _REF_SCHEMA}, [])]},
        }
        if a.ack is not None:
            messages[f"ack.{a.name}"] = {
                "name": "ack",
                "title": f"ack for {a.name}",
                "payload": {
                    "allOf": [
                        payload_of[id(a.ack)],
                        _frame_schema(
                            "ack", {"for": {"const": a.name}, "ref": _REF_SCHEMA}, ["for", "ref"]
                        ),
                    ]
                },
            }
    messages["error"] = {
        "name": "error",
        "title": "error",
        "summary": "A frame failed, or a subscription was ended (unsubscribed, with stream).",
        "payload": _frame_schema(
            "error",
            {
                "code": {"enum": [c.value for c in ErrorCode]},
                "detail": {"type": "string"},
                "ref": _REF_SCHEMA,
                "stream": {"type": "string"},
                "reason": {"type": "string"},
                "retry_after": {"type": "number"},
            },
            ["code", "detail"],
        ),
    }
    messages["pong"] = {
        "name": "pong",
        "title": "pong",
        "payload": _frame_schema(
            "pong", {"time": {"type": "number"}, "ref": _REF_SCHEMA}, ["time"]
        ),
    }

    channels: dict[str, Any] = {
        "socket": {
            "address": "/ws/",
            "title": "The socket",
            "description": "Client frames and the server's answers; events arrive on the "
            "stream channels, multiplexed on this socket.",
            "messages": {
                name: _ref("components", "messages", name)
                for name in messages
                if not name.startswith("event.")
            },
        }
    }
    operations: dict[str, Any] = {}
    for kind_name in kinds:
        kind, _ = registry.resolve(kind_name)
        about = events.kind_info(kind_name)
        address = about.address
        parameters = re.findall(r"\{([^}]+)\}", address)
        carried = [e for e in events.declared(kind_name) if not e.internal]
        if kind.presence:
            carried += presence
        channel: dict[str, Any] = {
            "address": address,
            "title": kind_name,
            "description": (about.description or f"Stream kind {kind_name}.")
            + (" Durable: events carry offsets; subscribe with since." if kind.durable else ""),
            "messages": {
                f"event.{e.name}": _ref("components", "messages", f"event.{e.name}")
                for e in carried
            },
        }
        if parameters:
            channel["parameters"] = {p: {"description": f"The stream's {p}."} for p in parameters}
        channels[_key(kind_name)] = channel
        operations[f"receive.{_key(kind_name)}"] = {
            "action": "receive",
            "channel": _ref("channels", _key(kind_name)),
            "summary": f"Events of {kind_name} streams, after a subscribe.",
            "messages": [
                _ref("channels", _key(kind_name), "messages", f"event.{e.name}") for e in carried
            ],
        }
    for a in actions:
        operation: dict[str, Any] = {
            "action": "send",
            "channel": _ref("channels", "socket"),
            "summary": a.summary or a.name,
            "messages": [_ref("channels", "socket", "messages", f"action.{a.name}")],
        }
        answer = f"ack.{a.name}" if a.ack is not None else "pong"
        operation["reply"] = {
            "channel": _ref("channels", "socket"),
            "messages": [
                _ref("channels", "socket", "messages", answer),
                _ref("channels", "socket", "messages", "error"),
            ],
        }
        operations[f"send.{_key(a.name)}"] = operation

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "One WebSocket per tab carries many streams (docs/protocol.md).",
        },
        "defaultContentType": "application/json",
        "servers": {
            "default": {
                "host": host,
                "protocol": "wss" if secure else "ws",
                "pathname": "/ws/",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


@require_GET
def asyncapi_view(request: HttpRequest) -> JsonResponse:
    """``GET /api/asyncapi.json``: the document, for anyone (it describes the public
    protocol, as ``/api/schema/`` does the HTTP API)."""
    return JsonResponse(build(request.get_host(), request.is_secure()))
