"""Declared events: every event type a stream kind carries, with its payload's fields and types.

Each app declares its events once, beside the stream kind that carries them (``chat/streams.py``
declares ``chat.message`` on ``chat:room``); the core declares its own here: ``presence.state``,
``presence.join``, ``presence.leave`` and ``presence.typing``, carried by every kind registered
with ``presence=True``, and ``workers.changed`` on the internal stream ``sys:workers``. A payload
is a ``msgspec.Struct`` (or any type msgspec converts, such as ``dict[str, Any]``): its fields
are the ``data`` object's keys, strictly typed (``1`` is not a ``str``, ``True`` not an ``int``),
and unknown keys are refused (``forbid_unknown_fields``, set by ``Payload``). The same
declarations give ``/api/asyncapi.json`` its JSON Schemas (``realtime.asyncapi``).

Validation. ``publish``, ``apublish``, ``publish_many``, ``apublish_many`` and the
``*_on_commit`` helpers call ``check`` when ``enabled`` is true, and refuse an event that is not
declared for the stream's kind, a payload of the wrong shape, or an offset where the
declaration says there is none (and the reverse) with ``InvalidEvent``, naming the stream kind,
the event and the field. ``enabled`` is computed once from the settings (and again when a test
changes them): true when ``settings.DEBUG`` or ``settings.TOWNSQUARE_VALIDATE_EVENTS`` is true,
or, when that setting is absent, when the environment variable ``TOWNSQUARE_VALIDATE_EVENTS``
is ``1``/``true``/``yes`` (how ``tests/server.py`` turns it on in server processes). Production
pays one module-attribute test per publish. Every refusal is also logged at ERROR with the
line ``event=invalid_event ...``, so a server process shows it even where the exception was
caught (a publish handed to the event loop); ``tests/server.py`` fails a test whose server
logged one. The idea is Zulip's: every event type has a schema, and every event the test
suite sends is checked against it (``zerver/lib/event_schema.py``).

Measured cost of validating one ``chat.message`` payload (a dict of 7 keys with a nested
author), best of 5 × 20,000 calls on this project's machine (Python 3.13), by
``python realtime/tests/bench_events.py`` (timeit)::

    msgspec.convert(data, Struct)                 0.23 µs   <- chosen
    pydantic 2 TypeAdapter(TypedDict), strict     0.55 µs
    pydantic 2 BaseModel.model_validate, strict   1.55 µs
    jsonschema Draft 2020-12 validator           47    µs
    disabled (the cached boolean)                 0.02 µs

msgspec is also the smallest dependency of the three and writes JSON Schema itself
(``msgspec.json.schema_components``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from .registry import resolve

logger = logging.getLogger(__name__)

#: Whether ``publish`` checks events against their declarations (see the module docstring).
#: Read as ``events.enabled`` (never imported by name: tests and settings changes rebind it).
enabled: bool = False


class Payload(msgspec.Struct, forbid_unknown_fields=True):
    """Base of declared payloads: a JSON object whose keys are exactly the fields (those with
    a default, such as ``msgspec.UNSET``, may be absent)."""


class UserRef(Payload):
    """A user as events show them: ``{id, username}``."""

    id: int
    username: str


class UserPayload(Payload):
    """``{user: {id, username}}``."""

    user: UserRef


class PresenceState(Payload):
    """``{users: [{id, username}, …]}``: who has a socket on the stream now, by username."""

    users: list[UserRef]


class WorkersChanged(Payload):
    """``{worker: str}``: a worker wrote its statistics (internal)."""

    worker: str


@dataclass(frozen=True)
class EventType:
    """One declared event.

    ``kind``: the stream kind carrying it (``chat:room``), or ``PRESENCE`` for the core's
    presence events, carried by every kind registered with ``presence=True``.
    ``payload``: the type of ``data``. ``durable``: published with an ``offset`` (True),
    without one (False), or either (None: only for tests' own events).
    ``snapshot``: sent as part of the subscribe snapshot (possibly also live).
    ``internal``: on a ``sys:`` stream, for the server's own processes; never on a socket.
    """

    kind: str
    name: str
    payload: Any
    summary: str = ""
    durable: bool | None = False
    snapshot: bool = False
    internal: bool = False


#: The ``kind`` of the core's presence events.
PRESENCE = "*presence"

_declared: dict[str, dict[str, EventType]] = {}


@dataclass(frozen=True)
class KindInfo:
    """How ``/api/asyncapi.json`` shows a stream kind: its stream names' ``address`` pattern
    (``chat:room:{id}``; ``{...}`` are parameters) and a sentence about it."""

    address: str
    description: str = ""


_kind_info: dict[str, KindInfo] = {}


def describe_kind(kind: str, *, address: str | None = None, description: str = "") -> None:
    """Describe a stream kind for the AsyncAPI document; ``address`` defaults to
    ``<kind>:{key}`` (a kind with one stream of its own name passes ``address=kind``)."""
    _kind_info[kind] = KindInfo(address or f"{kind}:{{key}}", description)


def kind_info(kind: str) -> KindInfo:
    """``describe_kind``'s description of ``kind``, or the default one."""
    return _kind_info.get(kind) or KindInfo(f"{kind}:{{key}}")


@dataclass(frozen=True)
class ActionType:
    """A declared client frame ``type``: its fields (``frame``, ``type`` and ``ref`` left
    out) and the fields its ``ack`` adds to ``{type, for, ref}`` (None: answered otherwise,
    as ``ping`` with ``pong``). For ``/api/asyncapi.json``; the handlers check frames
    themselves."""

    name: str
    frame: Any
    ack: Any
    summary: str = ""


_actions: dict[str, ActionType] = {}


def declare_action(name: str, frame: Any, ack: Any, *, summary: str = "") -> ActionType:
    """Declare the client frame type ``name`` (beside its ``@action`` handler)."""
    msgspec.json.schema(frame)
    if ack is not None:
        msgspec.json.schema(ack)
    declared = ActionType(name, frame, ack, summary)
    _actions[name] = declared
    return declared


def declared_actions() -> list[ActionType]:
    """Every declared client frame type, core ones first."""
    return list(_actions.values())


@contextlib.contextmanager
def override() -> Iterator[None]:
    """Within the block declare or undeclare freely; afterwards the declarations are as they
    were (as ``registry.override``)."""
    saved = {kind: dict(events) for kind, events in _declared.items()}
    saved_actions = dict(_actions)
    try:
        yield
    finally:
        _declared.clear()
        _declared.update(saved)
        _actions.clear()
        _actions.update(saved_actions)


class InvalidEvent(ValueError):
    """An event ``publish`` refused while validation is enabled: not declared for the
    stream's kind, or its ``data``/``offset`` do not match the declaration.

    Attributes: ``stream``, ``kind`` (the declared kind matched, or None), ``event``,
    ``field`` (a path such as ``author.id``, or None), ``detail``.
    """

    def __init__(
        self, stream: str, kind: str | None, event: str, field: str | None, detail: str
    ) -> None:
        where = f"field {field!r}: " if field else ""
        super().__init__(
            f"stream {stream!r} (kind {kind!r}), event {event!r}: {where}{detail}"
        )
        self.stream = stream
        self.kind = kind
        self.event = event
        self.field = field
        self.detail = detail


def declare(
    kind: str,
    name: str,
    payload: Any,
    *,
    summary: str = "",
    durable: bool | None = False,
    snapshot: bool = False,
    internal: bool = False,
) -> EventType:
    """Declare the event ``name`` on streams of ``kind``; call at import of the module that
    registers the kind (``streams.py``). Re-declaring replaces the declaration.

    ``payload`` is a ``Payload`` subclass (or another type msgspec can convert to, like
    ``dict[str, Any]``); it is checked to produce a JSON Schema here, so that a type msgspec
    cannot describe fails at startup, not in ``/api/asyncapi.json``.
    """
    msgspec.json.schema(payload)
    declared = EventType(kind, name, payload, summary, durable, snapshot, internal)
    _declared.setdefault(kind, {})[name] = declared
    return declared


def undeclare(kind: str, name: str) -> None:
    """Remove a declaration (tests' own events, after the test)."""
    events = _declared.get(kind, {})
    events.pop(name, None)
    if not events:
        _declared.pop(kind, None)


def declared(kind: str | None = None) -> list[EventType]:
    """Every declaration, or those of ``kind`` (presence events are under ``PRESENCE``), in
    declaration order."""
    if kind is not None:
        return list(_declared.get(kind, {}).values())
    return [e for events in _declared.values() for e in events.values()]


def declared_kinds() -> list[str]:
    """The kinds with declared events (``PRESENCE`` excluded)."""
    return [k for k in _declared if k != PRESENCE]


def lookup(stream: str, event: str) -> tuple[str | None, EventType | None]:
    """``(kind, declaration)`` of ``event`` on ``stream``; the kind is the longest declared
    one that prefixes the name (as ``registry.resolve``), None when none does; the
    declaration None when the kind does not carry ``event``."""
    name = stream
    kind: str | None = None
    while True:
        if name in _declared:
            kind = name
            break
        cut = name.rfind(":")
        if cut < 0:
            break
        name = name[:cut]
    found = _declared[kind].get(event) if kind is not None else None
    if found is None and event in _declared.get(PRESENCE, {}) and _has_presence(stream):
        found = _declared[PRESENCE][event]
        kind = kind or PRESENCE
    return kind, found


def _has_presence(stream: str) -> bool:
    try:
        return resolve(stream)[0].presence
    except Exception:
        return False


_PATH_RE = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_FIELD_RE = re.compile(r"field `(?P<field>[^`]+)`")


def validate(stream: str, event: str, data: Any, offset: int | None = None) -> None:
    """Refuse ``event`` on ``stream`` unless declared for its kind with this shape.

    Raises:
        InvalidEvent: undeclared kind or event, wrong ``data`` (missing, unknown or mistyped
            field; not an object), an offset on an event declared without one or none on a
            durable one. Nothing is logged: for input a client sent (``POST /api/publish/``),
            which answers 400; ``check`` is the publish path's, and logs.
    """
    kind, found = lookup(stream, event)
    if kind is None:
        raise InvalidEvent(stream, None, event, None, "no events are declared for this stream")
    if found is None:
        raise InvalidEvent(stream, kind, event, None, "event not declared for this kind")
    if found.durable is True and offset is None:
        raise InvalidEvent(stream, kind, event, None, "durable event published without offset")
    if found.durable is False and offset is not None:
        raise InvalidEvent(stream, kind, event, None, "offset on an event without one")
    try:
        msgspec.convert(data, found.payload)
    except msgspec.ValidationError as exc:
        detail = str(exc)
        field = None
        at = _PATH_RE.search(detail)
        if at:
            field = at["path"] or None
            detail = detail[: at.start()]
        named = _FIELD_RE.search(detail)
        if named:  # missing or unknown field: its name is in the message
            field = f"{field}.{named['field']}" if field else named["field"]
        raise InvalidEvent(stream, kind, event, field, detail) from None


def check(stream: str, event: str, data: Any, offset: int | None = None) -> None:
    """Refuse ``event`` on ``stream`` unless declared for its kind with this shape
    (``validate``), logged at ERROR as ``event=invalid_event``: on the publish path a refused
    event is a bug in the code that published it.

    Raises:
        InvalidEvent: as ``validate``.
    """
    try:
        validate(stream, event, data, offset)
    except InvalidEvent as exc:
        logger.error(
            "event=invalid_event stream=%s kind=%s name=%s field=%s detail=%r",
            stream,
            exc.kind,
            event,
            exc.field,
            exc.detail,
        )
        raise


def check_many(items: Iterable[Any]) -> None:
    """``check`` each ``Published`` (anything with stream, event, data, offset)."""
    for item in items:
        check(item.stream, item.event, item.data, item.offset)


def _from_settings() -> bool:
    configured = getattr(settings, "TOWNSQUARE_VALIDATE_EVENTS", None)
    if configured is None:
        configured = os.environ.get("TOWNSQUARE_VALIDATE_EVENTS", "").lower() in {
            "1",
            "true",
            "yes",
        }
    return bool(settings.DEBUG or configured)


def set_enabled(on: bool | None = None) -> None:
    """Turn validation on or off; None recomputes it from the settings."""
    global enabled
    enabled = _from_settings() if on is None else on


@receiver(setting_changed)
def _setting_changed(setting: str, **kwargs: Any) -> None:
    if setting in ("DEBUG", "TOWNSQUARE_VALIDATE_EVENTS"):
        set_enabled()


set_enabled()


# The core's own events.
declare(
    PRESENCE,
    "presence.state",
    PresenceState,
    snapshot=True,
    summary="Snapshot on every subscribe: who has a socket on the stream now, you included.",
)
declare(
    PRESENCE,
    "presence.join",
    UserPayload,
    summary="A user's first socket on the stream (on any worker) subscribed.",
)
declare(
    PRESENCE,
    "presence.leave",
    UserPayload,
    summary="A user's last socket left, or the worker holding it died.",
)
declare(
    PRESENCE,
    "presence.typing",
    UserPayload,
    summary="A user is typing (the client's `typing` frame, rate limited).",
)
declare(
    "sys:workers",
    "workers.changed",
    WorkersChanged,
    internal=True,
    summary="A worker wrote its statistics to the shared store.",
)


# The core's client frames (realtime.consumers handles them).

class SubscribeFrame(Payload):
    stream: str
    since: Annotated[int, msgspec.Meta(ge=0)] | msgspec.UnsetType = msgspec.UNSET


class SubscribeAck(Payload):
    stream: str
    #: The stream carries offsets and accepts ``since``.
    durable: bool
    #: How many replayed events follow.
    replayed: int
    #: The replay stopped at ``REPLAY_MAX``.
    truncated: bool
    #: Present, and true, only when presence could not be read.
    degraded: bool | msgspec.UnsetType = msgspec.UNSET


class StreamFrame(Payload):
    stream: str


class UnsubscribeAck(Payload):
    stream: str
    was_subscribed: bool


class PingFrame(Payload):
    pass


class TypingAck(Payload):
    stream: str
    #: False when dropped by the typing rate limit.
    sent: bool


declare_action(
    "subscribe",
    SubscribeFrame,
    SubscribeAck,
    summary="Subscribe to a stream; with since, replay its events after that offset first.",
)
declare_action("unsubscribe", StreamFrame, UnsubscribeAck, summary="Stop receiving a stream.")
declare_action("ping", PingFrame, None, summary="Answered with pong {time, ref}.")
declare_action(
    "typing",
    StreamFrame,
    TypingAck,
    summary="Tell a presence stream you are typing: presence.typing to its subscribers.",
)
