"""Sockets end with the sign-in (realtime.signout): logout, password change, deactivation and
deletion close the sockets they ended with 4002, after an ``unauthenticated`` error frame."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import HASH_SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client

from realtime import actions, signout
from realtime.actions import ActionContext
from realtime.middleware import SignIn
from realtime.protocol import CloseCode

from .conftest import bearer, communicator, receive, send

pytestmark = pytest.mark.django_db(transaction=True)


def signed_in_client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def cookie_of(client: Client) -> str:
    return f"sessionid={client.cookies['sessionid'].value}"


async def opened(
    path: str = "/ws/", *, cookie: str | None = None, subprotocols: list[str] | None = None
) -> WebsocketCommunicator:
    comm = communicator(path, cookie=cookie, subprotocols=subprotocols)
    connected, _ = await comm.connect()
    assert connected
    return comm


async def closed_with_4002(comm: WebsocketCommunicator, reason: str) -> None:
    """The socket gets ``error {unauthenticated, reason}`` and then close 4002."""
    error = await receive(comm)
    assert (error["type"], error["code"], error["reason"]) == ("error", "unauthenticated", reason)
    assert error["detail"] == signout.DETAILS[reason]
    close = await comm.receive_output(timeout=2)
    assert (close["type"], close["code"], close["reason"]) == (
        "websocket.close",
        4002,
        "signed out",
    )


async def still_open(comm: WebsocketCommunicator) -> None:
    """Answers a ping: neither closed nor told anything."""
    await send(comm, {"type": "ping", "ref": "alive"})
    pong = await receive(comm)
    assert (pong["type"], pong["ref"]) == ("pong", "alive")


def test_the_close_code_is_4002_and_final_in_the_bundled_client() -> None:
    from pathlib import Path

    assert CloseCode.SIGNED_OUT == 4002
    client_js = Path(signout.__file__).parent / "static" / "realtime" / "client.js"
    assert "const FINAL_CLOSE_CODES = new Set([4001, 4002, 4003]);" in client_js.read_text()


async def test_logout_closes_only_that_sessions_sockets(alice: User) -> None:
    first = await database_sync_to_async(signed_in_client)(alice)
    second = await database_sync_to_async(signed_in_client)(alice)
    a1 = await opened(cookie=cookie_of(first))
    a2 = await opened(cookie=cookie_of(first))
    other = await opened(cookie=cookie_of(second))
    token = await opened(subprotocols=await database_sync_to_async(bearer)(alice))
    assert signout.local_sockets(alice.pk) == 4

    response = await database_sync_to_async(first.post)("/accounts/logout/")
    assert response.status_code in (200, 302)

    await closed_with_4002(a1, "logout")
    await closed_with_4002(a2, "logout")
    await still_open(other)
    await still_open(token)
    for comm in (a1, a2, other, token):
        await comm.disconnect()
    assert signout.local_sockets(alice.pk) == 0


def change_password(user: User, *, keep: Client | None = None) -> None:
    """``set_password`` and save; with ``keep``, move that client's session to a new key
    with the new hash, as Django's ``update_session_auth_hash`` does after a password form."""
    user.set_password("pw-alice-changed")
    user.save()
    if keep is not None:
        session = SessionStore(keep.cookies["sessionid"].value)
        session.load()
        session.cycle_key()
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.save()


async def test_a_password_change_closes_other_sessions_and_older_tokens(alice: User) -> None:
    changer = await database_sync_to_async(signed_in_client)(alice)
    other = await database_sync_to_async(signed_in_client)(alice)
    kept = await opened(cookie=cookie_of(changer))
    other_socket = await opened(cookie=cookie_of(other))
    old_token = await opened(subprotocols=await database_sync_to_async(bearer)(alice))

    started = time.monotonic()
    await database_sync_to_async(change_password)(alice, keep=changer)

    await closed_with_4002(old_token, "password")
    await closed_with_4002(other_socket, "password")
    assert time.monotonic() - started < 2
    # The session that changed the password stays signed in (a new key, the new hash), and so
    # do its sockets; a token issued after the change opens a socket that stays.
    await still_open(kept)
    new_token = await opened(subprotocols=await database_sync_to_async(bearer)(alice))
    await still_open(new_token)
    for comm in (other_socket, old_token):
        await comm.disconnect()
    assert signout.local_sockets(alice.pk) == 2
    for comm in (kept, new_token):
        await comm.disconnect()
    assert signout.local_sockets(alice.pk) == 0


