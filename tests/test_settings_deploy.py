"""The deployment settings in subprocesses: a missing or default SECRET_KEY refuses to start,
and ``check --deploy`` passes with exactly the environment docs/operations.md documents.

Each case runs ``townsquare.settings`` (not the tests' ``settings_test``) in a fresh Python
with an environment built here, not inherited.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.server import ROOT, free_port

OPERATIONS = ROOT / "docs" / "operations.md"
DEV_KEY = "insecure-dev-only-townsquare-secret-key-change-me-0123456789"
ENTRY_POINTS = {
    "serve": ["manage.py", "serve", "--port", "0"],
    "migrate": ["manage.py", "migrate", "--noinput"],
    "asgi": ["-c", "import townsquare.asgi"],
}


def base_env(tmp_path: Path, **values: str) -> dict[str, str]:
    """A clean environment: only what Python needs, the real settings and ``values``.

    ``SECRET_KEY`` is always present (possibly empty) so that a developer's ``.env``, which
    the settings read without overriding the environment, cannot supply one.
    """
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "townsquare.settings",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "STATIC_ROOT": str(tmp_path / "static"),
            "SECRET_KEY": "",
            "DEBUG": "0",
        }
    )
    env.update(values)
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("key", ["", DEV_KEY], ids=["missing", "development"])
def test_without_a_real_key_nothing_starts(tmp_path: Path, entry: str, key: str) -> None:
    result = run(ENTRY_POINTS[entry], base_env(tmp_path, SECRET_KEY=key))
    assert result.returncode != 0
    assert "django.core.exceptions.ImproperlyConfigured: SECRET_KEY is missing" in result.stderr
    assert not (tmp_path / "db.sqlite3").exists(), "nothing may run before the refusal"


def test_debug_allows_the_development_key(tmp_path: Path) -> None:
    result = run(["manage.py", "check"], base_env(tmp_path, DEBUG="1"))
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_with_a_real_key_the_server_starts(tmp_path: Path) -> None:
    env = base_env(tmp_path, SECRET_KEY=secrets.token_urlsafe(50), LOG_LEVEL="WARNING")
    migrated = run(["manage.py", "migrate", "--noinput", "-v", "0"], env)
    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Polled as tests/server.py does: a starting server announces nothing else.
        deadline = time.monotonic() + 30
        status = None
        while status is None and time.monotonic() < deadline:
            if process.poll() is not None:
                assert process.stderr is not None
                pytest.fail(f"serve exited {process.returncode}: {process.stderr.read()}")
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code
            except httpx.TransportError:
                time.sleep(0.1)
        assert status == 200
    finally:
        process.terminate()
        process.wait(timeout=10)


def documented_environment() -> dict[str, str]:
    """The ``export NAME=value`` lines of the production block in docs/operations.md."""
    text = OPERATIONS.read_text()
    block = re.search(r"<!-- production-environment -->\n```sh\n(.*?)```", text, re.DOTALL)
    assert block, "docs/operations.md has no production-environment block"
    values: dict[str, str] = {}
    for line in block[1].splitlines():
        match = re.fullmatch(r"export ([A-Z_]+)=(\S*)\s*(#.*)?", line.strip())
        assert match, f"not an `export NAME=value` line: {line!r}"
        values[match[1]] = match[2]
    return values


def deploy_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)


def test_documented_production_environment_passes_check_deploy(tmp_path: Path) -> None:
    documented = documented_environment()
    assert {
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "TRUSTED_PROXIES",
    } <= documented.keys()
    # The one value the block cannot print: a real key.
    documented["SECRET_KEY"] = secrets.token_urlsafe(50)
    result = deploy_check(base_env(tmp_path, **documented))
    output = result.stdout + result.stderr
    assert not re.findall(r"\(([a-z_]+\.[WE]\d+)\)", output), output
    assert result.returncode == 0, output
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_without_the_production_settings_check_deploy_warns(tmp_path: Path) -> None:
    env = base_env(
        tmp_path,
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="chat.example.com",
        REDIS_URL="redis://redis-host:6379/0",
    )
    result = deploy_check(env)
    assert result.returncode != 0
    found = set(re.findall(r"\((security\.W\d+)\)", result.stderr + result.stdout))
    assert found == {"security.W004", "security.W008", "security.W012", "security.W016"}
