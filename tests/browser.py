"""Helpers for the Chromium tests: fixtures live in tests/conftest.py, these are plain calls."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.conftest import DEMO_PASSWORD


def log_in(page: Page, username: str) -> None:
    """Sign in through the login form; end on the room list."""
    page.goto("/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator(".username")).to_have_text(username)


def wait_live(page: Page) -> None:
    """Wait until the page's socket is open."""
    expect(page.locator("#connection-state")).to_have_attribute("data-state", "open")
