"""Hostile input on every chat URL, against a real server on SQLite and on PostgreSQL: each
answer is the expected 4xx (JSON under ``/api/``), never a 500, and the server keeps serving.

Ids beyond a signed 64-bit integer (SQLite's driver: ``OverflowError``), NUL characters
(PostgreSQL: "cannot contain NUL"), control characters, very long names, negative ids and
forged cursors are refused by the chat views before any query.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import login_cookies, token_for
from tests.pg import scratch_postgres
from tests.server import Server, run_server

pytestmark = pytest.mark.server

HUGE = 2**63  # one past the largest id
LONG = "x" * 5000


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    workdir: Path = tmp_path_factory.mktemp(f"bad-input-{request.param}")
    if request.param == "sqlite":
        with run_server(workdir) as running:
            yield running
    else:
        with (
            scratch_postgres() as database_url,
            run_server(workdir, DATABASE_URL=database_url) as running,
        ):
            yield running


def cursor(position: str) -> str:
    from urllib.parse import quote

    return base64.b64encode(f"p={quote(position)}".encode()).decode()


# (method, path, JSON body or None, expected status)
PAGE_CASES = [
    ("GET", f"/chat/room/{HUGE}/", 404),
    ("GET", f"/chat/room/{HUGE - 1}/", 404),
    ("GET", f"/chat/room/{10**30}/", 404),
    ("GET", "/chat/room/-1/", 404),
    ("GET", "/chat/room/0/", 404),
    ("GET", "/chat/x%00y/", 404),
    ("GET", "/chat/%00/", 404),
    ("GET", "/chat/a%0Ab/", 404),
    ("GET", "/chat/a%7Fb/", 404),
    ("GET", "/chat/%ED%A0%80/", 404),  # a UTF-8-encoded surrogate
    ("GET", f"/chat/{'x' * 61}/", 404),
    ("GET", f"/chat/{LONG}/", 404),
    ("GET", "/chat/new%C3%A9/", 200),  # a new valid name: the confirm page
    (
        "GET",
        f"/?page={'9' * 50}&mine=%00",
        200,
    ),
    ("POST", f"/chat/room/{HUGE}/join/", 404),
    ("POST", f"/chat/room/{HUGE}/leave/", 404),
    ("POST", "/chat/room/-1/join/", 404),
    ("POST", "/chat/x%00y/", 400),
    ("POST", f"/chat/{LONG}/", 400),
]

API_CASES: list[tuple[str, str, object, int]] = [
    ("GET", f"/api/rooms/{HUGE}/messages/", None, 404),
    ("GET", "/api/rooms/-1/messages/", None, 404),
    ("POST", f"/api/rooms/{HUGE}/messages/", {"text": "x"}, 404),
    ("POST", f"/api/rooms/{10**30}/messages/", {"text": "x"}, 404),
    ("POST", f"/api/rooms/{HUGE}/join/", None, 404),
    ("POST", f"/api/rooms/{HUGE}/leave/", None, 404),
    ("POST", "/api/rooms/", {"name": "x\u0000y"}, 400),
    ("POST", "/api/rooms/", {"name": LONG}, 400),
    ("POST", "/api/rooms/", {"name": "a\nb"}, 400),
    ("POST", "/api/rooms/", {"name": ["x"]}, 400),
    ("GET", f"/api/rooms/?cursor={cursor('a' + chr(0))}", None, 404),
    ("GET", f"/api/rooms/?page_size={'9' * 50}", None, 200),
]


@pytest.fixture(scope="module")
def session(server: Server) -> Iterator[httpx.Client]:
    cookies = login_cookies(server, "bob")
    with httpx.Client(base_url=server.http, cookies=cookies, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {token_for(server, 'bob')}"}
    with httpx.Client(base_url=server.http, headers=headers, timeout=10) as client:
        yield client


@pytest.mark.parametrize(("method", "path", "status"), PAGE_CASES, ids=lambda v: str(v)[:40])
def test_chat_pages(session: httpx.Client, method: str, path: str, status: int) -> None:
    headers = {}
    data = {}
    if method == "POST":
        # The CSRF token of the form page, as a browser posts it.
        csrf = session.cookies.get("csrftoken")
        assert csrf, "the login form set no CSRF cookie"
        data = {"csrfmiddlewaretoken": csrf}
        headers = {"Referer": f"{session.base_url}/"}
    response = session.request(method, path, data=data or None, headers=headers)
    assert response.status_code == status, response.text[:300]


@pytest.mark.parametrize(("method", "path", "body", "status"), API_CASES, ids=lambda v: str(v)[:40])
def test_chat_api(api: httpx.Client, method: str, path: str, body: object, status: int) -> None:
    response = api.request(method, path, json=body)
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"] == "application/json"


def test_the_server_still_serves_after_the_above(api: httpx.Client, server: Server) -> None:
    rooms = api.get("/api/rooms/")
    assert rooms.status_code == 200
    assert any(room["name"] == "lobby" for room in rooms.json())
    assert " 500 " not in server.log()
    assert "Traceback" not in server.log()
