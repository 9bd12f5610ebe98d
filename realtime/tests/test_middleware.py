"""The socket's sign-in (realtime/middleware.py): a JWT from the subprotocol or ``?token=``,
else the session cookie; a refused token leaves ``auth_error``; the token is not kept."""

from __future__ import annotations

import inspect
import time
from typing import Any

import jwt
import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User

from realtime.middleware import (
    SERVER_SEND_KEY,
    SIGN_IN_KEY,
    SocketAuthMiddleware,
    token_from_scope,
)
from realtime.tokens import ALGORITHM, ISSUER, issue_token, password_fingerprint

from .conftest import bearer, communicator, receive, send, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


async def test_session_cookie_signs_the_socket_in(alice: User) -> None:
    comm = communicator(cookie=await database_sync_to_async(session_cookie)(alice))
    assert (await comm.connect())[0]
    await send(comm, {"type": "subscribe", "stream": "test:mine:alice"})
    assert (await receive(comm))["type"] == "ack"
    await send(comm, {"type": "subscribe", "stream": "test:mine:bob"})
    assert (await receive(comm))["code"] == "forbidden"
    await comm.disconnect()


async def test_jwt_in_subprotocol_signs_in_and_the_token_is_not_echoed(alice: User) -> None:
    comm = communicator(subprotocols=bearer(alice))
    connected, subprotocol = await comm.connect()
    assert connected
    assert subprotocol == "townsquare"
    await send(comm, {"type": "subscribe", "stream": "test:mine:alice"})
    assert (await receive(comm))["type"] == "ack"
    await comm.disconnect()


async def test_jwt_in_query_string_signs_in(alice: User) -> None:
    token = bearer(alice)[1].removeprefix("bearer.")
    comm = communicator(f"/ws/?token={token}")
    assert (await comm.connect())[0]
    await send(comm, {"type": "subscribe", "stream": "test:mine:alice"})
    assert (await receive(comm))["type"] == "ack"
    await comm.disconnect()



# --- the middleware alone ------------------------------------------------------------------


class Inner:
    """The app behind the middleware: records the scope it got and the locals of the
    middleware's frame while it runs (what the socket's lifetime keeps alive)."""

    def __init__(self) -> None:
        self.scope: dict[str, Any] = {}
        self.caller: str = ""
        self.caller_locals: dict[str, Any] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope
        frame = inspect.currentframe()
        caller = frame.f_back if frame is not None else None
        assert caller is not None
        self.caller = caller.f_code.co_qualname
        self.caller_locals = dict(caller.f_locals)


def socket_scope(
    *, subprotocols: list[str] | None = None, query: bytes = b"", cookie: str | None = None
) -> dict[str, Any]:
    headers = [(b"cookie", cookie.encode())] if cookie else []
    return {
        "type": "websocket",
        "path": "/ws/",
        "query_string": query,
        "headers": headers,
        "subprotocols": subprotocols or [],
    }


async def server_send(message: dict[str, Any]) -> None:
    raise AssertionError("the middleware sends nothing itself")


async def no_receive() -> dict[str, Any]:
    raise AssertionError("the middleware receives nothing itself")


async def signed_in(scope: dict[str, Any]) -> Inner:
    inner = Inner()
    await SocketAuthMiddleware(inner)(scope, no_receive, server_send)
    return inner


@pytest.mark.parametrize(
    ("scope", "token"),
    [
        (socket_scope(subprotocols=["townsquare", "bearer.abc"]), "abc"),
        (socket_scope(query=b"token=xyz&x=1"), "xyz"),
        (socket_scope(subprotocols=["townsquare", "bearer.sub"], query=b"token=qs"), "sub"),
        (socket_scope(subprotocols=["townsquare"]), None),
        (socket_scope(query=b"tokens=1"), None),
        (socket_scope(query=b"token="), None),
        (socket_scope(), None),
    ],
)
def test_the_token_comes_from_the_subprotocol_first_then_the_query(
    scope: dict[str, Any], token: str | None
) -> None:
    assert token_from_scope(scope) == token


async def test_a_valid_token_signs_in_and_is_not_kept(alice: User) -> None:
    token, _ = await database_sync_to_async(issue_token)(alice)
    scope = socket_scope(subprotocols=["townsquare", f"bearer.{token}"])
    inner = await signed_in(scope)
    assert inner.scope["user"] == alice
    assert "auth_error" not in inner.scope and "auth_error_detail" not in inner.scope
    assert inner.scope[SERVER_SEND_KEY] is server_send
    assert "user" not in scope  # the server's scope is copied, not changed
    # Nothing the middleware added holds the token, and its frame, alive as long as the
    # socket, no longer does either.
    added = {k: v for k, v in inner.scope.items() if k not in scope}
    assert set(added) == {"user", SERVER_SEND_KEY, SIGN_IN_KEY}
    assert all(token not in repr(v) for v in added.values())
    # How it signed in, for realtime.signout: the token's password fingerprint, no session.
    sign_in = added[SIGN_IN_KEY]
    assert (sign_in.user_id, sign_in.method, sign_in.session_key) == (alice.pk, "token", None)
    assert sign_in.password == password_fingerprint(alice)
    assert inner.caller == "SocketAuthMiddleware.__call__"
    assert "token" not in inner.caller_locals
    assert all(not (isinstance(v, str) and token in v) for v in inner.caller_locals.values())


@pytest.mark.parametrize(
    ("exp_offset", "key", "code", "detail"),
    [
        (-10, None, "token_expired", "the token has expired"),
        (60, "not-the-secret-but-long-enough-for-hs256-0123456789", "token_invalid",
         "the token is not valid"),
    ],
)
async def test_a_refused_token_leaves_anonymous_and_auth_error(
    alice: User, exp_offset: int, key: str | None, code: str, detail: str
) -> None:
    now = int(time.time())
    claims = {"sub": str(alice.pk), "iat": now, "exp": now + exp_offset, "iss": ISSUER,
              "typ": "access"}
    token = jwt.encode(claims, key or settings.SECRET_KEY, algorithm=ALGORITHM)
    cookie = await database_sync_to_async(session_cookie)(alice)
    # A refused token is not rescued by a valid session: the socket asked for the token.
    inner = await signed_in(socket_scope(query=f"token={token}".encode(), cookie=cookie))
    assert isinstance(inner.scope["user"], AnonymousUser)
    assert (inner.scope["auth_error"], inner.scope["auth_error_detail"]) == (code, detail)
    assert "token" not in inner.caller_locals


async def test_an_inactive_users_token_is_refused(alice: User) -> None:
    token, _ = await database_sync_to_async(issue_token)(alice)
    alice.is_active = False
    await alice.asave(update_fields=["is_active"])
    inner = await signed_in(socket_scope(subprotocols=["townsquare", f"bearer.{token}"]))
    assert isinstance(inner.scope["user"], AnonymousUser)
    assert inner.scope["auth_error"] == "token_invalid"


async def test_without_a_token_the_session_cookie_decides(alice: User) -> None:
    cookie = await database_sync_to_async(session_cookie)(alice)
    inner = await signed_in(socket_scope(cookie=cookie))
    assert inner.scope["user"] == alice
    assert "auth_error" not in inner.scope
    for scope in (socket_scope(), socket_scope(cookie="sessionid=no-such-session")):
        inner = await signed_in(scope)
        assert isinstance(inner.scope["user"], AnonymousUser)
        assert "auth_error" not in inner.scope
