"""Private ``redis-server`` processes for fault tests: free ports, their own temporary directories.

Tests that stop and restart Redis must never touch the machine's shared Redis (6379), which
other tests and other engineers use. ``private_redis(tmpdir)`` starts a throw-away server
(no persistence: ``--save "" --appendonly no``), and ``RedisServer.stop`` / ``start`` /
``restart`` act on that one process only, by its PID. A restart keeps the port, so clients
configured with ``url`` reconnect to the new process; like a real restart without
persistence, it comes back empty.

``private_redises(tmpdir, n)`` starts ``n`` of them (the shards of a sharded channel layer);
``private_sentinel_group(tmpdir)`` a primary, a replica (``--replicaof``) and three
sentinels (``redis-server <conf> --sentinel``, quorum 2) watching the primary, ready for a
failover: the replica in sync, every sentinel knowing the replica and the other sentinels.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
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


def command(port: int, *args: str, timeout: float = 1.0) -> object:
    """One command to the Redis (or sentinel) on 127.0.0.1:``port``; its decoded reply.
    Raises ``redis.RedisError`` (``ConnectionError`` when nothing listens)."""
    import redis

    client = redis.Redis(
        port=port, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
    )
    try:
        return client.execute_command(*args)
    finally:
        client.close()


class RedisServer:
    """One private redis-server process on 127.0.0.1; stopped and started by its PID."""

    def __init__(
        self,
        binary: str,
        directory: Path,
        port: int | None = None,
        *,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.binary = binary
        self.directory = directory
        self.port = port if port is not None else free_port()
        #: More ``redis-server`` arguments, e.g. ``("--replicaof", "127.0.0.1", "6380")``.
        self.extra_args = tuple(extra_args)
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

    def arguments(self) -> list[str]:
        """The ``redis-server`` command line."""
        return [
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
            *self.extra_args,
        ]

    def start(self, timeout: float = 10.0) -> None:
        """Start redis-server on ``self.port`` and wait until it answers PING."""
        if self.running:
            raise RuntimeError(f"redis-server already running (pid {self.pid})")
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(self.arguments(), stdout=log, stderr=subprocess.STDOUT)
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


class SentinelServer(RedisServer):
    """One private Redis Sentinel (``redis-server <conf> --sentinel``) watching ``master``.

    Its configuration file lives in its directory: Sentinel rewrites it as it learns the
    replicas, the other sentinels and a promotion, so a restart would keep what it knew.
    """

    def __init__(
        self,
        binary: str,
        directory: Path,
        *,
        master: str,
        master_port: int,
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
    ) -> None:
        super().__init__(binary, directory)
        self.master = master
        self._conf_port: int | None = None
        self.settings = (
            f"sentinel monitor {master} 127.0.0.1 {master_port} {quorum}",
            f"sentinel down-after-milliseconds {master} {down_after_ms}",
            f"sentinel failover-timeout {master} {failover_timeout_ms}",
            f"sentinel parallel-syncs {master} 1",
        )

    def arguments(self) -> list[str]:
        conf = self.directory / "sentinel.conf"
        # Written once per port (a retry on another free port writes it again); after that
        # it is Sentinel's own.
        if self._conf_port != self.port:
            self._conf_port = self.port
            self.directory.mkdir(parents=True, exist_ok=True)
            lines = [
                f"port {self.port}",
                "bind 127.0.0.1",
                f"dir {self.directory}",
                "daemonize no",
                *self.settings,
            ]
            conf.write_text("\n".join(lines) + "\n")
        return [self.binary, str(conf), "--sentinel"]

    def master_address(self) -> tuple[str, int] | None:
        """The master's address as this sentinel names it now; None when it does not answer."""
        try:
            reply = command(self.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master)
        except Exception:
            return None
        if not isinstance(reply, list) or len(reply) != 2:
            return None
        return str(reply[0]), int(reply[1])

    def knows(self) -> tuple[int, int]:
        """(replicas, other sentinels) this sentinel knows of the master."""
        replicas = command(self.port, "SENTINEL", "REPLICAS", self.master)
        others = command(self.port, "SENTINEL", "SENTINELS", self.master)
        assert isinstance(replicas, list) and isinstance(others, list)
        return len(replicas), len(others)


def _need_binary() -> str:
    binary = redis_server_binary()
    need(binary is not None, f"{REDIS_SERVER} not installed (apt-get install redis-server)")
    assert binary is not None
    return binary


