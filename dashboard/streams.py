"""The ``dashboard`` and ``feed`` streams.

``dashboard`` (signed-in users): ``dashboard.update`` with ``build_snapshot()``'s data, as a
snapshot on subscribe and then at most ``DASHBOARD_MAX_UPDATES_PER_SECOND`` times a second
while anyone watches; with presence (``presence.state``, ``presence.join``/``leave``).
``feed`` (anyone, as seed 000's page): ``feed.count {value}`` on every new record (and as a
snapshot), ``feed.state {on, records}`` when the switch flips.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync

from realtime.protocol import ErrorCode, ProtocolError
from realtime.registry import AnyUser, Event, register_stream

from .selectors import feed_state
from .snapshot import build_snapshot


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
