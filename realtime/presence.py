"""Presence: who has a socket on a stream right now, across every worker.

A stream kind registered with ``presence=True`` gets, for signed-in subscribers:

- ``presence.state {users: [{id, username}]}`` as a snapshot on subscribe;
- ``presence.join {user}`` when a user's first socket (on any worker) joins the stream, and
  ``presence.leave {user}`` when their last one leaves — several tabs count once;
- ``presence.typing {user}`` when a subscriber sends ``typing {stream}`` (at most one per
  ``TYPING_MIN_INTERVAL`` per socket and stream; ephemeral, never stored).

Each socket's entry lives in a store with an expiry (``PRESENCE_TTL_SECONDS``). The worker
that holds the socket renews its entries every third of the ttl; a worker killed without
running ``disconnect`` stops renewing, and the leader's reaper removes the expired entries and
announces ``presence.leave`` — so a dead worker's users are shown offline within about
``PRESENCE_TTL_SECONDS`` plus one reaper interval. The usual design: a sorted set per stream
scored by expiry, with heartbeats.

A renewal also puts back an entry the store lost while its socket is still open (Redis
restarted empty, or the reaper took it while this worker's loop stalled past the ttl), and
announces ``presence.join`` when that makes the user present again. In one process, arrivals,
departures and renewals are serialized (``_writes``), so a renewal never resurrects an entry
that its socket just removed, nor swallows the ``presence.join`` of one just arriving.

Stores: Redis (``RedisStore``; atomic Lua scripts decide the 0↔1 transitions across workers)
or this process's memory (``MemoryStore``), side by side below; the setting
``PRESENCE_BACKEND`` names one by dotted path, and by default it is Redis when ``REDIS_URL``
is set, else memory (``realtime.conf.backend_class``).

Presence is best effort and never holds a subscribe up: every store call is bounded by
``REDIS_TIMEOUT_SECONDS`` (``realtime.conf.redis_timeout``), lock wait included. A socket whose
arrival the store did not take (Redis hung or down) keeps its local entry, marked
``pending``: the next heartbeat that reaches the store puts it back, announces
``presence.join`` for its user, and hands the socket the fresh ``presence.state``
(``restore_later``). See docs/architecture.md, "Channel-layer outages".
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .conf import async_redis, backend_class, redis_timeout, require_redis_location, rt_settings
from .protocol import ErrorCode, ProtocolError
from .publish import apublish

logger = logging.getLogger(__name__)

User = dict[str, Any]  # {"id": int, "username": str}

_JOIN = """
local prefix = ARGV[3]
local had = false
for _, m in ipairs(redis.call('zrange', KEYS[1], 0, -1)) do
    if string.sub(m, 1, #prefix) == prefix then had = true break end
end
redis.call('zadd', KEYS[1], ARGV[2], ARGV[1])
redis.call('sadd', KEYS[2], ARGV[4])
if had then return 0 end
return 1
"""
_LEAVE = """
if redis.call('zrem', KEYS[1], ARGV[1]) == 0 then return 0 end
local prefix = ARGV[2]
for _, m in ipairs(redis.call('zrange', KEYS[1], 0, -1)) do
    if string.sub(m, 1, #prefix) == prefix then return 0 end
end
return 1
"""
_RENEW = """
if redis.call('zscore', KEYS[1], ARGV[1]) then
    redis.call('zadd', KEYS[1], ARGV[2], ARGV[1])
    return 0
end
local prefix = ARGV[3]
local had = false
for _, m in ipairs(redis.call('zrange', KEYS[1], 0, -1)) do
    if string.sub(m, 1, #prefix) == prefix then had = true break end
end
redis.call('zadd', KEYS[1], ARGV[2], ARGV[1])
redis.call('sadd', KEYS[2], ARGV[4])
if had then return 1 end
return 2
"""
_REAP = """
local expired = redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1])
if #expired == 0 then
    -- Everyone left normally: forget the stream, so the index does not only grow.
    if redis.call('zcard', KEYS[1]) == 0 then redis.call('srem', KEYS[2], ARGV[2]) end
    return {}
end
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[1])
local remaining = redis.call('zrange', KEYS[1], 0, -1)
local gone, seen = {}, {}
for _, m in ipairs(expired) do
    local uid = string.match(m, '^([^|]*)|')
    local prefix = uid .. '|'
    local still = false
    for _, r in ipairs(remaining) do
        if string.sub(r, 1, #prefix) == prefix then still = true break end
    end
    if not still and not seen[uid] then seen[uid] = true table.insert(gone, m) end
end
if #remaining == 0 then redis.call('srem', KEYS[2], ARGV[2]) end
return gone
"""


def _member(user: User, sid: str) -> str:
    # "id|socket|username": Django usernames cannot contain "|".
    return f"{user['id']}|{sid}|{user['username']}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _user(member: str) -> User:
    uid, _, username = member.split("|", 2)
    return {"id": int(uid), "username": username}


class Store(Protocol):
    async def join(self, stream: str, user: User, sid: str, expiry: float) -> bool:
        """Add a socket; True when it is the user's first on ``stream``."""

    async def leave(self, stream: str, user: User, sid: str) -> bool:
        """Remove a socket; True when it was the user's last on ``stream``."""

    async def renew(
        self, entries: list[tuple[str, User, str]], expiry: float
    ) -> list[tuple[str, User]]:
        """Push the expiry of these ``(stream, user, socket)`` entries to ``expiry``, putting
        back any the store lost; return ``(stream, user)`` for each user that this made
        present again (their first entry on the stream)."""

    async def online(self, stream: str) -> list[User]:
        """Users with a live socket on ``stream``, by username."""

    async def reap(self, now: float) -> list[tuple[str, User]]:
        """Remove expired entries; return ``(stream, user)`` for each user now offline."""


class MemoryStore:
    """The embedded default: one process."""

    def __init__(self) -> None:
        self._streams: dict[str, dict[str, float]] = {}

    async def join(self, stream: str, user: User, sid: str, expiry: float) -> bool:
        entries = self._streams.setdefault(stream, {})
        prefix = f"{user['id']}|"
        had = any(m.startswith(prefix) for m in entries)
        entries[_member(user, sid)] = expiry
        return not had

    async def leave(self, stream: str, user: User, sid: str) -> bool:
        entries = self._streams.get(stream, {})
        if entries.pop(_member(user, sid), None) is None:
            return False
        prefix = f"{user['id']}|"
        gone = not any(m.startswith(prefix) for m in entries)
        if not entries:
            self._streams.pop(stream, None)
        return gone

    async def renew(
        self, entries: list[tuple[str, User, str]], expiry: float
    ) -> list[tuple[str, User]]:
        back = []
        for stream, user, sid in entries:
            members = self._streams.setdefault(stream, {})
            member = _member(user, sid)
            if member not in members:
                prefix = f"{user['id']}|"
                if not any(m.startswith(prefix) for m in members):
                    back.append((stream, user))
            members[member] = expiry
        return back

    async def online(self, stream: str) -> list[User]:
        now = time.time()
        users = {
            u["id"]: u
            for m, e in self._streams.get(stream, {}).items()
            if e > now
            for u in [_user(m)]
        }
        return sorted(users.values(), key=lambda u: u["username"])

    async def reap(self, now: float) -> list[tuple[str, User]]:
        gone = []
        for stream, entries in list(self._streams.items()):
            expired = [m for m, e in entries.items() if e <= now]
            for m in expired:
                del entries[m]
            for uid in {m.split("|", 1)[0] for m in expired}:
                if not any(m.startswith(f"{uid}|") for m in entries):
                    gone.append(
                        (stream, _user(next(m for m in expired if m.startswith(f"{uid}|"))))
                    )
            if not entries:
                del self._streams[stream]
        return gone


class RedisStore:
    """``<prefix>:presence:<stream>`` sorted sets scored by expiry; the set of streams in use
    in ``<prefix>:presence``. ``url`` and ``prefix`` default to
    ``realtime.conf.redis_location()`` (``ImproperlyConfigured`` without ``REDIS_URL``)."""

    def __init__(self, url: str | None = None, prefix: str | None = None) -> None:
        if url is None or prefix is None:
            url, prefix = require_redis_location("realtime.presence.RedisStore")
        self._redis = async_redis(url)
        self._prefix = f"{prefix}:presence"

    def _key(self, stream: str) -> str:
        return f"{self._prefix}:{stream}"

    async def join(self, stream: str, user: User, sid: str, expiry: float) -> bool:
        first = await self._redis.eval(
            _JOIN,
            2,
            self._key(stream),
            self._prefix,
            _member(user, sid),
            expiry,
            f"{user['id']}|",
            stream,
        )
        return bool(first)

    async def leave(self, stream: str, user: User, sid: str) -> bool:
        last = await self._redis.eval(
            _LEAVE, 1, self._key(stream), _member(user, sid), f"{user['id']}|"
        )
        return bool(last)

    async def renew(
        self, entries: list[tuple[str, User, str]], expiry: float
    ) -> list[tuple[str, User]]:
        if not entries:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream, user, sid in entries:
                pipe.eval(
                    _RENEW,
                    2,
                    self._key(stream),
                    self._prefix,
                    _member(user, sid),
                    expiry,
                    f"{user['id']}|",
                    stream,
                )
            results = await pipe.execute()
        return [
            (stream, user) for (stream, user, _), r in zip(entries, results, strict=True) if r == 2
        ]

    async def online(self, stream: str) -> list[User]:
        members = await self._redis.zrangebyscore(self._key(stream), time.time(), "+inf")
        users = {u["id"]: u for m in members for u in [_user(_text(m))]}
        return sorted(users.values(), key=lambda u: u["username"])

    async def reap(self, now: float) -> list[tuple[str, User]]:
        gone = []
        for raw in await self._redis.smembers(self._prefix):
            stream = _text(raw)
            for m in await self._redis.eval(_REAP, 2, self._key(stream), self._prefix, now, stream):
                gone.append((stream, _user(_text(m))))
        return gone


_store: Store | None = None


def get_store() -> Store:
    """The deployment's presence store, made at the first call from ``PRESENCE_BACKEND``
    (Redis when ``REDIS_URL`` is set, else memory). Raises ``ImproperlyConfigured`` when the
    setting's path does not import."""
    global _store
    if _store is None:
        _store = backend_class("PRESENCE_BACKEND")()
    return _store


def set_store(store: Store | None) -> None:
    """Use ``store`` from now on (tests); None: choose again at the next ``get_store()``."""
    global _store
    _store = store


@dataclass
class Entry:
    """One of this process's sockets present on one stream.

    ``pending``: the store has not confirmed the arrival (it failed or timed out), so the
    next renewal that succeeds announces ``presence.join`` and calls ``on_restored(users)``
    with the stream's present users, then clears it.
    """

    stream: str
    user: User
    sid: str
    pending: bool = False
    on_restored: Callable[[list[User]], None] | None = None


#: This process's entries, renewed by the heartbeat: (stream, sid) → Entry.
local_entries: dict[tuple[str, str], Entry] = {}


_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _writes() -> asyncio.Lock:
    """This event loop's lock over ``local_entries`` and the store writes that follow them."""
    loop = asyncio.get_running_loop()
    lock = _locks.get(loop)
    if lock is None:
        lock = _locks[loop] = asyncio.Lock()
    return lock


def new_socket_id() -> str:
    return uuid.uuid4().hex[:12]


def _expiry() -> float:
    return time.time() + rt_settings().PRESENCE_TTL_SECONDS


def _unavailable(exc: Exception) -> ProtocolError:
    return ProtocolError(
        ErrorCode.UNAVAILABLE, f"presence is unavailable ({type(exc).__name__}); retry"
    )


async def arrive(stream: str, user: User, sid: str) -> bool:
    """A socket of ``user`` subscribed to ``stream``; announce the user if they were away.

    Returns:
        True when the store took the arrival; False when it failed or did not answer within
        ``redis_timeout()`` seconds (Redis down or hung). The local entry is kept either way,
        so the heartbeat puts it back once the store answers; call ``restore_later`` to
        hear of that. Never raises for the store.
    """
    key = (stream, sid)
    try:
        async with asyncio.timeout(redis_timeout()), _writes():
            local_entries[key] = Entry(stream, user, sid)
            first = await get_store().join(stream, user, sid, _expiry())
    except Exception as exc:
        entry = local_entries.setdefault(key, Entry(stream, user, sid))
        entry.pending = True
        logger.warning("event=presence.degraded stream=%s error=%s", stream, type(exc).__name__)
        return False
    if first:
        await apublish(stream, "presence.join", {"user": user})
    return True


def restore_later(stream: str, sid: str, on_restored: Callable[[list[User]], None]) -> None:
    """Mark this socket's entry on ``stream`` as not confirmed by the store: once a renewal
    reaches the store, ``presence.join`` is announced for its user and
    ``on_restored(users)`` gets the users then present (on the event loop; must not block).
    No-op when the socket has no entry."""
    entry = local_entries.get((stream, sid))
    if entry is not None:
        entry.pending = True
        entry.on_restored = on_restored


async def depart(stream: str, user: User, sid: str) -> None:
    """A socket left ``stream``; announce the user's leave if it was their last socket.

    The local entry goes at once, so it is never renewed again. When the store fails or
    does not answer within ``redis_timeout()`` (logged), its entry expires after
    ``PRESENCE_TTL_SECONDS`` and the leader's reaper announces the leave. Never raises for
    the store.
    """
    key = (stream, sid)
    try:
        async with asyncio.timeout(redis_timeout()), _writes():
            if local_entries.pop(key, None) is None:
                return  # never arrived, or already gone
            last = await get_store().leave(stream, user, sid)
    except Exception as exc:
        local_entries.pop(key, None)
        logger.warning("presence leave on %s failed (%r); it expires by itself", stream, exc)
        return
    if last:
        await apublish(stream, "presence.leave", {"user": user})


async def online(stream: str) -> list[User]:
    """Users present on ``stream``.

    Raises:
        ProtocolError: ``unavailable`` when the store failed or did not answer within
            ``redis_timeout()`` seconds (Redis down or hung).
    """
    try:
        async with asyncio.timeout(redis_timeout()):
            return await get_store().online(stream)
    except Exception as exc:
        raise _unavailable(exc) from exc


async def run_heartbeat() -> None:
    """Background service (every process): keep this process's entries alive, and put back
    the ones the store lost (a Redis restart empties it) while their sockets are open."""
    while True:
        ttl = rt_settings().PRESENCE_TTL_SECONDS
        await asyncio.sleep(ttl / 3)
        try:
            # Bounded like every store call (the lock is the one arrivals wait for), but a
            # renewal of many entries may take longer than one call: a few timeouts' worth.
            async with asyncio.timeout(3 * redis_timeout()), _writes():
                current = list(local_entries.values())
                entries = [(e.stream, e.user, e.sid) for e in current]
                back = await get_store().renew(entries, time.time() + ttl)
        except Exception as exc:
            logger.warning("event=presence.renew_failed error=%s", type(exc).__name__)
            continue
        announced = set()
        for stream, user in back:
            announced.add((stream, user["id"]))
            await apublish(stream, "presence.join", {"user": user})
        await restore_pending(current, announced)


async def restore_pending(renewed: list[Entry], announced: set[tuple[str, int]]) -> None:
    """Called by the heartbeat with the entries it just renewed in the store: for those whose
    arrival the store never confirmed (it did not answer on subscribe), announce
    ``presence.join`` to the others (unless ``announced`` holds ``(stream, user id)``: the
    renewal just did; a repeated join is harmless, clients keep a set), and give their
    sockets the ``presence.state`` they could not get on subscribe."""
    present: dict[str, list[User]] = {}
    for entry in renewed:
        if not entry.pending or local_entries.get((entry.stream, entry.sid)) is not entry:
            continue
        users = present.get(entry.stream)
        if users is None:
            try:
                users = present[entry.stream] = await online(entry.stream)
            except ProtocolError:
                return  # the store went away again: the next heartbeat tries again
        entry.pending = False
        if (entry.stream, entry.user["id"]) not in announced:
            announced.add((entry.stream, entry.user["id"]))
            await apublish(entry.stream, "presence.join", {"user": entry.user})
        if entry.on_restored is not None:
            callback, entry.on_restored = entry.on_restored, None
            callback(users)


async def run_reaper() -> None:
    """Background service (leader): announce users whose worker vanished as gone."""
    while True:
        await asyncio.sleep(rt_settings().PRESENCE_TTL_SECONDS / 3)
        try:
            async with asyncio.timeout(3 * redis_timeout()):
                gone = await get_store().reap(time.time())
        except Exception as exc:
            logger.warning("event=presence.reap_failed error=%s", type(exc).__name__)
            continue
        for stream, user in gone:
            await apublish(stream, "presence.leave", {"user": user})
