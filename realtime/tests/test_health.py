"""Health endpoints (realtime/health.py): ``/metrics`` in Prometheus' text format,
``/healthz``, and ``/readyz`` naming what failed by its error class, never its message."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from channels.testing import WebsocketCommunicator
from django.db import OperationalError
from django.test import AsyncClient, override_settings
from prometheus_client import REGISTRY

from realtime import health

from .conftest import receive, send

pytestmark = pytest.mark.django_db(transaction=True)



async def test_metrics_endpoint_serves_prometheus_text(ws: WebsocketCommunicator) -> None:
    await send(ws, {"type": "ping"})
    await receive(ws)
    response = await AsyncClient().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    body = response.content.decode()
    pings = REGISTRY.get_sample_value("townsquare_frames_in_total", {"type": "ping"})
    assert f'townsquare_frames_in_total{{type="ping"}} {pings}' in body
    assert "# TYPE townsquare_publish_to_send_seconds histogram" in body


async def test_healthz_is_ok_without_login() -> None:
    response = await AsyncClient().get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert "no-cache" in response["Cache-Control"]


async def test_readyz_is_ready_with_the_database_and_the_in_memory_layer() -> None:
    response = await AsyncClient().get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": "ok", "channel_layer": "ok"}


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A local TCP port nothing listens on (connections are refused at once)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


@pytest.mark.parametrize(
    "backend",
    ["channels_redis.core.RedisChannelLayer", "channels_redis.pubsub.RedisPubSubChannelLayer"],
)
async def test_readyz_names_an_unreachable_redis_by_error_class(
    closed_port: int, backend: str
) -> None:
    url = f"redis://:secret-password@127.0.0.1:{closed_port}/0"
    layers = {"default": {"BACKEND": backend, "CONFIG": {"hosts": [url]}}}
    with override_settings(CHANNEL_LAYERS=layers):
        response = await AsyncClient().get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "database": "ok",
        "channel_layer": "ConnectionError",
    }
    assert b"secret" not in response.content


async def test_readyz_names_a_failing_database(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> None:
        raise OperationalError('connection to server failed: password "hunter2" rejected')

    monkeypatch.setattr(health, "select_one", refuse)
    response = await AsyncClient().get("/readyz")
    assert response.status_code == 503
    assert response.json()["database"] == "OperationalError"
    assert b"hunter2" not in response.content


async def test_a_check_that_hangs_fails_at_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    async def hang() -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(health, "CHECK_TIMEOUT_SECONDS", 0.05)
    monkeypatch.setattr(health, "check_channel_layer", hang)
    response = await AsyncClient().get("/readyz")
    assert response.status_code == 503
    assert response.json()["channel_layer"] == "TimeoutError"
