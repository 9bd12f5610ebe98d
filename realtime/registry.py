"""Registry of stream kinds and client actions, filled by each app's `AppConfig.ready()`.

A stream name is ``<kind>`` or ``<kind>:<key>``: ``chat:room:42`` is kind ``chat:room`` with
key ``"42"``; ``dashboard`` is kind ``dashboard`` with key ``""``. The longest registered kind
that prefixes the name wins.

Stream kinds carry three functions, all synchronous (they may query the database; the core
calls them through ``database_sync_to_async``):

``authorize(user, key) -> None``
    Raise ``ProtocolError`` (``forbidden``, ``not_found``, ``unauthenticated``) to refuse.
``replay(key, since, limit) -> list[Event]``
    Durable kinds only: the events with ``offset > since``, oldest first, at most ``limit``.
``snapshot(user, key) -> list[Event]``
    Optional: the current state (stock, unread count, member list), sent after the subscribe
    ``ack`` and before any replay. Snapshot events carry no offset.

Client actions map a frame ``type`` (``chat.send``) to an async handler
``handler(ctx, frame) -> dict``; the dict is merged into the ``ack`` frame. Handlers raise
``ProtocolError`` or Django's ``PermissionDenied``/``ValidationError``/``ObjectDoesNotExist``,
which the consumer turns into ``error`` frames.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from .protocol import ErrorCode, ProtocolError

if TYPE_CHECKING:
    from .consumers import ActionContext

#: Who a socket belongs to: a user, or ``AnonymousUser``.
type AnyUser = AbstractBaseUser | AnonymousUser

# Letters, digits, `_` and `-` between colons: maps one-to-one to a channel-layer group name.
# \Z, not $: "$" would also accept a trailing newline.
STREAM_NAME_RE = re.compile(r"^[A-Za-z0-9_\-]+(:[A-Za-z0-9_\-]+)*\Z")
STREAM_NAME_MAX = 90


class Event(NamedTuple):
    """One event of a stream: what ``publish`` sends and ``replay``/``snapshot`` return."""

    event: str
    data: Any
    offset: int | None = None


@dataclass(frozen=True)
class StreamKind:
    """A registered kind of stream (see the module docstring for the three functions)."""

    name: str
    authorize: Callable[[AnyUser, str], None]
    replay: Callable[[str, int, int], list[Event]] | None = None
    snapshot: Callable[[AnyUser, str], list[Event]] | None = None
    #: Track who is subscribed (``realtime.presence``): ``presence.*`` events and ``typing``.
    presence: bool = False
    #: Durable kinds: ``head(key) -> int``, the newest offset (0 when empty). A subscription
    #: without ``since`` starts there, so that live frames are ordered from the first one.
    head: Callable[[str], int] | None = None

    @property
    def durable(self) -> bool:
        """Durable streams carry offsets and can be replayed with ``since``."""
        return self.replay is not None


ActionHandler = Callable[["ActionContext", dict[str, Any]], Awaitable[dict[str, Any]]]

_kinds: dict[str, StreamKind] = {}
_actions: dict[str, ActionHandler] = {}
_pipelined: set[str] = set()

# Frame types the core itself handles; apps may not take them.
RESERVED_TYPES = frozenset({"subscribe", "unsubscribe", "ping", "typing"})


def register_stream(
    name: str,
    *,
    authorize: Callable[[AnyUser, str], None],
    replay: Callable[[str, int, int], list[Event]] | None = None,
    snapshot: Callable[[AnyUser, str], list[Event]] | None = None,
    presence: bool = False,
    head: Callable[[str], int] | None = None,
) -> StreamKind:
    """Register a stream kind; call from ``AppConfig.ready()``. Re-registering replaces it."""
    kind = StreamKind(
        name=name,
        authorize=authorize,
        replay=replay,
        snapshot=snapshot,
        presence=presence,
        head=head,
    )
    _kinds[name] = kind
    return kind


def register_action(type_: str, handler: ActionHandler, *, pipelined: bool = False) -> None:
    """Register the async handler of the client frame type ``type_`` (e.g. ``chat.send``).

    ``pipelined``: the socket reads its next frames while this one is handled (its ``ack``
    or ``error`` may then follow the answers to frames sent after it). For actions whose
    work queues somewhere that keeps the socket's order anyway, such as the chat's group
    commit: a sender with many messages in flight then has them written together.
    """
    if type_ in RESERVED_TYPES:
        raise ValueError(f"{type_!r} is a core frame type")
    _actions[type_] = handler
    if pipelined:
        _pipelined.add(type_)
    else:
        _pipelined.discard(type_)


def action(type_: str, *, pipelined: bool = False) -> Callable[[ActionHandler], ActionHandler]:
    """Decorator form of ``register_action``."""

    def decorate(handler: ActionHandler) -> ActionHandler:
        register_action(type_, handler, pipelined=pipelined)
        return handler

    return decorate


def is_pipelined(type_: str) -> bool:
    """True if the action ``type_`` was registered with ``pipelined=True``."""
    return type_ in _pipelined


def get_action(type_: str) -> ActionHandler | None:
    """Return the handler registered for ``type_``, or None."""
    return _actions.get(type_)


def resolve(stream: Any) -> tuple[StreamKind, str]:
    """Return ``(kind, key)`` for a stream name.

    Raises:
        ProtocolError: ``invalid`` for a name that is not a well-formed string,
            ``unknown_stream`` when no registered kind matches.
    """
    if (
        not isinstance(stream, str)
        or len(stream) > STREAM_NAME_MAX
        or not STREAM_NAME_RE.match(stream)
    ):
        raise ProtocolError(ErrorCode.INVALID, "stream must be a name like 'kind:id'")
    name = stream
    while True:
        kind = _kinds.get(name)
        if kind is not None:
            return kind, stream[len(name) + 1 :]
        cut = name.rfind(":")
        if cut < 0:
            raise ProtocolError(ErrorCode.UNKNOWN_STREAM, f"no stream kind matches {stream!r}")
        name = name[:cut]
