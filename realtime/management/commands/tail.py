"""``manage.py tail <stream>... [--since N]``: print a running server's events, one a line.

A client of ``/ws/`` like any other (``realtime.client``), signed in with a short-lived JWT
minted here for ``--user`` (default: the first superuser) from this project's database and
``SECRET_KEY``, which must be the server's; or with ``--token``. Each event is printed as

    <stream> <offset or -> <event> <data as JSON, keys sorted>

history first when ``--since`` is given (the server replays ``offset > since``), then live
events, until Ctrl-C or ``--count`` events. It reconnects like any client and resumes with
``since``, so a restart of the server loses no durable event and repeats none.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

import orjson
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from realtime.client import Client, ClientError, ConnectionState, Event
from realtime.tokens import issue_token

DEFAULT_URL = "ws://127.0.0.1:8000/ws/"


def format_event(event: Event) -> str:
    """``<stream> <offset or -> <event> <data>``: the data as compact JSON with sorted keys,
    so a line is stable for grep and diff."""
    offset = "-" if event.offset is None else str(event.offset)
    data = orjson.dumps(event.data, option=orjson.OPT_SORT_KEYS).decode()
    return f"{event.stream} {offset} {event.event} {data}"


class Command(BaseCommand):
    help = (
        "Print the events of streams on a running server, one a line: "
        "manage.py tail chat:room:1 --since 0"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("streams", nargs="+", metavar="stream", help="e.g. chat:room:1")
        parser.add_argument(
            "--since",
            type=int,
            default=None,
            help="durable streams: print the events after this offset first (0: all)",
        )
        parser.add_argument(
            "--url", default=DEFAULT_URL, help=f"the socket (default {DEFAULT_URL})"
        )
        parser.add_argument("--origin", default=None, help="Origin header (default: from --url)")
        who = parser.add_mutually_exclusive_group()
        who.add_argument(
            "--user", default=None, help="sign in as this user (default: the first superuser)"
        )
        who.add_argument("--token", default=None, help="a JWT from POST /api/token/ instead")
        who.add_argument("--anonymous", action="store_true", help="do not sign in")
        parser.add_argument(
            "--event",
            action="append",
            default=None,
            dest="event_names",
            metavar="NAME",
            help="print only events of this name (repeatable), e.g. chat.message",
        )
        parser.add_argument(
            "--count", type=int, default=None, help="stop after printing this many events"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        since: int | None = options["since"]
        if since is not None and since < 0:
            raise CommandError("--since must be 0 or more")
        count: int | None = options["count"]
        if count is not None and count < 1:
            raise CommandError("--count must be 1 or more")
        token = None if options["anonymous"] else options["token"] or self._mint(options["user"])
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                self._tail(
                    options["url"],
                    options["origin"],
                    token,
                    options["streams"],
                    since,
                    set(options["event_names"] or ()),
                    count,
                )
            )

    def _mint(self, username: str | None) -> str:
        """A token for ``username``, or for the first superuser (by id)."""
        users = get_user_model()._default_manager.filter(is_active=True)
        if username is None:
            user = users.filter(is_superuser=True).order_by("pk").first()
            if user is None:
                raise CommandError("no active superuser to sign in as: pass --user or --token")
        else:
            user = users.filter(**{get_user_model().USERNAME_FIELD: username}).first()
            if user is None:
                raise CommandError(f"no active user {username!r}")
        # The socket needs the token at its handshakes only; a reconnect after it expired
        # gets a 4001 and the command stops (the client takes no new token from a string).
        return issue_token(user)[0]

    async def _tail(
        self,
        url: str,
        origin: str | None,
        token: str | None,
        streams: list[str],
        since: int | None,
        names: set[str],
        count: int | None,
    ) -> None:
        def on_state(state: ConnectionState) -> None:
            if state == "reconnecting":
                print(f"tail: connection lost; reconnecting to {url}", file=sys.stderr)

        printed = 0
        try:
            async with Client(url, token=token, origin=origin, on_state=on_state) as client:
                for stream in streams:
                    await client.subscribe(stream, since=since)
                async for event in client.events():
                    if names and event.event not in names:
                        continue
                    self.stdout.write(format_event(event))
                    self.stdout.flush()
                    printed += 1
                    if count is not None and printed >= count:
                        return
        except ClientError as exc:
            raise CommandError(f"{exc.code}: {exc.detail}") from exc