def _start(server: RedisServer) -> None:
    for attempt in range(3):
        try:
            server.start()
            return
        except RuntimeError:
            # Another process may have taken the free port between picking and binding it.
            if attempt == 2:
                raise
            server.port = free_port()


@contextmanager
def private_redis(directory: Path) -> Iterator[RedisServer]:
    """Run a private redis-server in ``directory`` on a free port; stop it on exit.

    Skips the test when redis-server is not installed (fails under
    ``TOWNSQUARE_REQUIRE_SERVICES=1``).
    """
    server = RedisServer(_need_binary(), directory)
    _start(server)
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def private_redises(directory: Path, count: int) -> Iterator[list[RedisServer]]:
    """``count`` private redis-servers (``directory/0``, ``directory/1``, ...), each on a
    free port; all stopped on exit, by PID. Skips as ``private_redis`` does."""
    with ExitStack() as stack:
        yield [stack.enter_context(private_redis(directory / str(i))) for i in range(count)]


@dataclass
class SentinelGroup:
    """A primary, its replicas and the sentinels watching it (``private_sentinel_group``)."""

    master: str
    primary: RedisServer
    replicas: list[RedisServer]
    sentinels: list[SentinelServer]

    @property
    def sentinels_setting(self) -> str:
        """``REDIS_SENTINELS`` for these sentinels: ``127.0.0.1:<port>,...``."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def master_ports(self) -> set[int | None]:
        """The master's port as each sentinel names it (None: that one did not answer)."""
        return {a[1] if (a := s.master_address()) else None for s in self.sentinels}

    def ready(self) -> bool:
        """Every replica in sync with the primary, and every sentinel knowing every replica
        and every other sentinel (they learn them over a few seconds after start)."""
        for replica in self.replicas:
            info = command(replica.port, "INFO", "replication")
            if not isinstance(info, dict) or info.get("master_link_status") != "up":
                return False
        wanted = (len(self.replicas), len(self.sentinels) - 1)
        return all(s.knows() == wanted for s in self.sentinels)

    def wait_ready(self, timeout: float = 20.0) -> float:
        """Wait until ``ready()``; return the seconds it took. ``RuntimeError`` after
        ``timeout``."""
        return _wait(self.ready, timeout, "the replicas in sync and the sentinels acquainted")

    def promoted(self) -> RedisServer | None:
        """The replica every sentinel names as the master, once they all agree on one."""
        ports = self.master_ports()
        if len(ports) != 1:
            return None
        port = next(iter(ports))
        return next((r for r in self.replicas if r.port == port), None)


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - started
        except Exception:  # not up yet
            pass
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@contextmanager
def private_sentinel_group(
    directory: Path,
    master: str = "townsquare",
    *,
    replicas: int = 1,
    sentinels: int = 3,
    quorum: int = 2,
    down_after_ms: int = 1000,
    failover_timeout_ms: int = 3000,
    ready_timeout: float = 20.0,
    wait: bool = True,
) -> Iterator[SentinelGroup]:
    """A private primary, ``replicas`` replicas of it and ``sentinels`` sentinels watching it
    as ``master`` (quorum ``quorum``: a master unreachable for ``down_after_ms`` is failed
    over), all on free ports under ``directory``; yielded once ``SentinelGroup.ready()``
    (with ``wait=False`` at once: call ``wait_ready`` before a failover; the sentinels
    name the primary from the start). Every process is stopped on exit, by PID. Skips as
    ``private_redis`` does.
    """
    binary = _need_binary()
    with ExitStack() as stack:
        primary = RedisServer(binary, directory / "primary")
        _start(primary)
        stack.callback(primary.stop)
        group = SentinelGroup(master=master, primary=primary, replicas=[], sentinels=[])
        for i in range(replicas):
            replica = RedisServer(
                binary,
                directory / f"replica{i}",
                extra_args=("--replicaof", "127.0.0.1", str(primary.port)),
            )
            _start(replica)
            stack.callback(replica.stop)
            group.replicas.append(replica)
        for i in range(sentinels):
            sentinel = SentinelServer(
                binary,
                directory / f"sentinel{i}",
                master=master,
                master_port=primary.port,
                quorum=quorum,
                down_after_ms=down_after_ms,
                failover_timeout_ms=failover_timeout_ms,
            )
            _start(sentinel)
            stack.callback(sentinel.stop)
            group.sentinels.append(sentinel)
        if wait:
            group.wait_ready(ready_timeout)
        yield group
