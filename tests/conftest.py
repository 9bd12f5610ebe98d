"""Fixtures shared by the integration and browser tests."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from tests import services
from tests.server import Server, run_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

DEMO_PASSWORD = "townsquare-demo"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real uvicorn server with demo data, shared by the session's integration tests."""
    with run_server(tmp_path_factory.mktemp("server")) as running:
        yield running


def login_cookies(server: Server, username: str, password: str = DEMO_PASSWORD) -> httpx.Cookies:
    """Sign in through the login form; return the session and CSRF cookies."""
    with httpx.Client(base_url=server.http, follow_redirects=False) as client:
        page = client.get("/accounts/login/")
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert match, "login form has no CSRF token"
        response = client.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": match[1]},
            headers={"Referer": f"{server.http}/accounts/login/"},
        )
        assert response.status_code == 302, response.text
        return client.cookies


def token_for(server: Server, username: str, password: str = DEMO_PASSWORD) -> str:
    """A JWT from ``POST /api/token/``."""
    response = httpx.post(
        f"{server.http}/api/token/", json={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium (Debian's), driven by Playwright; skips or fails without it."""
    from playwright.sync_api import sync_playwright

    executable = services.need_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, args=services.CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


@pytest.fixture
def new_page(browser: Browser, server: Server) -> Iterator[Callable[[], Page]]:
    """A factory of pages, each in its own browser context (its own cookies)."""
    from playwright.sync_api import BrowserContext

    contexts: list[BrowserContext] = []

    def make() -> Page:
        context = browser.new_context(base_url=server.http)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()