async def test_a_save_that_keeps_the_password_closes_nothing(alice: User) -> None:
    client = await database_sync_to_async(signed_in_client)(alice)
    session = await opened(cookie=cookie_of(client))
    token = await opened(subprotocols=await database_sync_to_async(bearer)(alice))
    alice.first_name = "Alice"
    await alice.asave()
    await still_open(session)
    await still_open(token)
    assert await session.receive_nothing(timeout=signout.SESSION_SETTLE_SECONDS + 0.2)
    for comm in (session, token):
        await comm.disconnect()


@pytest.mark.parametrize(("end", "reason"), [("deactivate", "inactive"), ("delete", "deleted")])
async def test_deactivation_and_deletion_close_every_socket_of_the_user(
    alice: User, django_user_model: type[User], end: str, reason: str
) -> None:
    bob = await django_user_model.objects.acreate_user("bob", password="pw-bob-123")
    client = await database_sync_to_async(signed_in_client)(alice)
    alice_bearer = await database_sync_to_async(bearer)(alice)
    token = alice_bearer[1].removeprefix("bearer.")
    sockets = [
        await opened(cookie=cookie_of(client)),
        await opened(subprotocols=alice_bearer),
        # the seed endpoints: seed 001's notification count (token) and seed 000's feed
        await opened(f"/notification/count?token={token}"),
        await opened("/ws/test/", cookie=cookie_of(client)),
    ]
    bob_socket = await opened(subprotocols=await database_sync_to_async(bearer)(bob))
    # The seed endpoints greet first; read what they sent before the sign-out.
    assert await sockets[2].receive_from(timeout=2)
    assert await sockets[3].receive_from(timeout=2)

    started = time.monotonic()
    if end == "deactivate":
        alice.is_active = False
        await alice.asave()
    else:
        await alice.adelete()
    for comm in sockets[:2]:
        await closed_with_4002(comm, reason)
    for comm in sockets[2:]:  # seed endpoints: no error frame in their protocols
        close = await comm.receive_output(timeout=2)
        assert (close["type"], close["code"]) == ("websocket.close", 4002)
    assert time.monotonic() - started < 2
    await still_open(bob_socket)
    for comm in [*sockets, bob_socket]:
        await comm.disconnect()


async def test_frames_after_the_sign_out_are_not_handled(alice: User) -> None:
    handled: list[Any] = []

    @actions.action("test.write")
    async def write(ctx: ActionContext, frame: dict[str, Any]) -> dict[str, Any]:
        handled.append(frame["n"])
        return {}

    comm = await opened(subprotocols=await database_sync_to_async(bearer)(alice))
    await send(comm, {"type": "test.write", "n": 1, "ref": 1})
    assert (await receive(comm))["type"] == "ack"
    alice.is_active = False
    await alice.asave(update_fields=["is_active"])
    await closed_with_4002(comm, "inactive")
    # The client has not finished the close handshake and writes on: nothing is handled.
    await send(comm, {"type": "test.write", "n": 2, "ref": 2})
    assert await comm.receive_nothing(timeout=0.2)
    assert handled == [1]
    await comm.disconnect()


async def test_a_last_login_update_reads_nothing_and_ends_nothing(
    alice: User, django_assert_num_queries: Callable[..., Any]
) -> None:
    comm = await opened(subprotocols=await database_sync_to_async(bearer)(alice))

    def log_in_again() -> None:
        with django_assert_num_queries(1):  # the UPDATE only: no read of the stored row
            alice.save(update_fields=["last_login"])

    await database_sync_to_async(log_in_again)()
    await still_open(comm)
    await comm.disconnect()


class FakeSocket:
    def __init__(self, sign_in: SignIn) -> None:
        self.sign_in = sign_in
        self.ended: list[str] = []

    def end_sign_in(self, reason: str, detail: str) -> None:
        self.ended.append(reason)


async def test_a_sign_out_heard_between_the_sign_in_and_the_registration_ends_the_socket() -> None:
    holder = FakeSocket(SignIn(7, "token", password="x", at=time.monotonic()))
    await signout.register(holder)  # the process now listens to sys:signout
    late = FakeSocket(SignIn(8, "session", session_key="k8", at=time.monotonic()))
    await signout.aannounce(signout.SignOut(user=8, reason="logout", session="k8"))
    await signout.aannounce(signout.SignOut(user=8, reason="logout", session="other"))
    # Credentials read after the sign-out was heard: not ended by it.
    fresh = FakeSocket(SignIn(8, "session", session_key="k8", at=time.monotonic()))
    await signout.register(late)
    await signout.register(fresh)
    assert (late.ended, fresh.ended, holder.ended) == (["logout"], [], [])
    for socket in (holder, late, fresh):
        await signout.unregister(socket)
    assert signout.local_sockets(8) == 0
