"""Integration: sign-in throttling against real servers (django-axes, DRF throttles).

Every scenario signs in from its own loopback address (127.0.0.2, 127.0.0.3, ...: a client
socket bound to it, talking to the server on 127.0.0.1), so that one scenario's failures,
counted per address, never lock out another's. ``TRUSTED_PROXIES`` is empty unless a test
says otherwise: the servers ignore ``X-Forwarded-For``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.nginx import run_nginx
from tests.pg import scratch_redis
from tests.server import Server, run_server

pytestmark = pytest.mark.server

PASSWORD = "signin-test-password-7"
LIMIT = 10
COOLOFF = 3
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def create_users(server: Server, *names: str, staff: bool = False) -> None:
    """Create users with ``PASSWORD`` in the server's database (staff: may use /admin/)."""
    server.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User\n"
        f"for name in {list(names)!r}:\n"
        f"    User.objects.create_user(name, password={PASSWORD!r}, is_staff={staff!r})",
    )


def client(base: str, source: str) -> httpx.Client:
    """An HTTP client whose connections come from the loopback address ``source``."""
    return httpx.Client(
        base_url=base,
        transport=httpx.HTTPTransport(local_address=source),
        follow_redirects=False,
        timeout=30,
    )


class Form:
    """A sign-in form (``/accounts/login/`` or ``/admin/login/``) posted by one client."""

    def __init__(self, http: httpx.Client, path: str) -> None:
        self.http = http
        self.path = path
        page = http.get(path)
        assert page.status_code == 200, page.text
        match = CSRF.search(page.text)
        assert match, "sign-in form has no CSRF token"
        self.token = match[1]

    def post(
        self, username: str, password: str, forwarded_for: str | None = None
    ) -> httpx.Response:
        headers = {"Referer": f"{self.http.base_url}{self.path}"}
        if forwarded_for:
            headers["X-Forwarded-For"] = forwarded_for
        return self.http.post(
            self.path,
            data={"username": username, "password": password, "csrfmiddlewaretoken": self.token},
            headers=headers,
        )


def token(
    http: httpx.Client, username: str, password: str, forwarded_for: str = ""
) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return http.post(
        "/api/token/", json={"username": username, "password": password}, headers=headers
    )


def forged(i: int) -> str:
    """A different client-chosen X-Forwarded-For for each request."""
    return f"203.0.113.{i % 250 + 1}, 198.51.100.{i % 200 + 1}"


