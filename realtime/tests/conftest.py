"""Fixtures for the core's tests: test-only stream kinds and socket helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AbstractBaseUser, User
from django.test import Client

from realtime import actions, events, registry
from realtime.protocol import ErrorCode, ProtocolError
from realtime.registry import AnyUser, Event
from realtime.tokens import issue_token

ORIGIN = b"http://127.0.0.1"

#: Events the core's tests publish on the test kinds (``test.line`` is durable, on ``test:log``).
TEST_EVENTS = ("test.snapshot", "test.changed", "test.lost", "test.back", "n", "e")

#: The durable test stream's log: offset → text. Tests fill it.
LOG: dict[int, str] = {}


def _authorize_open(user: AnyUser, key: str) -> None:
    return None


def _authorize_members(user: AnyUser, key: str) -> None:
    if not user.is_authenticated:
        raise ProtocolError(ErrorCode.UNAUTHENTICATED, "sign in first")
    if user.get_username() != key:
        raise ProtocolError(ErrorCode.FORBIDDEN, "not yours")


def _replay_log(key: str, since: int, limit: int) -> list[Event]:
    return [Event("test.line", {"text": LOG[o]}, o) for o in sorted(LOG) if o > since][:limit]


def _snapshot_open(user: AnyUser, key: str) -> list[Event]:
    return [Event("test.snapshot", {"key": key})]


@pytest.fixture(autouse=True)
def registries() -> Iterator[None]:
    """Stream kinds, actions and event declarations a test registers are gone after it, and
    those it replaced are back (``registry.override``, ``actions.override``,
    ``events.override``)."""
    with registry.override(), actions.override(), events.override():
        yield


@pytest.fixture(autouse=True)
def test_streams(registries: None) -> Iterator[None]:
    """Register ``test:open`` (anyone; snapshot), ``test:mine:<username>`` (only that user)
    and ``test:log`` (durable; replays LOG)."""
    registry.register_stream("test:open", authorize=_authorize_open, snapshot=_snapshot_open)
    registry.register_stream("test:mine", authorize=_authorize_members)
    registry.register_stream(
        "test:log",
        authorize=_authorize_open,
        replay=_replay_log,
        head=lambda key: max(LOG, default=0),
    )
    # Their events, declared like an app's (validation is on in every test): any object,
    # with or without an offset (the core's tests publish both on one kind).
    declared = [("test:log", "test.line", True)] + [
        (kind, name, None)
        for kind in ("test:open", "test:mine", "test:log")
        for name in TEST_EVENTS
    ]
    for kind, name, durable in declared:
        events.declare(kind, name, dict[str, Any], durable=durable)
    LOG.clear()
    yield
    LOG.clear()
    for kind, name, _ in declared:
        events.undeclare(kind, name)


def communicator(
    path: str = "/ws/",
    *,
    origin: bytes | None = ORIGIN,
    cookie: str | None = None,
    subprotocols: list[str] | None = None,
    app: Any = None,
) -> WebsocketCommunicator:
    from townsquare.asgi import application

    if app is not None:
        application = app

    headers: list[tuple[bytes, bytes]] = []
    if origin is not None:
        headers.append((b"origin", origin))
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, path, headers=headers, subprotocols=subprotocols)


def session_cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def bearer(user: AbstractBaseUser) -> list[str]:
    token, _ = issue_token(user)
    return ["townsquare", f"bearer.{token}"]


@pytest.fixture
def alice(django_user_model: type[User]) -> User:
    """A signed-up user ``alice`` (password ``pw-alice-123``)."""
    return django_user_model.objects.create_user("alice", password="pw-alice-123")


@pytest.fixture
async def ws() -> AsyncIterator[WebsocketCommunicator]:
    """An anonymous socket on /ws/, connected."""
    comm = communicator()
    connected, _ = await comm.connect()
    assert connected
    yield comm
    await comm.disconnect()


class StalledServer:
    """The project's ASGI app behind a server whose socket can stop writing: while
    ``flowing`` is clear, each ``send`` waits, as uvicorn's does while the transport is
    paused (a client that stopped reading and filled the kernel's buffers)."""

    def __init__(self) -> None:
        from townsquare.asgi import application

        self.app = application
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def paused_send(message: dict[str, Any]) -> None:
            await self.flowing.wait()
            await send(message)

        await self.app(scope, receive, paused_send)


async def send(comm: WebsocketCommunicator, frame: dict[str, Any]) -> None:
    await comm.send_json_to(frame)


async def receive(comm: WebsocketCommunicator, timeout: float = 2) -> dict[str, Any]:
    frame: dict[str, Any] = await comm.receive_json_from(timeout=timeout)
    return frame
