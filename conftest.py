"""Test-wide configuration (in-process tests; server processes keep the real settings)."""

from __future__ import annotations

from typing import Any

import pytest


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
