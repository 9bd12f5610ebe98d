"""The WebSocket stack's sign-in: a JWT (from a subprotocol or the query string) or the
Django session, how the socket signed in (``SignIn``, for ``realtime.signout``), and the
server's own ``send`` for the fan-out."""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import import_module
from typing import Any, Literal
from urllib.parse import parse_qs

from channels.auth import get_user
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.cookie import parse_cookie

from .tokens import TokenError, verify_token

#: The subprotocol a browser offers beside ``bearer.<token>``; the server accepts with it,
#: so the token itself is never echoed back.
SUBPROTOCOL = "townsquare"
BEARER_PREFIX = "bearer."
#: Scope key under which ``SocketAuthMiddleware`` leaves the server's ``send`` callable.
SERVER_SEND_KEY = "townsquare.server_send"
#: Scope key under which ``SocketAuthMiddleware`` leaves the socket's ``SignIn`` (signed-in
#: sockets only).
SIGN_IN_KEY = "townsquare.sign_in"


@dataclass(frozen=True, slots=True)
class SignIn:
    """How a socket signed in: what ``realtime.signout`` matches a sign-out against.

    Attributes:
        user_id: the user's primary key.
        method: ``"session"`` (the Django session cookie) or ``"token"`` (a JWT).
        session_key: the session's key (``"session"`` only): a logout ends its sockets.
        password: the token's ``pwd`` claim (``"token"`` only): a password change ends the
            sockets whose claim is no longer the user's fingerprint.
        at: ``time.monotonic()`` when the credentials were read, before the database was
            asked: a sign-out heard after that moment may have been missed by the read.
    """

    user_id: int
    method: Literal["session", "token"]
    session_key: str | None = None
    password: str | None = None
    at: float = 0.0


def token_from_scope(scope: dict[str, Any]) -> str | None:
    """The token offered by a socket: ``bearer.<token>`` subprotocol first, then ``?token=``."""
    for proto in scope.get("subprotocols") or ():
        if proto.startswith(BEARER_PREFIX):
            return str(proto[len(BEARER_PREFIX) :])
    query = scope.get("query_string", b"")
    if b"token=" in query:
        values = parse_qs(query.decode("latin-1")).get("token")
        if values:
            return values[0]
    return None


class SocketAuthMiddleware:
    """Sign a socket in, with one copy of the scope: the WebSocket stack's only auth layer.

    Sets ``scope["user"]``: from a JWT when the socket offers one (``bearer.<token>``
    subprotocol, or ``?token=``), else from the Django session named by the session cookie
    (``channels.auth.get_user``, as Channels' ``AuthMiddlewareStack`` does), else
    ``AnonymousUser``. A refused token leaves an ``AnonymousUser``, ``scope["auth_error"]``
    set to ``token_expired`` or ``token_invalid`` and ``scope["auth_error_detail"]`` to a
    sentence; the consumer closes with 4001. A signed-in socket gets ``scope[SIGN_IN_KEY]``,
    its ``SignIn`` (session key or token fingerprint), so that a logout, a password change,
    a deactivation or a deletion can close it (``realtime.signout``). Also leaves the
    server's own ``send`` under ``scope[SERVER_SEND_KEY]``: the consumer's outbox writes
    frames with it.

    Why not ``AuthMiddlewareStack``: its three layers (cookies, session, auth) each copy the
    scope, and their frames, a lazy session and a lazy user live as long as the socket:
    about 4 KiB of every idle socket (bench S4). No WebSocket consumer here writes to the
    session, so ``scope["session"]`` is not kept, and ``send`` needs no wrapper that saves it.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        scope = {**scope, SERVER_SEND_KEY: send}
        token = token_from_scope(scope)
        at = time.monotonic()
        if token is not None:
            try:
                user, claim = await database_sync_to_async(verify_token)(token)
            except TokenError as exc:
                scope["user"] = AnonymousUser()
                scope["auth_error"] = exc.code
                scope["auth_error_detail"] = exc.detail
            else:
                scope["user"] = user
                scope[SIGN_IN_KEY] = SignIn(user.pk, "token", password=claim, at=at)
        else:
            session_key = session_key_from_scope(scope)
            scope["user"] = await session_user(session_key)
            if scope["user"].is_authenticated:
                scope[SIGN_IN_KEY] = SignIn(
                    scope["user"].pk, "session", session_key=session_key, at=at
                )
        # This frame lives as long as the socket: do not keep the token (and its string) in it.
        del token
        return await self.inner(scope, receive, send)


def session_key_from_scope(scope: dict[str, Any]) -> str | None:
    """The session key the scope's session cookie names, or None."""
    for name, value in scope.get("headers") or ():
        if name == b"cookie":
            key = parse_cookie(value.decode("latin-1")).get(settings.SESSION_COOKIE_NAME)
            return key or None
    return None


async def session_user(session_key: str | None) -> Any:
    """The user of the Django session ``session_key`` (``session_key_from_scope``), else
    ``AnonymousUser`` (no database query when there is no key)."""
    if not session_key:
        return AnonymousUser()
    engine = import_module(settings.SESSION_ENGINE)
    return await get_user({"session": engine.SessionStore(session_key)})
