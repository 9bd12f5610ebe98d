"""The ``dashboard`` and ``feed`` streams.

``dashboard`` (signed-in users): ``dashboard.update`` with ``build_snapshot()``'s data, as a
snapshot on subscribe and then at most ``DASHBOARD_MAX_UPDATES_PER_SECOND`` times a second
while anyone watches; with presence (``presence.state``, ``presence.join``/``leave``).
``feed`` (anyone, as seed 000's page): ``feed.count {value}`` on every new record (and as a
snapshot), ``feed.state {on, records}`` when the switch flips.
"""

from __future__ import annotations

import msgspec
from asgiref.sync import async_to_sync

from realtime.events import Payload, declare, describe_kind
from realtime.protocol import ErrorCode, ProtocolError
from realtime.registry import AnyUser, Event, register_stream

from .selectors import feed_state
from .snapshot import build_snapshot


class Sockets(Payload):
    """Open sockets: in all, and per worker process (``"<host>:<pid>:<id>"``)."""

    total: int
    workers: dict[str, int]


class MessageCounts(Payload):
    last_hour: int
    last_minute: int


class FeedState(Payload):
    """``feed.state`` data, and the dashboard's ``feed``."""

    on: bool
    records: int


class Series(Payload):
    """Per-second counts over the last ``seconds`` seconds from ``start`` (Unix s), oldest
    first."""

    start: int
    seconds: int
    messages: list[int]
    events: list[int]


class DashboardUpdate(Payload):
    """``dashboard.update`` data (``snapshot.build_snapshot``)."""

    #: When the numbers were read, Unix seconds.
    at: int
    sockets: Sockets
    users_online: int
    rooms: int
    messages: MessageCounts
    items_in_stock: int
    units_in_stock: int
    purchases_last_minute: int
    feed: FeedState
    series: Series


class FeedCount(Payload):
    """``feed.count`` data; ``on`` only in the subscribe snapshot."""

    value: int
    on: bool | msgspec.UnsetType = msgspec.UNSET


class Dirty(Payload):
    """``dashboard.dirty`` (internal): no data."""


describe_kind(
    "dashboard", address="dashboard", description="Live counters, for signed-in users."
)
describe_kind("feed", address="feed", description="Seed 000's feed, for anyone.")
declare(
    "dashboard",
    "dashboard.update",
    DashboardUpdate,
    snapshot=True,
    summary="The deployment's counters: snapshot on subscribe, then conflated updates.",
)
declare(
    "feed",
    "feed.count",
    FeedCount,
    snapshot=True,
    summary="The number of feed records: snapshot on subscribe, then on every new record.",
)
declare("feed", "feed.state", FeedState, summary="The feed switch flipped.")
declare(
    "sys:dashboard",
    "dashboard.dirty",
    Dirty,
    internal=True,
    summary="Something the dashboard counts changed (after commit); the leader recomputes.",
)


def authorize_dashboard(user: AnyUser, key: str) -> None:
    if not user.is_authenticated:
        raise ProtocolError(ErrorCode.UNAUTHENTICATED, "sign in to see the dashboard")


def snapshot_dashboard(user: AnyUser, key: str) -> list[Event]:
    # Runs in a worker thread (database_sync_to_async); the worker store is async.
    return [Event("dashboard.update", async_to_sync(build_snapshot)())]


def authorize_feed(user: AnyUser, key: str) -> None:
    return None


def snapshot_feed(user: AnyUser, key: str) -> list[Event]:
    state = feed_state()
    return [Event("feed.count", {"value": state["records"], "on": state["on"]})]


# presence=True: the leader's publisher asks who is watching, and computes nothing for
# nobody (dashboard.publisher).
register_stream(
    "dashboard", authorize=authorize_dashboard, snapshot=snapshot_dashboard, presence=True
)
register_stream("feed", authorize=authorize_feed, snapshot=snapshot_feed)
