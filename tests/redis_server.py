"""A private ``redis-server`` for fault tests: its own free port, its own temporary directory.

Tests that stop and restart Redis must never touch the machine's shared Redis (6379), which
other tests and other engineers use. ``private_redis(tmpdir)`` starts a throw-away server
(no persistence: ``--save "" --appendonly no``), and ``RedisServer.stop`` / ``start`` /
``restart`` act on that one process only, by its PID. A restart keeps the port, so clients
configured with ``url`` reconnect to the new process; like a real restart without
persistence, it comes back empty.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.server import free_port
from tests.services import need

REDIS_SERVER = os.environ.get("TOWNSQUARE_REDIS_SERVER", "redis-server")


def redis_server_binary() -> str | None:
    """The ``redis-server`` executable, or None when it is not installed."""
    return shutil.which(REDIS_SERVER)


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One private redis-server process on 127.0.0.1; stopped and started by its PID."""

    def __init__(self, binary: str, directory: Path, port: int | None = None) -> None:
        self.binary = binary
        self.directory = directory
        self.port = port if port is not None else free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, timeout: float = 10.0) -> None:
        """Start redis-server on ``self.port`` and wait until it answers PING."""
        if self.running:
            raise RuntimeError(f"redis-server already running (pid {self.pid})")
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.directory),
                    "--daemonize",
                    "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while not _answers_ping(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited early:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer in {timeout} s:\n{self.log()}")
            time.sleep(0.02)

    def stop(self, *, kill: bool = True, timeout: float = 10.0) -> None:
        """Stop this redis-server process (SIGKILL by default, as a crash; else SIGTERM)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout)

    def restart(self, *, down_seconds: float = 0.0) -> None:
        """Stop, stay down ``down_seconds``, start again on the same port (empty)."""
        self.stop()
        time.sleep(down_seconds)
        self.start()


@contextmanager
def private_redis(directory: Path) -> Iterator[RedisServer]:
    """Run a private redis-server in ``directory`` on a free port; stop it on exit.

    Skips the test when redis-server is not installed (fails under
    ``TOWNSQUARE_REQUIRE_SERVICES=1``).
    """
    binary = redis_server_binary()
    need(binary is not None, f"{REDIS_SERVER} not installed (apt-get install redis-server)")
    assert binary is not None
    server = RedisServer(binary, directory)
    for attempt in range(3):
        try:
            server.start()
            break
        except RuntimeError:
            # Another process may have taken the free port between picking and binding it.
            if attempt == 2:
                raise
            server.port = free_port()
    try:
        yield server
    finally:
        server.stop()
