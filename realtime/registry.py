"""Registry of stream kinds, filled by each app's `AppConfig.ready()`.

Client actions (``chat.send``) have their own registry, ``realtime.actions``.

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

``override()`` (tests) restores the registry as it was when its block ends.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from .protocol import ErrorCode, ProtocolError

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


_kinds: dict[str, StreamKind] = {}


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


def unregister_stream(name: str) -> None:
    """Remove the stream kind ``name`` (tests, ``override``); nothing if it is not there."""
    _kinds.pop(name, None)


def kinds() -> list[str]:
    """The registered kind names, in registration order."""
    return list(_kinds)


@contextlib.contextmanager
def override() -> Iterator[None]:
    """Within the block, register or unregister kinds freely; afterwards the registry is as
    it was before (a test's kinds gone, replaced kinds back)."""
    saved = dict(_kinds)
    try:
        yield
    finally:
        _kinds.clear()
        _kinds.update(saved)


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
