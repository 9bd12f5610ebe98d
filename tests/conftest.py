"""Fixtures shared by the integration and browser tests."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.server import Server, run_server

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
