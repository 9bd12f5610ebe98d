"""Settings of the real-time core, read through one object (as DRF's `api_settings`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver


@dataclass(frozen=True)
class RealtimeSettings:
    """Limits and tunables; each field documented in `townsquare/settings.py`."""

    MAX_FRAME_BYTES: int = 64 * 1024
    FRAMES_PER_SECOND: float = 20.0
    FRAME_BURST: int = 40
    RATE_LIMIT_CLOSE_AFTER: int = 100
    MAX_STREAMS_PER_SOCKET: int = 100
    OUTBOX_MAX_BYTES: int = 4 * 1024 * 1024
    REPLAY_MAX: int = 1000
    REPLAY_ROWS_PER_SECOND: float = 1000.0
    REPLAY_ROWS_BURST: int = 2000
    MAX_QUEUED_FRAMES: int = 64
    MAX_SOCKETS_PER_USER: int = 100
    MAX_SOCKETS_PER_ADDRESS: int = 1000
    JWT_TTL_SECONDS: int = 15 * 60
    HUB_REFRESH_SECONDS: float = 30.0
    GAP_WAIT_SECONDS: float = 0.25
    LEASE_TTL_SECONDS: float = 10.0
    BACKGROUND_AUTOSTART: bool = True
    WORKER_HEARTBEAT_SECONDS: float = 5.0
    WORKER_FLUSH_SECONDS: float = 0.25
    PRESENCE_TTL_SECONDS: float = 15.0
    TYPING_MIN_INTERVAL: float = 2.0


@functools.cache
def rt_settings() -> RealtimeSettings:
    """Return the `TOWNSQUARE_REALTIME` settings over the defaults (cached; reset on change)."""
    given: dict[str, Any] = getattr(settings, "TOWNSQUARE_REALTIME", {})
    known = {f.name for f in fields(RealtimeSettings)}
    return RealtimeSettings(**{k: v for k, v in given.items() if k in known})


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "TOWNSQUARE_REALTIME":
        rt_settings.cache_clear()


def redis_prefix() -> str:
    """The key prefix of everything Townsquare keeps in Redis (the channel layer's prefix),
    so that one deployment's leases, presence and statistics never meet another's."""
    return str(settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("prefix", "townsquare"))


def redis_location() -> tuple[str, str] | None:
    """``(REDIS_URL, redis_prefix())`` for the stores shared by the deployment's workers
    (presence, worker stats), or None on the embedded default (one process: memory)."""
    return (settings.REDIS_URL, redis_prefix()) if settings.REDIS_URL else None
