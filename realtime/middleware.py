"""ASGI middleware of the WebSocket stack: the server's own ``send`` for the fan-out, and
sign-in by JWT from a subprotocol or the query string."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.contrib.auth.models import AnonymousUser

from .tokens import TokenError, user_from_token

#: The subprotocol a browser offers beside ``bearer.<token>``; the server accepts with it,
#: so the token itself is never echoed back.
SUBPROTOCOL = "townsquare"
BEARER_PREFIX = "bearer."
#: Scope key under which ``ServerSendMiddleware`` leaves the server's ``send`` callable.
SERVER_SEND_KEY = "townsquare.server_send"


class ServerSendMiddleware:
    """Outermost WebSocket middleware: keep the server's ``send`` in the scope.

    Channels' ``SessionMiddleware`` wraps ``send`` to save a modified session on
    ``http.response.start``; a WebSocket never sends one, so after the handshake the wrapper
    only costs a coroutine and two attribute reads on every frame. The consumer's outbox
    writes its frames with ``scope[SERVER_SEND_KEY]`` instead (the handshake and a refusal
    still go through the wrapped ``send``).
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        return await self.inner({**scope, SERVER_SEND_KEY: send}, receive, send)


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


class TokenAuthMiddleware(BaseMiddleware):
    """Set ``scope["user"]`` from a JWT when the socket offers one.

    Runs inside Channels' session ``AuthMiddlewareStack``: a token, when present, decides the
    user. A refused token leaves an ``AnonymousUser``, ``scope["auth_error"]`` set to
    ``token_expired`` or ``token_invalid`` and ``scope["auth_error_detail"]`` to a sentence;
    the consumer closes with 4001.
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        token = token_from_scope(scope) if scope.get("type") == "websocket" else None
        if token is not None:
            scope = dict(scope)
            try:
                scope["user"] = await database_sync_to_async(user_from_token)(token)
            except TokenError as exc:
                scope["user"] = AnonymousUser()
                scope["auth_error"] = exc.code
                scope["auth_error_detail"] = exc.detail
        return await super().__call__(scope, receive, send)
