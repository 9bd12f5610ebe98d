"""Per-socket, per-user and per-address limits of the socket server.

- ``TokenBucket``: a socket's frame budget, charged when a frame is *read* (not when it is
  handled) and charged again by the rows a replay reads.
- ``ConnectionCaps``: sockets per user and per client address in this process, checked at
  the handshake (as Centrifugo's per-node ``client_user_connection_limit``).
- ``ReplayLanes``: one replay read at a time per user in this process, so one user's many
  sockets queue behind each other instead of in front of everyone else's
  (fair queuing by source: Nagle, "On Packet Switches with Infinite Storage", RFC 970).
- ``replay_executor``: the thread replays read on, apart from Channels' one database thread
  that every sign-in, subscribe and send shares, so that a long read never queues before a
  short one.

Everything here is process-local: the caps bound what one worker holds, and a deployment of
N workers admits up to N times as much per user, as with Centrifugo's per-node limits.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Hashable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any


class TokenBucket:
    """A token bucket (RFC 2697's committed bucket, without colours).

    ``rate`` tokens per second refill up to ``burst``; ``take()`` spends one token per frame
    and refuses when fewer than one is left. ``charge(n)`` spends ``n`` more without refusing:
    the balance may go negative (a debt), which later frames repay by waiting.
    """

    __slots__ = ("_refilled", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self._refilled = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self._refilled) * self.rate)
        self._refilled = now

    def take(self) -> bool:
        """Spend one token; False (spending nothing) when less than one is left."""
        self._refill()
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def charge(self, amount: float) -> None:
        """Spend ``amount`` tokens, going into debt if need be."""
        self._refill()
        self.tokens -= amount

    def in_debt(self) -> bool:
        """True while the balance is below zero (after a ``charge``)."""
        self._refill()
        return self.tokens < 0.0

    def seconds_to_repay(self) -> float:
        """Seconds until the balance is back to zero (0 when not in debt)."""
        self._refill()
        return max(0.0, -self.tokens / self.rate) if self.rate > 0 else float("inf")


class ConnectionCaps:
    """Counts this process's open sockets per user and per client address.

    ``admit(user_key, address)`` returns None and counts the socket, or the name of the cap it
    would exceed (``"user"`` or ``"address"``) and counts nothing. Every admitted socket must
    be ``release``d exactly once. A cap of 0 means no cap.
    """

    def __init__(self) -> None:
        self.users: Counter[Hashable] = Counter()
        self.addresses: Counter[str] = Counter()

    def admit(
        self, user_key: Hashable | None, address: str | None, *, per_user: int, per_address: int
    ) -> str | None:
        """Count one more socket for ``user_key`` and ``address``, or say which cap is full."""
        if user_key is not None and per_user and self.users[user_key] >= per_user:
            return "user"
        if address is not None and per_address and self.addresses[address] >= per_address:
            return "address"
        if user_key is not None:
            self.users[user_key] += 1
        if address is not None:
            self.addresses[address] += 1
        return None

    def release(self, user_key: Hashable | None, address: str | None) -> None:
        """Forget one socket counted by ``admit``."""
        if user_key is not None:
            _decrement(self.users, user_key)
        if address is not None:
            _decrement(self.addresses, address)


def _decrement(counter: Counter[Any], key: Hashable) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


class ReplayLanes:
    """One lock per key (a user), created on first use and dropped when nobody holds it."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, asyncio.Lock] = {}
        self._users: Counter[Hashable] = Counter()

    def __len__(self) -> int:
        """Keys with a lane now (held or waited for); 0 once every lane is released, since
        lanes are dropped with their last user and do not accumulate per user."""
        return len(self._locks)

    @asynccontextmanager
    async def lane(self, key: Hashable) -> AsyncIterator[None]:
        """Hold ``key``'s lane: replays of the same key run one at a time, in arrival order."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        self._users[key] += 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if self._users[key] <= 0:
                del self._users[key]
                del self._locks[key]


#: This process's socket counts, shared by every consumer.
connection_caps = ConnectionCaps()
#: This process's replay lanes, shared by every consumer.
replay_lanes = ReplayLanes()
#: One thread (one database connection) for every replay read of this process.
replay_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay")