def assert_locked_page(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["Retry-After"] == str(COOLOFF)
    assert "Too many attempts" in response.text


def assert_locked_json(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["Retry-After"] == str(COOLOFF)
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == "locked_out"
    assert f"{COOLOFF} seconds" in body["detail"]


# --- one worker -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with a lockout after ``LIMIT`` failures and a ``COOLOFF``-second cool-off."""
    with run_server(
        tmp_path_factory.mktemp("signin"),
        LOGIN_FAILURE_LIMIT=str(LIMIT),
        LOGIN_COOLOFF_SECONDS=str(COOLOFF),
        TOKEN_RATE="100000/min",
    ) as running:
        create_users(running, "form-user", "reset-user", "fresh-user", "token-user")
        create_users(running, "admin-user", staff=True)
        yield running


def test_login_form_locks_out_until_the_cooloff(server: Server) -> None:
    with client(server.http, "127.0.0.2") as http:
        form = Form(http, "/accounts/login/")
        statuses = [form.post("form-user", f"wrong-{i}").status_code for i in range(100)]
        # The form shows its error 9 times; the 10th failure locks the account and address.
        assert statuses == [200] * (LIMIT - 1) + [429] * (100 - LIMIT + 1)
        assert_locked_page(form.post("form-user", PASSWORD))
        # Every attempt renewed the cool-off; once it has passed without one, the right
        # password signs in.
        time.sleep(COOLOFF + 0.5)
        signed_in = form.post("form-user", PASSWORD)
        assert signed_in.status_code == 302, signed_in.text
        assert "sessionid" in signed_in.cookies


def test_admin_login_locks_out(server: Server) -> None:
    with client(server.http, "127.0.0.3") as http:
        form = Form(http, "/admin/login/")
        statuses = [form.post("admin-user", f"wrong-{i}").status_code for i in range(100)]
        assert statuses == [200] * (LIMIT - 1) + [429] * (100 - LIMIT + 1)
        assert_locked_page(form.post("admin-user", PASSWORD))
    # The account is locked from any address, not only the guesser's.
    with client(server.http, "127.0.0.13") as other:
        assert_locked_page(Form(other, "/admin/login/").post("admin-user", PASSWORD))


def test_token_endpoint_locks_out_with_json(server: Server) -> None:
    with client(server.http, "127.0.0.4") as http:
        responses = [token(http, "token-user", f"wrong-{i}") for i in range(100)]
        assert [r.status_code for r in responses] == [401] * (LIMIT - 1) + [429] * (100 - LIMIT + 1)
        assert responses[0].json() == {"detail": "Unknown username or wrong password."}
        assert_locked_json(responses[-1])
        assert_locked_json(token(http, "token-user", PASSWORD))


def test_forwarded_for_does_not_escape_the_address_lockout(server: Server) -> None:
    """Guesses at many accounts, each with a new X-Forwarded-For, all count for one address."""
    with client(server.http, "127.0.0.5") as http:
        statuses = [
            token(http, f"nobody-{i}", "guess", forwarded_for=forged(i)).status_code
            for i in range(100)
        ]
        assert statuses == [401] * (LIMIT - 1) + [429] * (100 - LIMIT + 1)
        # An account this address never tried, with its right password: still refused.
        assert_locked_json(token(http, "fresh-user", PASSWORD, forwarded_for=forged(999)))
        assert_locked_page(Form(http, "/accounts/login/").post("fresh-user", PASSWORD, forged(7)))
    # The same account from another address is not locked: the lock was the address's.
    with client(server.http, "127.0.0.15") as other:
        assert token(other, "fresh-user", PASSWORD).status_code == 200


def test_a_successful_sign_in_resets_the_count(server: Server) -> None:
    with client(server.http, "127.0.0.6") as http:
        form = Form(http, "/accounts/login/")
        for _ in range(2):
            statuses = [form.post("reset-user", f"typo-{i}").status_code for i in range(LIMIT - 1)]
            assert statuses == [200] * (LIMIT - 1)
            assert form.post("reset-user", PASSWORD).status_code == 302
            http.cookies.clear()
            form = Form(http, "/accounts/login/")
        # Without the reset the 18 failures above would have locked it at the 10th.
        assert token(http, "reset-user", PASSWORD).status_code == 200


# --- two workers sharing Redis ----------------------------------------------------------------


@dataclass
class Pair:
    a: Server
    b: Server


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Two server processes on one database and one Redis key prefix (the shared cache)."""
    workdir = tmp_path_factory.mktemp("signin-pair")
    with scratch_redis() as (redis_url, prefix):

        def worker(prepare: bool) -> AbstractContextManager[Server]:
            return run_server(
                workdir,
                prepare=prepare,
                REDIS_URL=redis_url,
                REDIS_PREFIX=prefix,
                LOGIN_FAILURE_LIMIT=str(LIMIT),
                LOGIN_COOLOFF_SECONDS=str(COOLOFF),
                TOKEN_RATE="5/min",
            )

        # A migrates and loads the demo data; B serves the same database.
        with worker(prepare=True) as a, worker(prepare=False) as b:
            create_users(a, "shared-user")
            yield Pair(a, b)


def test_failures_on_two_workers_add_up(pair: Pair) -> None:
    with (
        client(pair.a.http, "127.0.0.2") as on_a,
        client(pair.b.http, "127.0.0.2") as on_b,
    ):
        forms = [Form(on_a, "/accounts/login/"), Form(on_b, "/accounts/login/")]
        # Alternating workers: five failures on each make the ten that lock.
        statuses = [
            forms[i % 2].post("shared-user", f"wrong-{i}").status_code for i in range(LIMIT)
        ]
        assert statuses == [200] * (LIMIT - 1) + [429]
        for form in forms:
            assert_locked_page(form.post("shared-user", PASSWORD))
    # The account is locked on both workers for every address.
    with client(pair.b.http, "127.0.0.12") as elsewhere:
        assert_locked_page(Form(elsewhere, "/accounts/login/").post("shared-user", PASSWORD))


def test_token_throttle_is_shared_and_ignores_forwarded_for(pair: Pair) -> None:
    """TOKEN_RATE=5/min per address, across both workers, whatever X-Forwarded-For says."""
    with (
        client(pair.a.http, "127.0.0.3") as on_a,
        client(pair.b.http, "127.0.0.3") as on_b,
    ):
        clients = [on_a, on_b]
        responses = [
            token(clients[i % 2], "alice", "townsquare-demo", forwarded_for=forged(i))
            for i in range(8)
        ]
        assert [r.status_code for r in responses] == [200] * 5 + [429] * 3
        throttled = responses[5]
        assert "throttled" in throttled.json()["detail"]
        assert int(throttled.headers["Retry-After"]) > 0
    # Another address has its own allowance.
    with client(pair.b.http, "127.0.0.4") as other:
        assert token(other, "alice", "townsquare-demo").status_code == 200


# --- behind nginx -----------------------------------------------------------------------------


def test_behind_nginx_the_lock_is_the_real_clients(tmp_path: Path) -> None:
    """With TRUSTED_PROXIES=127.0.0.1 the workers count nginx's client, not nginx and not
    the client's own X-Forwarded-For (deploy/nginx.conf overwrites it)."""
    with run_server(
        tmp_path,
        TRUSTED_PROXIES="127.0.0.1",
        LOGIN_FAILURE_LIMIT=str(LIMIT),
        LOGIN_COOLOFF_SECONDS=str(COOLOFF),
        TOKEN_RATE="100000/min",
    ) as server:
        create_users(server, "proxied-user")
        with run_nginx(tmp_path / "nginx", [server.port]) as port:
            base = f"http://127.0.0.1:{port}"
            with client(base, "127.0.0.8") as guesser:
                statuses = [
                    token(guesser, f"nobody-{i}", "guess", forwarded_for=forged(i)).status_code
                    for i in range(LIMIT + 5)
                ]
                assert statuses == [401] * (LIMIT - 1) + [429] * 6
                assert_locked_json(token(guesser, "proxied-user", PASSWORD, forged(99)))
            # Another client of the same nginx is not locked: the lock is 127.0.0.8's.
            with client(base, "127.0.0.9") as neighbour:
                assert token(neighbour, "proxied-user", PASSWORD).status_code == 200
        # The worker logged the real client addresses, never a forged one.
        log = server.log()
        assert "127.0.0.8:" in log
        assert "203.0.113." not in log
