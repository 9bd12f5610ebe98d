"""Sockets end with the sign-in: a logout, a password change, a deactivation or a deletion
closes the sockets it ended, on every worker, with close code 4002 (``CloseCode.SIGNED_OUT``).

Django ends a sign-in for HTTP at the next request (the session is gone, its auth hash no
longer matches, the user is inactive or gone); a socket makes no next request, so the end
is pushed to it:

1. ``SocketAuthMiddleware`` remembers how each socket signed in (``middleware.SignIn``: the
   session key, or the token's ``pwd`` claim, and when the credentials were read).
2. Every accepted signed-in socket is ``register``ed in its event loop's ``_Index`` (user id →
   sockets); the index listens, through the hub, to the internal stream ``sys:signout``
   (``frames.SIGNOUT_STREAM``) while it holds a socket (and, in a server, for the process's
   life: the ``signout-listener`` service, so a worker hears sign-outs before its first
   socket).
3. ``realtime.signout_receivers`` turn Django's signals into ``publish.sign_out(SignOut)``
   after commit; the sign-out crosses the channel layer once per process.
4. Each process's index ends the matching local sockets (``SignedInSocket.end_sign_in``):

   =========== ==============================================================================
   reason      sockets ended
   =========== ==============================================================================
   logout      the sockets signed in by that session (``session`` = its key), as Django's
               logout ends only that session
   password    token sockets whose ``pwd`` claim is not the new fingerprint (tokens issued
               before the change stop verifying: ``tokens.verify_token``); session sockets
               whose session Django would now refuse (its stored auth hash is not the
               user's). The session that made the change (``update_session_auth_hash`` gives
               it a new key and the new hash) keeps its sockets: its old key no longer
               exists, and a missing session is left alone. Session sockets are checked
               ``SESSION_SETTLE_SECONDS`` after the sign-out is heard, so that the request
               has moved its session to the new key by then.
   inactive    every socket of the user (session, token, seed endpoints)
   deleted     every socket of the user
   =========== ==============================================================================

A socket whose credentials were read before a sign-out was heard here, but registered after
it, is checked against the sign-outs of the last ``RECENT_SECONDS`` when it registers, so the
window between reading the credentials and joining the index loses nothing.

Limits: a sign-out published while the channel layer is down reaches only the publishing
process (logged, ``townsquare_channel_layer_failures_total``); with the in-memory layer a
change made in another process (a management command) reaches no server; writes that fire
no model signal (``QuerySet.update``, raw SQL) close nothing.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import time
import weakref
from collections import deque
from collections.abc import Iterable
from importlib import import_module
from typing import Literal, Protocol, TypedDict

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare

from .frames import SIGNOUT_STREAM, Frame
from .hub import Hub, Listener, get_hub
from .middleware import SignIn
from .publish import asign_out, sign_out

logger = logging.getLogger(__name__)

Reason = Literal["logout", "password", "inactive", "deleted"]

#: The ``detail`` each reason gives the client (the ``error`` frame before close 4002).
DETAILS: dict[str, str] = {
    "logout": "signed out",
    "password": "the password changed; sign in again",
    "inactive": "the account was deactivated",
    "deleted": "the account was deleted",
}
#: Seconds a process remembers the sign-outs it heard (for sockets registering late).
RECENT_SECONDS = 10.0
#: Seconds between hearing a password change and checking the user's session sockets.
SESSION_SETTLE_SECONDS = 0.3


class SignOut(TypedDict, total=False):
    """A sign-out as it crosses the layer: ``user`` and ``reason`` always; ``session`` (the
    key) for ``logout``; ``password`` (the new ``tokens.password_fingerprint``) for
    ``password``."""

    user: int
    reason: Reason
    session: str
    password: str


class SignedInSocket(Protocol):
    """What the index uses of a socket (``RealtimeConsumer``)."""

    @property
    def sign_in(self) -> SignIn | None:
        """How the socket signed in (None: anonymous; never registered)."""

    def end_sign_in(self, reason: str, detail: str) -> None:
        """Stop handling the socket's frames and close it with 4002; must not await."""


