"""Client actions: frame types an app adds to ``/ws/`` (``chat.send``), and their handlers.

An action maps a frame ``type`` to an async handler ``handler(ctx, frame) -> dict``; the dict
is merged into the ``ack`` frame. Handlers raise ``ProtocolError`` or Django's
``PermissionDenied``/``ValidationError``/``ObjectDoesNotExist`` (and the database's errors),
which the consumer turns into ``error`` frames (``realtime.errors``). Register them from
``AppConfig.ready()`` (or at import of a module ``ready()`` imports) with ``@action`` or
``register_action``.

Kept apart from the stream registry (``realtime.registry``) because actions are handled by
the consumer: the socket hands the handler its ``ActionContext``, which names the socket
only through the small ``ActionSocket`` protocol declared here, so this module imports no
consumer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from .registry import AnyUser

# Frame types the core itself handles; apps may not take them.
RESERVED_TYPES = frozenset({"subscribe", "unsubscribe", "ping", "typing"})


class ActionSocket(Protocol):
    """What an action handler may use of the socket its frame came on."""

    scope: dict[str, Any]

    def send_text(self, text: str, type_: str = "seed") -> bool:
        """Queue an encoded frame (``realtime.protocol``); False when the socket is closing."""


@dataclass(frozen=True)
class ActionContext:
    """What an action handler gets besides the frame: who sent it, and on which socket."""

    user: AnyUser
    consumer: ActionSocket


ActionHandler = Callable[[ActionContext, dict[str, Any]], Awaitable[dict[str, Any]]]

_actions: dict[str, ActionHandler] = {}
_pipelined: set[str] = set()


def register_action(type_: str, handler: ActionHandler, *, pipelined: bool = False) -> None:
    """Register the async handler of the client frame type ``type_`` (e.g. ``chat.send``).
    Re-registering replaces it.

    ``pipelined``: the socket reads its next frames while this one is handled (its ``ack``
    or ``error`` may then follow the answers to frames sent after it). For actions whose
    work queues somewhere that keeps the socket's order anyway, such as the chat's group
    commit: a sender with many messages in flight then has them written together.

    Raises:
        ValueError: ``type_`` is one of the core's own frame types (``RESERVED_TYPES``).
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


def unregister_action(type_: str) -> None:
    """Remove the action ``type_`` (tests, ``override``); nothing if it is not there."""
    _actions.pop(type_, None)
    _pipelined.discard(type_)


def is_pipelined(type_: str) -> bool:
    """True if the action ``type_`` was registered with ``pipelined=True``."""
    return type_ in _pipelined


def registered() -> list[str]:
    """The types of every registered action, sorted (the core's own frames not included)."""
    return sorted(_actions)


def get_action(type_: str) -> ActionHandler | None:
    """Return the handler registered for ``type_``, or None."""
    return _actions.get(type_)


@contextlib.contextmanager
def override() -> Iterator[None]:
    """Within the block, register or unregister actions freely; afterwards the registry is
    as it was before (a test's actions gone, replaced handlers back)."""
    saved, saved_pipelined = dict(_actions), set(_pipelined)
    try:
        yield
    finally:
        _actions.clear()
        _actions.update(saved)
        _pipelined.clear()
        _pipelined.update(saved_pipelined)
