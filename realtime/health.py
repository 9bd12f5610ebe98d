"""Operator endpoints: ``/metrics/`` (Prometheus), ``/healthz`` (liveness), ``/readyz``.

None of them needs a login; they carry no user data. ``/metrics/`` does tell an outsider how
busy the server is: keep it off the public internet (a proxy rule, or scrape a worker port).

``/healthz`` answers 200 ``{"status": "ok"}`` while the process serves HTTP; it touches no
dependency, so a database outage never makes an orchestrator restart healthy workers.

``/readyz`` checks what a request needs, both at once:

- ``database``: ``SELECT 1`` on the default database, within ``CHECK_TIMEOUT_SECONDS``;
- ``channel_layer``: a Redis ``PING`` to every host of a channels_redis layer, within
  ``REDIS_TIMEOUT_SECONDS`` (default 1 s: a hung Redis makes it 503 at once, not after the
  load balancer's own timeout); the in-memory layer, or none, is always ready.

200 ``{"status": "ready", "database": "ok", "channel_layer": "ok"}``; otherwise 503 with
``"status": "unavailable"`` and each failing part set to its error's class name, e.g.
``{"database": "OperationalError"}`` or ``"TimeoutError"``. Never the error's message: it
can name hosts, users or URLs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from . import metrics
from .conf import redis_timeout

logger = logging.getLogger(__name__)

#: Seconds each readiness check may take before it counts as failed (``TimeoutError``).
CHECK_TIMEOUT_SECONDS = 2.0


@login_not_required
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics/``: every metric in Prometheus' text format (merged across workers).

    Synchronous on purpose: in multiprocess mode it reads every worker's files, which is
    file I/O that Django runs in a thread, off the event loop.
    """
    body, content_type = metrics.exposition()
    return HttpResponse(body, content_type=content_type)


@login_not_required
@require_safe
@never_cache
async def healthz(request: HttpRequest) -> JsonResponse:
    """``GET /healthz``: 200 while the process is up. Checks nothing else."""
    return JsonResponse({"status": "ok"})


@login_not_required
@require_safe
@never_cache
async def readyz(request: HttpRequest) -> JsonResponse:
    """``GET /readyz``: 200 when the database and the channel layer answer, else 503."""
    database, channel_layer = await asyncio.gather(
        _probe("database", check_database, CHECK_TIMEOUT_SECONDS),
        _probe("channel_layer", check_channel_layer, redis_timeout()),
    )
    ready = database == "ok" and channel_layer == "ok"
    return JsonResponse(
        {
            "status": "ready" if ready else "unavailable",
            "database": database,
            "channel_layer": channel_layer,
        },
        status=200 if ready else 503,
    )


async def _probe(part: str, check: Callable[[], Awaitable[None]], timeout: float) -> str:
    """Run ``check`` within ``timeout`` seconds; ``"ok"`` or the class name of what it raised."""
    try:
        await asyncio.wait_for(check(), timeout)
    except Exception as exc:
        logger.warning("event=health.not_ready part=%s error=%s", part, type(exc).__name__)
        return type(exc).__name__
    return "ok"


def select_one() -> None:
    """``SELECT 1`` on the default database (sync). Raises what the driver raised, e.g.
    ``OperationalError`` when the server refuses the connection."""
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def check_database() -> None:
    """``readyz``'s database check: ``select_one`` in the request's thread. Raises what it
    raised; ``readyz`` answers with the exception's class name."""
    # Thread-sensitive: the request's own thread (Django gives each ASGI request one), whose
    # connection Django closes when the request ends, so a failed one is not reused. On a
    # timeout the thread may stay blocked until the driver gives up; the answer does not wait.
    await sync_to_async(select_one)()


async def check_channel_layer() -> None:
    """``readyz``'s channel-layer check: a PING to each of the channels_redis layer's hosts
    (nothing to check for other layers). Raises what the Redis client raised, e.g.
    ``ConnectionError``; ``readyz`` answers with the exception's class name."""
    # The layer's Redis hosts as configured: both channels_redis layers (core and pub/sub)
    # take them from CONFIG["hosts"]; only the core layer keeps them as an attribute.
    get_channel_layer()
    config = settings.CHANNEL_LAYERS.get("default", {}).get("CONFIG", {})
    hosts = (
        config.get("hosts")
        if "channels_redis" in settings.CHANNEL_LAYERS["default"].get("BACKEND", "")
        else None
    )
    if not hosts:
        return
    from channels_redis.utils import create_pool, decode_hosts
    from redis.asyncio import Redis

    timeout = redis_timeout()
    for host in decode_hosts(hosts):
        # A short-lived client of our own: the layer's pools are its internals, and a probe
        # must not hold a connection that a publish is waiting for. Its own socket timeouts
        # bound the close too, after the probe gave up on a hung Redis.
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout, **host}
        client = Redis(connection_pool=create_pool(options))
        try:
            await client.ping()
        finally:
            await client.aclose(close_connection_pool=True)
