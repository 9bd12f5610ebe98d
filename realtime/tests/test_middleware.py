"""The socket's sign-in (realtime/middleware.py): a JWT from the subprotocol or ``?token=``,
else the session cookie; a refused token leaves ``auth_error``; the token is not kept."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

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
