"""``manage.py publish <stream> <event> <json>``: publish from outside a request.

Goes through ``realtime.publish.publish``. With the in-memory channel layer a command runs in
its own process and reaches no socket; use it with ``REDIS_URL`` set, or ``POST /api/publish/``.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.core.management.base import BaseCommand, CommandError, CommandParser

from realtime.publish import publish
from realtime.registry import STREAM_NAME_MAX, STREAM_NAME_RE


class Command(BaseCommand):
    help = "Publish an event to a stream: manage.py publish shop:item:1 shop.note '{\"x\": 1}'"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("stream")
        parser.add_argument("event")
        parser.add_argument("data", help="the event's data, as JSON")
        parser.add_argument("--offset", type=int, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        stream = options["stream"]
        if len(stream) > STREAM_NAME_MAX or not STREAM_NAME_RE.match(stream):
            raise CommandError(f"not a stream name: {stream!r}")
        try:
            data = orjson.loads(options["data"])
        except orjson.JSONDecodeError as exc:
            raise CommandError(f"data is not valid JSON: {exc}") from exc
        if not publish(stream, options["event"], data, offset=options["offset"]):
            raise CommandError("the channel layer did not take the event")
        self.stdout.write(f"published {options['event']} to {stream}")
