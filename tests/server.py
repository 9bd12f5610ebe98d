"""Run a real Townsquare server process (uvicorn) on a free port, for integration tests."""

from __future__ import annotations

import atexit
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.pg import copy_of_template, create_template, scratch_postgres

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "integration-test-secret-key-not-for-production-0123456789abcdef"
#: What realtime.events logs when it refuses an event; a server test's log must not have it.
INVALID_EVENT_LINE = "event=invalid_event"


def _port_pool() -> range:
    """The ports ``free_port`` hands out in this process.

    Below the kernel's ephemeral range (``ip_local_port_range``, 32768-60999 by default), so
    no outgoing connection of any test takes one between the pick and the server's bind; and
    under pytest-xdist (``PYTEST_XDIST_WORKER=gw<n>``) a slice of 1,000 per worker, so two
    workers never pick the same one.
    """
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    low, high = 15000, max(ephemeral_low, 16000)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit() and high - low >= 2000:
        start = low + int(worker[2:]) % ((high - low) // 1000) * 1000
        return range(start, start + 1000)
    return range(low, high)


_NEXT_PORT: list[int] = []


def free_port() -> int:
    """A port of 127.0.0.1 that nothing is bound to now (see ``_port_pool``).

    Ports are handed out in turn from a random start, so a process does not pick again a port
    it gave out shortly before, even when that one's server has not bound it yet.
    """
    pool = _port_pool()
    if not _NEXT_PORT:
        _NEXT_PORT.append(random.randrange(len(pool)))
    for _ in range(len(pool)):
        port = pool[_NEXT_PORT[0]]
        _NEXT_PORT[0] = (_NEXT_PORT[0] + 1) % len(pool)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {pool}")


def lost_the_port(log: str) -> bool:
    """Whether a server's log says another process had bound its port first (EADDRINUSE)."""
    return "address already in use" in log.lower()


@dataclass
class Server:
    """A running server: its base URLs, environment and log file."""

    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def origin(self) -> str:
        return self.http

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def manage(self, *args: str) -> str:
        """Run a management command against the server's database."""
        out = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return out.stdout


def wait_serving(
    url: str,
    process: subprocess.Popen[bytes],
    log: Callable[[], str],
    *,
    timeout: float = 30,
    any_answer: bool = False,
    interval: float = 0.1,
) -> None:
    """Wait until ``url`` answers 200 (any HTTP answer with ``any_answer``).

    Raises:
        RuntimeError: the process exited first, or ``timeout`` seconds passed; with the log.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited early:\n{log()[-4000:]}")
        try:
            status = httpx.get(url, timeout=1).status_code
            if any_answer or status == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}: the server did not start in {timeout} s:\n{log()[-4000:]}")
        time.sleep(interval)


@contextmanager
def run_server_on(database: str, workdir: Path, **env_extra: str) -> Iterator[Server]:
    """``run_server`` on a fresh database of the kind named: ``sqlite`` (a file in
    ``workdir``) or ``postgres`` (a scratch database, dropped afterwards)."""
    with ExitStack() as stack:
        url = f"sqlite:///{workdir / 'db.sqlite3'}"
        if database == "postgres":
            url = stack.enter_context(scratch_postgres())
        env: dict[str, Any] = {"DATABASE_URL": url, **env_extra}
        yield stack.enter_context(run_server(workdir, **env))


_PREPARED: dict[str, Path] = {}


def _prepared_dir() -> Path:
    """This process's directory of shared server files, removed when the process exits."""
    if "dir" not in _PREPARED:
        path = Path(tempfile.mkdtemp(prefix="townsquare-servers-"))
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        _PREPARED["dir"] = path
    return _PREPARED["dir"]


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=180,
    )


_PG_TEMPLATES: dict[str, str] = {}


def _copy_postgres_template(env: dict[str, str]) -> bool:
    """Fill a fresh scratch PostgreSQL database (``tests.pg.scratch_postgres``) with a copy
    of one migrated and demo-loaded once per process and settings module; False when it is
    not such a database (then it is migrated and loaded as any other)."""
    key = env.get("DJANGO_SETTINGS_MODULE", "")
    if key not in _PG_TEMPLATES:
        template = create_template()
        template_env = {**env, "DATABASE_URL": template}
        template_env.pop("REDIS_URL", None)
        _manage(template_env, "migrate", "--noinput", "-v", "0")
        _manage(template_env, "demo")
        _PG_TEMPLATES[key] = template
    return copy_of_template(env["DATABASE_URL"], _PG_TEMPLATES[key])