class _Index(Listener):
    """One event loop's signed-in sockets by user, listening to ``sys:signout``."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.sockets: dict[int, set[SignedInSocket]] = {}
        #: (monotonic time heard, sign-out), oldest first, at most RECENT_SECONDS old.
        self.recent: deque[tuple[float, SignOut]] = deque()
        #: Services keeping the index on the stream without a socket (``run_listener``).
        self.holders = 0
        self._checks: set[asyncio.Task[None]] = set()

    def deliver(self, frame: Frame) -> None:
        """A frame of ``sys:signout``: end the matching local sockets."""
        data = frame.payload.get("data")
        if isinstance(data, dict) and type(data.get("user")) is int:
            self.heard(SignOut(**data))

    def heard(self, message: SignOut) -> None:
        """Remember ``message`` a while and end the local sockets it matches."""
        now = time.monotonic()
        recent = self.recent
        recent.append((now, message))
        while recent and now - recent[0][0] > RECENT_SECONDS:
            recent.popleft()
        self.apply(message, list(self.sockets.get(message["user"], ())))

    def apply(self, message: SignOut, sockets: Iterable[SignedInSocket]) -> None:
        """End those of ``sockets`` (the user's) that ``message`` ended."""
        reason = message.get("reason")
        detail = DETAILS.get(str(reason), "signed out")
        sessions: list[SignedInSocket] = []
        for socket in sockets:
            sign_in = socket.sign_in
            if sign_in is None:
                continue
            if reason in ("inactive", "deleted"):
                socket.end_sign_in(str(reason), detail)
            elif reason == "logout":
                if sign_in.method == "session" and sign_in.session_key == message.get("session"):
                    socket.end_sign_in("logout", detail)
            elif reason == "password":
                if sign_in.method == "token":
                    if sign_in.password != message.get("password"):
                        socket.end_sign_in("password", detail)
                else:
                    sessions.append(socket)
        if sessions:
            # A fresh context: this may run in whatever task delivered the frame (one that
            # works for a sync view's thread, say), and the check outlives it.
            task = asyncio.get_running_loop().create_task(
                self._check_sessions(message["user"], sessions, detail),
                context=contextvars.Context(),
            )
            self._checks.add(task)
            task.add_done_callback(self._checks.discard)

    async def _check_sessions(
        self, user_id: int, sockets: list[SignedInSocket], detail: str
    ) -> None:
        # Give the request that changed the password time to move its own session to the
        # new key (update_session_auth_hash), then ask the store which keys Django refuses.
        await asyncio.sleep(SESSION_SETTLE_SECONDS)
        keys = {s.sign_in.session_key for s in sockets if s.sign_in and s.sign_in.session_key}
        try:
            refused = await database_sync_to_async(sessions_refused)(user_id, keys)
        except Exception as exc:
            logger.warning("event=signout.check_failed user=%s error=%r", user_id, exc)
            return
        for socket in sockets:
            sign_in = socket.sign_in
            if sign_in is not None and sign_in.session_key in refused:
                socket.end_sign_in("password", detail)


def sessions_refused(user_id: int, keys: Iterable[str]) -> set[str]:
    """Of the session ``keys`` (sync: reads the session store), those that would no longer
    sign ``user_id`` in: their stored auth hash matches neither the user's
    ``get_session_auth_hash()`` nor a fallback one (as ``django.contrib.auth.get_user``), or
    they name another user, or the user is gone. A key the store no longer has is not
    refused: it is either ended already (a logout, which closes its own sockets) or was
    moved to a new key by ``update_session_auth_hash``, whose session stays signed in."""
    engine = import_module(settings.SESSION_ENGINE)
    user = get_user_model()._default_manager.filter(pk=user_id).first()
    hashes: list[str] = []
    if user is not None:
        hashes.append(user.get_session_auth_hash())
        hashes.extend(user.get_session_auth_fallback_hash())
    refused = set()
    for key in keys:
        store = engine.SessionStore(key)
        data = store.load()
        if store.session_key is None:  # no such session (the store forgets the key)
            continue
        stored = data.get(HASH_SESSION_KEY)
        same_user = str(data.get(SESSION_KEY)) == str(user_id)
        if not (
            same_user
            and isinstance(stored, str)
            and any(constant_time_compare(stored, h) for h in hashes)
        ):
            refused.add(key)
    return refused


_indexes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Index] = (
    weakref.WeakKeyDictionary()
)


def _index() -> _Index:
    loop = asyncio.get_running_loop()
    index = _indexes.get(loop)
    if index is None:
        index = _indexes[loop] = _Index(get_hub())
    return index


async def _listen(index: _Index) -> bool:
    try:
        await index.hub.subscribe(SIGNOUT_STREAM, index)
    except Exception as exc:
        # The socket works; sign-outs reach this process again once a join succeeds.
        logger.warning("event=signout.listen_failed error=%r", exc)
        return False
    return True


async def register(socket: SignedInSocket) -> None:
    """Index an accepted signed-in socket (and end it at once if a sign-out heard since its
    credentials were read matches it). Every registered socket must be ``unregister``ed."""
    sign_in = socket.sign_in
    if sign_in is None:
        return
    index = _index()
    index.sockets.setdefault(sign_in.user_id, set()).add(socket)
    await _listen(index)
    user_id = sign_in.user_id
    missed = [m for heard, m in index.recent if heard >= sign_in.at and m["user"] == user_id]
    for message in missed:
        index.apply(message, [socket])


async def unregister(socket: SignedInSocket) -> None:
    """Forget a socket ``register`` indexed; the last one out stops the listening (unless a
    service holds it)."""
    sign_in = socket.sign_in
    index = _indexes.get(asyncio.get_running_loop())
    if sign_in is None or index is None:
        return
    sockets = index.sockets.get(sign_in.user_id)
    if sockets is not None:
        sockets.discard(socket)
        if not sockets:
            del index.sockets[sign_in.user_id]
    if not index.sockets and not index.holders:
        await index.hub.unsubscribe(SIGNOUT_STREAM, index)


def local_sockets(user_id: int) -> int:
    """Signed-in sockets of ``user_id`` indexed in this event loop (tests, diagnostics)."""
    index = _indexes.get(asyncio.get_running_loop())
    return len(index.sockets.get(user_id, ())) if index is not None else 0


async def run_listener() -> None:
    """Background service (every process): listen to ``sys:signout`` from startup on, so a
    sign-out made while a worker's first socket is signing in is not missed by it."""
    index = _index()
    index.holders += 1
    try:
        for delay in itertools.chain((0.1, 0.5), itertools.repeat(1.0)):
            if await _listen(index):
                break
            await asyncio.sleep(delay)
        await asyncio.Event().wait()
    finally:
        index.holders -= 1
        if not index.sockets and not index.holders:
            await index.hub.unsubscribe(SIGNOUT_STREAM, index)


def announce(message: SignOut) -> bool:
    """Publish a sign-out to every worker (synchronous code; ``publish``'s threading rules).
    Returns False when the channel layer failed (logged)."""
    return sign_out(dict(message))


async def aannounce(message: SignOut) -> bool:
    """``announce`` from async code."""
    return await asign_out(dict(message))
