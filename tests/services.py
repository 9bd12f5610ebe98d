"""Skip-or-fail for tests that need a service (Redis, PostgreSQL, Chromium).

Where the service is absent a test skips with the reason; with
``TOWNSQUARE_REQUIRE_SERVICES=1`` (CI) it fails instead, so CI never passes by skipping.
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest

CHROMIUM = os.environ.get("TOWNSQUARE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def services_required() -> bool:
    return os.environ.get("TOWNSQUARE_REQUIRE_SERVICES", "") not in ("", "0", "false")


def need(available: bool, reason: str) -> None:
    """Skip the calling test with ``reason`` unless services are required; then fail."""
    if available:
        return
    if not services_required():
        pytest.skip(reason)
    pytest.fail(f"required service missing: {reason}")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def need_chromium() -> str:
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    need(path is not None, f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    assert path is not None
    return path