def _prepare(env: dict[str, str], workdir: Path) -> None:
    """Migrate and load the demo data into ``env``'s database, and collect static files
    into its ``STATIC_ROOT``, reusing what this process prepared before where it can."""
    shared_static = str(_prepared_dir() / "static")
    if env["STATIC_ROOT"] != shared_static:
        _manage(env, "collectstatic", "--noinput", "-v", "0")
    elif "static" not in _PREPARED:
        _manage(env, "collectstatic", "--noinput", "-v", "0")
        _PREPARED["static"] = Path(shared_static)
    database = workdir / "db.sqlite3"
    url = env["DATABASE_URL"]
    if url.startswith("postgres") and _copy_postgres_template(env):
        return
    if url != f"sqlite:///{database}" or database.exists():
        _manage(env, "migrate", "--noinput", "-v", "0")
        _manage(env, "demo")
        return
    key = f"sqlite:{env.get('DJANGO_SETTINGS_MODULE', '')}"
    if key not in _PREPARED:
        template = _prepared_dir() / f"demo-{len(_PREPARED)}.sqlite3"
        template_env = {**env, "DATABASE_URL": f"sqlite:///{template}"}
        template_env.pop("REDIS_URL", None)
        _manage(template_env, "migrate", "--noinput", "-v", "0")
        _manage(template_env, "demo")
        _PREPARED[key] = template
    shutil.copyfile(_PREPARED[key], database)


def server_env(workdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
            # The test settings with a fast password hasher (tests/server_settings.py).
            "DJANGO_SETTINGS_MODULE": "tests.server_settings",
            "SECRET_KEY": SECRET_KEY,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DEBUG": "0",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            "STATIC_ROOT": str(_prepared_dir() / "static"),
            "TOKEN_RATE": "10000/min",
            # Every test client signs in from 127.0.0.1: one test's wrong passwords must not
            # lock the next one out (tests/test_server_signin.py sets its own limits).
            "LOGIN_FAILURE_LIMIT": "100000",
            # Every event the server publishes is checked against its declaration
            # (realtime.events); a refused one logs INVALID_EVENT_LINE, and run_server fails.
            "TOWNSQUARE_VALIDATE_EVENTS": "1",
        }
    )
    env.update(extra)
    return env


def _wait_workers(server: Server, extra_args: tuple[str, ...], timeout: float = 30) -> None:
    """With ``--workers N``, wait until every worker has logged its start-up (at INFO).

    The first worker answers while the others may still be importing Django (seconds on a busy
    machine); until they accept, the kernel hands every connection to the first, and a test
    that spreads sockets over the workers would see only one.
    """
    args = " ".join(extra_args).replace("=", " ").split()
    if "--workers" not in args or server.env.get("LOG_LEVEL", "INFO") not in ("INFO", "DEBUG"):
        return
    workers = int(args[args.index("--workers") + 1])
    deadline = time.monotonic() + timeout
    while server.log().count("Application startup complete.") < workers:
        if time.monotonic() > deadline or server.process.poll() is not None:
            return  # the test finds out what is wrong, with the log
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def run_server(
    workdir: Path, *, extra_args: tuple[str, ...] = (), prepare: bool = True, **env_extra: str
) -> Iterator[Server]:
    """Migrate, load demo data, collect static files, start ``manage.py serve``; stop on exit.

    Static files are collected once per test process into a shared ``STATIC_ROOT`` (unless
    the caller names its own), and a fresh SQLite database starts as a copy of one migrated
    and demo-loaded once per process: each costs several Django start-ups, which the whole
    suite would otherwise pay for every server it starts.
    """
    env = server_env(workdir, **env_extra)
    if prepare:
        _prepare(env, workdir)
    # The port is picked after the slow preparation, right before the server binds it; a
    # server that lost it anyway (another process bound it first) is started on another.
    for attempt in range(3):
        port = free_port()
        log_path = workdir / f"server-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "manage.py", "serve", "--port", str(port), *extra_args],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = Server(port=port, env=env, log_path=log_path, process=process)
        try:
            wait_serving(f"{server.http}/accounts/login/", process, server.log)
            _wait_workers(server, extra_args)
            break
        except RuntimeError:
            _stop(process)
            if attempt == 2 or not lost_the_port(server.log()):
                raise
    try:
        yield server
    finally:
        _stop(process)
    refused = [line for line in server.log().splitlines() if INVALID_EVENT_LINE in line]
    assert not refused, "the server refused undeclared or malformed events:\n" + "\n".join(refused)
