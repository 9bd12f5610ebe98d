"""Test-wide configuration (in-process tests; server processes keep the real settings)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache


@pytest.fixture(autouse=True)
def _test_settings(settings: Any) -> None:
    # PBKDF2's deliberate slowness costs ~0.3 s per user created; tests need no such defence.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Background services (ticker, dashboard publisher) run only where a test starts them.
    settings.TOWNSQUARE_REALTIME = {**settings.TOWNSQUARE_REALTIME, "BACKGROUND_AUTOSTART": False}
    # In-process page tests render templates without a collectstatic manifest.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    # Sign-in failures and throttle counts start at zero in every test: the process's cache
    # outlives a test, and one test's failures (all from 127.0.0.1) would lock out the next.
    # Only the in-memory cache: clearing a Redis cache would empty the whole database.
    if isinstance(caches["default"], LocMemCache):
        caches["default"].clear()


@pytest.fixture(autouse=True)
def _validate_events(settings: Any) -> None:
    # Every event the suite publishes in-process is checked against its declaration
    # (realtime.events): an undeclared event or a wrong shape raises InvalidEvent in the test
    # that published it. Server processes get TOWNSQUARE_VALIDATE_EVENTS=1 (tests/server.py).
    settings.TOWNSQUARE_VALIDATE_EVENTS = True


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (./test), hand out the files that start servers or browsers first.

    ``--dist loadfile`` gives each process a whole file at a time, in collection order; the
    long files (tens of seconds, up to minutes) started last would leave the other processes
    idle at the end, while the many short in-process tests fill the gaps well. The order
    within a file, and among each kind, stays as collected (pytest-django's included).
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    heavy = {
        str(item.path)
        for item in items
        if item.get_closest_marker("server")
        or item.get_closest_marker("browser")
        or any(name.endswith("server") for name in getattr(item, "fixturenames", ()))
    }
    items.sort(key=lambda item: str(item.path) not in heavy)
