"""The fan-out benchmark: Townsquare against the seed stack and the limit, one command.

    .venv/bin/python bench/run.py            # full: 3 repeats, about 12 minutes
    .venv/bin/python bench/run.py --quick    # 1 repeat, shorter, fewer sockets: about 3 minutes
    .venv/bin/python bench/run.py --profile  # also py-spy on Townsquare during one S1 run

Each server is started in turn on a free port on 127.0.0.1, pinned to core 0 with
``taskset`` where available; the load generator (``bench/loadgen.py``, uvloop + picows) runs
in its own process pinned to core 1 and reports its own CPU, so that a saturated generator
is visible. Servers:

- ``seed``: the seed stack (``bench/reference/seed_stack``: daphne, ``AsyncWebsocketConsumer``,
  ``InMemoryChannelLayer``, ``json.dumps`` per recipient);
- ``limit``: ``bench/reference/limit.py``, plain ``websockets.broadcast()`` on uvloop;
- ``townsquare``: ``manage.py serve`` (uvicorn, its default WebSocket implementation), one
  worker, SQLite in a fresh temporary directory (migrate, demo, bench users and rooms),
  in-memory channel layer. Measured through its real path: a JWT-authenticated ``/ws/``
  socket, ``subscribe`` to ``chat:room:<id>``, ``chat.send`` (stored, then published).
- ``townsquare-2w`` (S5 only): two ``manage.py serve`` processes (one worker each, both on
  core 0) sharing the database and Redis (``127.0.0.1:6379`` under a scratch key prefix,
  removed afterwards; or a ``redis-server`` of its own on a free port when none answers).

Scenarios (see docs/performance.md): S1 fan-out throughput, S2 latency, S3 many rooms,
S4 idle capacity, S5 scale-out; plus a room-size sweep of S1 for the plot.

Prints a table of medians (min–max) with ratios against the seed stack and the limit and the
targets; writes the raw results to ``bench/results/<date>.json`` and the plot to
``bench/results/fanout.png``. Everything it starts it stops, by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
PYTHON = sys.executable
SECRET_KEY = "bench-run-secret-key-not-for-production-0123456789abcdefghijkl"
BENCH_PASSWORD = "bench-password-0123456789"
SERVERS = ("seed", "limit", "townsquare")
#: uvicorn's WebSocket implementations, compared by the ``impl`` scenario.
WS_IMPLEMENTATIONS = ("websockets-sansio", "websockets", "wsproto")


# --- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """Sizes and durations of one mode (full or quick)."""

    name: str
    repeats: int
    s1_clients: int
    s1_duration: float
    s1_warmup: float
    s2_rate: float
    s2_duration: float
    s3_rooms: int
    s3_clients: int
    s3_rate: float
    s3_duration: float
    s4_sockets: int
    s4_probes: int
    sweep: tuple[int, ...]
    sweep_duration: float
    drain: float
    #: Minutes the whole run may take; what does not fit is skipped (and shown as skipped).
    budget_min: float


FULL = Profile(
    name="full",
    repeats=3,
    s1_clients=100,
    s1_duration=5.0,
    s1_warmup=1.0,
    s2_rate=200.0,
    s2_duration=10.0,
    s3_rooms=50,
    s3_clients=10,
    s3_rate=20.0,
    s3_duration=8.0,
    s4_sockets=2000,
    s4_probes=5,
    sweep=(10, 30, 300),
    sweep_duration=2.5,
    drain=3.0,
    budget_min=14.0,
)
QUICK = Profile(
    name="quick",
    repeats=1,
    s1_clients=100,
    s1_duration=2.0,
    s1_warmup=0.5,
    s2_rate=200.0,
    s2_duration=3.0,
    s3_rooms=50,
    s3_clients=10,
    s3_rate=20.0,
    s3_duration=3.0,
    s4_sockets=500,
    s4_probes=3,
    sweep=(10, 300),
    sweep_duration=1.5,
    drain=2.0,
    budget_min=2.9,
)


# --- processes ------------------------------------------------------------------------------

_started: list[subprocess.Popen[bytes]] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def can_pin() -> bool:
    if shutil.which("taskset") is None or not hasattr(os, "sched_getaffinity"):
        return False
    return {0, 1} <= os.sched_getaffinity(0)


PIN = can_pin()


def pinned(core: int, argv: list[str]) -> list[str]:
    """``argv`` run on one core with ``taskset`` (which execs it: the PID stays the same)."""
    return ["taskset", "-c", str(core), *argv] if PIN else argv


def start(argv: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    _started.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop one process this script started (SIGTERM, then SIGKILL after 10 s)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc in _started:
        _started.remove(proc)


def stop_all() -> None:
    for proc in list(_started):
        stop(proc)


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early ({proc.returncode}):\n{tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"server did not listen on {port} in {timeout} s:\n{tail(log)}")
        time.sleep(0.1)


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early ({proc.returncode}):\n{tail(log)}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as resp:
            if resp.status == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not ready in {timeout} s:\n{tail(log)}")
        time.sleep(0.1)


def tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Running:
    """A server under test: its ports, processes and, for Townsquare, the users/rooms file."""

    name: str
    ports: list[int]
    procs: list[subprocess.Popen[bytes]]
    config: Path | None = None

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for p in self.procs:
            stop(p)


# --- the servers ----------------------------------------------------------------------------


class Workdir:
    """A scratch directory for logs and databases, removed at the end."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="townsquare-bench-"))
        self.others: list[Path] = []

    def mkdtemp(self, where: Path) -> Path:
        """Another scratch directory, under ``where`` (e.g. a tmpfs), removed with this one."""
        path = Path(tempfile.mkdtemp(prefix="townsquare-bench-", dir=where))
        self.others.append(path)
        return path

    def cleanup(self) -> None:
        for path in [self.path, *self.others]:
            shutil.rmtree(path, ignore_errors=True)


def start_seed(work: Workdir) -> Running:
    port = free_port()
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="seed_project.settings",
        SEED_DB=str(work.path / "seed.sqlite3"),
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(BENCH / "reference" / "seed_stack"),
    )
    log = work.path / "seed.log"
    argv = [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
    proc = start(
        pinned(0, [*argv, "seed_project.routing:application"]),
        cwd=BENCH / "reference" / "seed_stack",
        env=env,
        log=log,
    )
    wait_port(port, proc, log)
    return Running("seed", [port], [proc])


def start_limit(work: Workdir) -> Running:
    port = free_port()
    log = work.path / "limit.log"
    proc = start(
        pinned(0, [PYTHON, str(BENCH / "reference" / "limit.py"), "--port", str(port)]),
        cwd=ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        log=log,
    )
    wait_port(port, proc, log)
    return Running("limit", [port], [proc])


class Townsquare:
    """A Townsquare deployment: a prepared database, then one or more ``serve`` processes."""

    def __init__(
        self,
        work: Workdir,
        name: str,
        *,
        redis_url: str = "",
        prefix: str = "",
        db_dir: Path | None = None,
        db_query: str = "",
        overrides: dict[str, str] | None = None,
    ) -> None:
        self.work = work
        self.name = name
        self.dir = (work.mkdtemp(db_dir) if db_dir else work.path) / name
        self.dir.mkdir()
        (self.dir / "static").mkdir()
        self.config = self.dir / "users.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RT_", "PROMETHEUS"))}
        env.update(
            DATABASE_URL=f"sqlite:///{self.dir / 'db.sqlite3'}"
            + (f"?{db_query}" if db_query else ""),
            REDIS_URL=redis_url,
            SECRET_KEY=SECRET_KEY,
            ALLOWED_HOSTS="127.0.0.1,localhost",
            DEBUG="0",
            STATIC_ROOT=str(self.dir / "static"),
            PYTHONUNBUFFERED="1",
            TOKEN_RATE="100000/min",
            # Generous limits: the benchmark measures fan-out, not the rate limiter.
            RT_FRAMES_PER_SECOND="1000000",
            RT_FRAME_BURST="1000000",
            RT_OUTBOX_MAX_BYTES=str(256 * 1024 * 1024),
            RT_MAX_STREAMS_PER_SOCKET="1000",
            RT_JWT_TTL_SECONDS="86400",
            # The load generator is one address opening thousands of sockets.
            RT_MAX_SOCKETS_PER_ADDRESS="0",
            RT_MAX_SOCKETS_PER_USER="0",
        )
        if prefix:
            env["REDIS_PREFIX"] = prefix
        env.update(overrides or {})
        self.env = env

    def prepare(self, users: int, rooms: int) -> float:
        """Migrate, load the demo data, create the bench users and rooms; returns seconds."""
        started = time.monotonic()
        log = self.dir / "prepare.log"
        for args in (["migrate", "--noinput", "-v", "0"], ["demo"]):
            with log.open("ab") as out:
                subprocess.run(
                    [PYTHON, "manage.py", *args],
                    cwd=ROOT,
                    env=self.env,
                    check=True,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=300,
                )
        with self.config.open("wb") as out, log.open("ab") as err:
            subprocess.run(
                [
                    PYTHON,
                    str(BENCH / "townsquare_setup.py"),
                    "--users",
                    str(users),
                    "--rooms",
                    str(rooms),
                    "--password",
                    BENCH_PASSWORD,
                ],
                cwd=ROOT,
                env=self.env,
                check=True,
                stdout=out,
                stderr=err,
                timeout=300,
            )
        return time.monotonic() - started

    @property
    def channel_layer(self) -> str:
        """The channel layer's backend class, as the setup script saw the settings."""
        return str(json.loads(self.config.read_text()).get("channel_layer", "?"))

    def start(self, workers: int = 1, env: dict[str, str] | None = None) -> Running:
        """Start ``workers`` serve processes; ``env`` adds to the deployment's environment."""
        procs, ports = [], []
        for i in range(workers):
            port = free_port()
            log = self.dir / f"serve-{i}.log"
            procs.append(
                start(
                    pinned(0, [PYTHON, "manage.py", "serve", "--port", str(port)]),
                    cwd=ROOT,
                    env={**self.env, **(env or {})},
                    log=log,
                )
            )
            ports.append(port)
        for proc, port, i in zip(procs, ports, range(workers), strict=True):
            wait_http(f"http://127.0.0.1:{port}/healthz", proc, self.dir / f"serve-{i}.log")
        running = Running(self.name, ports, procs, self.config)
        self.sign_in_first_user(ports[0])
        return running

    def sign_in_first_user(self, port: int) -> None:
        """Replace user 0's minted token with one from ``POST /api/token/`` (the real path)."""
        config = json.loads(self.config.read_text())
        body = json.dumps({"username": config["users"][0]["username"], "password": BENCH_PASSWORD})
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/token/",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            config["users"][0]["token"] = json.load(resp)["access"]
        self.config.write_text(json.dumps(config))


# --- Redis for S5 ---------------------------------------------------------------------------


class Redis:
    """127.0.0.1:6379 under a scratch prefix, or a redis-server of our own."""

    def __init__(self, work: Workdir) -> None:
        import redis

        self.prefix = f"tsbench-{uuid.uuid4().hex[:8]}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = "redis://127.0.0.1:6379/0"
        try:
            redis.Redis.from_url(self.url, socket_timeout=1).ping()
        except Exception:
            server = shutil.which("redis-server")
            if server is None:
                raise RuntimeError("no Redis on 127.0.0.1:6379 and no redis-server") from None
            port = free_port()
            log = work.path / "redis.log"
            self.proc = start(
                [
                    server,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                cwd=work.path,
                env=dict(os.environ),
                log=log,
            )
            wait_port(port, self.proc, log)
            self.url = f"redis://127.0.0.1:{port}/0"
        self.client = redis.Redis.from_url(self.url)

    def pid(self) -> int | None:
        if self.proc is not None:
            return self.proc.pid
        with contextlib.suppress(Exception):
            return int(self.client.info("server")["process_id"])
        return None

    def cleanup(self) -> int:
        """Delete this run's keys (our prefix only); stop our own server if we started one."""
        removed = 0
        with contextlib.suppress(Exception):
            keys = list(self.client.scan_iter(match=f"{self.prefix}*", count=1000))
            for i in range(0, len(keys), 500):
                removed += int(self.client.delete(*keys[i : i + 500]))
        if self.proc is not None:
            stop(self.proc)
        return removed


# --- the load generator ---------------------------------------------------------------------


def loadgen(server: Running, scenario: str, **options: Any) -> dict[str, Any]:
    """Run ``bench/loadgen.py`` once against ``server``; its JSON result."""
    kind = "townsquare" if server.name.startswith("townsquare") else server.name
    args = [
        PYTHON,
        str(BENCH / "loadgen.py"),
        "--kind",
        kind,
        "--ports",
        ",".join(map(str, server.ports)),
        "--scenario",
        scenario,
        "--server-pids",
        ",".join(map(str, server.pids)),
    ]
    if server.config is not None:
        args += ["--config", str(server.config)]
    budget = (
        options.get("warmup", 0)
        + options.get("duration", 0)
        + options.get("drain", 5)
        + options.get("settle", 0.5)
        + 60
    )
    options.setdefault("timeout", budget)
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    try:
        out = subprocess.run(
            pinned(1, args),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=budget + 30,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": "load generator timed out", "scenario": scenario}
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {
            "ok": False,
            "error": f"load generator failed ({out.returncode}): {out.stderr[-2000:]}",
            "scenario": scenario,
        }
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# --- profiling ------------------------------------------------------------------------------


def py_spy() -> str | None:
    local = Path(PYTHON).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


#: Frames every stack of a thread passes through (bootstrap, the loop's entry, the command):
#: left out of the inclusive list, which is about where the time goes below them.
GENERIC_FRAMES = (
    "threading.py",
    "concurrent/futures/thread.py",
    "asyncio/runners.py:1",
    "manage.py",
    "django/core/management/",
    "uvicorn/main.py",
    "uvicorn/server.py",
    "realtime/management/commands/serve.py",
)


def summarize_profile(raw: Path, top: int = 15) -> dict[str, Any]:
    """Top frames of a py-spy ``--format raw --threads`` file (collapsed stacks).

    ``threads``: share of the samples per thread; ``self``: where samples were taken (a leaf
    of ``Runner.run`` is the event loop's own C code: uvloop's polling, socket writes,
    callbacks); ``inclusive``: share of samples with the frame anywhere on the stack.
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames[0].startswith(("thread ", "process ")):
            thread = frames.pop(0)
            threads[thread.split(": ", 1)[-1].split("_")[0]] += count
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            if not any(g in frame for g in GENERIC_FRAMES) or frame == frames[-1]:
                inclusive[frame] += count

    def rows(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"frame": frame, "samples": n, "pct": round(100 * n / total, 1)}
            for frame, n in counter.most_common(top)
        ]

    return {
        "samples": total,
        "threads": {name: round(100 * n / total, 1) for name, n in threads.most_common()},
        "self": rows(own),
        "inclusive": rows(inclusive),
    }


def profile_s1(server: Running, profile: Profile, out_dir: Path) -> dict[str, Any] | None:
    spy = py_spy()
    if spy is None:
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return None
    raw = out_dir / f"profile-s1-townsquare{'-quick' if profile.name == 'quick' else ''}.txt"
    seconds = int(profile.s1_warmup + profile.s1_duration + 2)
    raw.unlink(missing_ok=True)  # a failed recording must not report an earlier run's file
    rec = subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(server.pids[0]),
            "--rate",
            "200",
            "--duration",
            str(seconds),
            "--format",
            "raw",
            "--threads",
            # BENCH_PYSPY_NATIVE=1: C frames too (uvloop, the interpreter), for the event loop's
            # own time; py-spy then has to pause the process for each sample.
            *(["--native"] if os.environ.get("BENCH_PYSPY_NATIVE") else ["--nonblocking"]),
            "--output",
            str(raw),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _started.append(rec)
    result = loadgen(
        server,
        "s1",
        clients=profile.s1_clients,
        duration=profile.s1_duration,
        warmup=profile.s1_warmup,
        drain=profile.drain,
    )
    try:
        rec.wait(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        rec.kill()
    if rec in _started:
        _started.remove(rec)
    if not raw.exists():
        err = rec.stderr.read().decode(errors="replace") if rec.stderr else ""
        print(f"py-spy produced nothing: {err[-500:]}", file=sys.stderr)
        return None
    summary = summarize_profile(raw)
    summary["raw"] = str(raw.relative_to(ROOT))
    summary["run"] = {k: result.get(k) for k in ("deliveries_per_s", "server_cpu_pct", "ok")}
    return summary


# --- the plan -------------------------------------------------------------------------------


@dataclass
class Results:
    """Every run's JSON, by (scenario, server), and the time budget of the whole run."""

    deadline: float = float("inf")
    runs: dict[tuple[str, str], list[dict[str, Any]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    log: Callable[[str], None] = print

    def add(self, scenario: str, server: str, result: dict[str, Any]) -> None:
        self.runs[(scenario, server)].append(result)
        self.log(f"  {scenario:<10} {server:<14} {brief(scenario, result)}")

    def fits(self, seconds: float) -> bool:
        """True when ``seconds`` more work still ends before the deadline."""
        return time.monotonic() + seconds < self.deadline

    def run(
        self,
        scenario: str,
        name: str,
        live: Live | None,
        kind: str,
        seconds: float,
        **options: Any,
    ) -> None:
        """One load-generator run on a settled server, or a 'skipped' entry when it would
        overrun the budget."""
        if live is None or not self.fits(seconds):
            self.add(scenario, name, {"ok": False, "skipped": True, "error": "skipped"})
            return
        state, idle_cpu = live.settle()
        result = loadgen(live.server, kind, **options)
        # A run that lost messages or failed may have left the server a backlog.
        live.dirty = not result.get("ok") or bool(result.get("loss")) or live.dirty
        result["server_before_run"] = state
        result["server_idle_cpu_pct"] = idle_cpu
        self.add(scenario, name, result)


class Live:
    """A server under test, restarted when a run left it busy.

    An overloaded server keeps working through its backlog after the load generator has
    gone (Townsquare: the queued ``chat.send`` frames of every socket, each a database
    write, and still published to the room); the next run would measure the leftovers (the
    load generator tells its own messages from older ones, but the server's time is spent).
    Before each run after the first, ``settle`` restarts the server when the last run lost
    messages or failed, and otherwise waits until its CPU falls under half a core (an
    I/O-bound backlog can stay under that: hence the first rule), restarting it after 3 s.
    """

    #: CPU share of one core under which a server counts as settled. Not zero: Townsquare
    #: rebuilds its dashboard snapshot every second even when idle.
    QUIET = 0.5

    def __init__(self, name: str, start: Callable[[], Running]) -> None:
        self.name = name
        self._start = start
        self.server = start()
        self.used = False
        self.dirty = False
        self.restarts = 0

    def cpu(self) -> float:
        import psutil

        total = 0.0
        for pid in self.server.pids:
            with contextlib.suppress(psutil.Error):
                total += sum(psutil.Process(pid).cpu_times()[:2])
        return total

    def settle(self, wait: float = 3.0) -> tuple[str, float | None]:
        """``("fresh" | "settled" | "restarted", CPU % of the last idle window)``."""
        if not self.used:
            self.used = True
            return "fresh", None
        deadline = time.monotonic() + wait
        while True:
            before = self.cpu()
            time.sleep(0.5)
            share = (self.cpu() - before) / 0.5
            if self.dirty:
                why = "the last run lost messages: it may have left a backlog"
                break
            if share < self.QUIET:
                return "settled", 100 * share
            if time.monotonic() >= deadline:
                why = f"still at {100 * share:.0f}% CPU after the last run"
                break
        print(f"  ({self.name}: {why}; restarting)", flush=True)
        self.dirty = False
        self.server.stop()
        self.server = self._start()
        self.restarts += 1
        return "restarted", 100 * share

    def stop(self) -> None:
        self.server.stop()


def brief(scenario: str, r: dict[str, Any]) -> str:
    if r.get("skipped"):
        return "SKIPPED: it would overrun the time budget"
    if not r.get("ok"):
        return f"FAILED: {r.get('error')}"
    gen = f"gen {r.get('gen_cpu_pct') or 0:.0f}% srv {r.get('server_cpu_pct') or 0:.0f}%"
    if scenario.startswith(("s1", "sweep", "s5-s1", "impl")):
        return (
            f"{r['deliveries_per_s']:,.0f} deliveries/s, loss {r['loss']}, "
            f"{r.get('server_us_per_delivery') or 0:.1f} µs/delivery "
            f"({r.get('server_system_pct_of_cpu') or 0:.0f}% in the kernel), {gen}"
        )
    if scenario == "s4":
        return (
            f"{r['rss_per_socket_kib']:.1f} KiB/socket, open {r['open_s']:.2f} s, "
            f"reach-all {ms(r.get('reach_all_ms'))} ms, loss {r['loss']}, {gen}"
        )
    return (
        f"p50 {ms(r['p50_ms'])} ms, p99 {ms(r['p99_ms'])} ms, max {ms(r['max_ms'])} ms, "
        f"loss {r['loss']}, {gen}"
    )


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def s1_options(
    p: Profile, clients: int | None = None, duration: float | None = None
) -> dict[str, Any]:
    return {
        "clients": clients or p.s1_clients,
        "duration": duration or p.s1_duration,
        "warmup": p.s1_warmup,
        "drain": p.drain,
    }


def s2_options(p: Profile) -> dict[str, Any]:
    return {"clients": p.s1_clients, "rate": p.s2_rate, "duration": p.s2_duration, "drain": p.drain}


def s3_options(p: Profile) -> dict[str, Any]:
    return {
        "rooms": p.s3_rooms,
        "clients": p.s3_clients,
        "rate": p.s3_rate,
        "duration": p.s3_duration,
        "drain": p.drain,
    }


def s4_options(p: Profile) -> dict[str, Any]:
    return {
        "clients": p.s4_sockets,
        "probes": p.s4_probes,
        "drain": p.drain,
        "duration": 0,
        "settle": 1.0,
        "timeout": 240,
    }


def expected_seconds(options: dict[str, Any], connect: float = 3.0) -> float:
    """A generous guess of one run's wall time (for the budget)."""
    return (
        options.get("warmup", 0)
        + options.get("duration", 0)
        + options.get("settle", 0.5)
        + options.get("drain", 0) / 2
        + connect
    )


def run_plan(args: argparse.Namespace, p: Profile, work: Workdir, res: Results) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    servers = [s for s in SERVERS if s in args.servers]
    scenarios = set(args.scenarios)
    ts_users = max(p.s1_clients, 100)
    ts_rooms = max(p.s3_rooms, 1)
    db_dir = Path(args.db_dir) if args.db_dir else None
    tuning: dict[str, Any] = {"db_dir": db_dir, "db_query": args.db_query, "overrides": args.env}
    ts: Townsquare | None = None
    if "townsquare" in servers:
        ts = Townsquare(work, "townsquare", **tuning)
        extra["townsquare_prepare_s"] = ts.prepare(ts_users, ts_rooms)

    def starter(name: str) -> Callable[[], Running]:
        if name == "seed":
            return lambda: start_seed(work)
        if name == "limit":
            return lambda: start_limit(work)
        assert ts is not None
        return ts.start

    s1, s2, s3, s4 = s1_options(p), s2_options(p), s3_options(p), s4_options(p)
    for name in servers:
        print(f"[{name}]", flush=True)
        live = Live(name, starter(name))
        try:
            # Closed-loop runs first (they leave no backlog), then the paced ones.
            if "s1" in scenarios:
                for _ in range(p.repeats):
                    res.run("s1", name, live, "s1", expected_seconds(s1), **s1)
            if "sweep" in scenarios:
                for size in p.sweep:
                    options = s1_options(p, clients=size, duration=p.sweep_duration)
                    seconds = expected_seconds(options, connect=1 + size / 100)
                    res.run(f"sweep-{size}", name, live, "s1", seconds, **options)
            if args.profile and name == "townsquare":
                live.settle()
                extra["profile"] = profile_s1(live.server, p, RESULTS)
            for scenario, options in (("s2", s2), ("s3", s3)):
                if scenario in scenarios:
                    for _ in range(p.repeats):
                        seconds = expected_seconds(options)
                        res.run(scenario, name, live, scenario, seconds, **options)
        finally:
            live.stop()
        if "s4" in scenarios:
            # A fresh server per repeat: RSS per socket is measured from a clean heap.
            seconds = 12 + p.s4_sockets / 100
            for _ in range(p.repeats):
                if not res.fits(seconds):
                    res.run("s4", name, None, "s4", seconds)
                    continue
                fresh = Live(name, starter(name))
                try:
                    res.run("s4", name, fresh, "s4", 0, **s4)
                finally:
                    fresh.stop()

    if "s5" in scenarios and "townsquare" in args.servers:
        print("[townsquare-2w]", flush=True)
        two = "townsquare-2w"
        seconds = 10 + p.repeats * (expected_seconds(s1) + expected_seconds(s2))
        if not res.fits(seconds):
            for scenario in ("s5-s1", "s5-s2"):
                res.run(scenario, two, None, scenario, seconds)
            run_implementations(p, ts, scenarios, res, s1)
            return extra
        redis = Redis(work)
        extra["s5_redis"] = {
            "url": redis.url,
            "prefix": redis.prefix,
            "own_server": bool(redis.proc),
        }
        try:
            ts2 = Townsquare(work, two, redis_url=redis.url, prefix=redis.prefix, **tuning)
            ts2.prepare(ts_users, ts_rooms)
            extra["s5_redis"]["channel_layer"] = ts2.channel_layer
            print(f"  (channel layer: {ts2.channel_layer})", flush=True)
            live = Live(two, lambda: ts2.start(workers=2))
            redis_pid = redis.pid()
            try:
                for scenario, kind, options in (("s5-s1", "s1", s1), ("s5-s2", "s2", s2)):
                    for _ in range(p.repeats):
                        with cpu_of(redis_pid) as redis_cpu:
                            res.run(scenario, two, live, kind, expected_seconds(options), **options)
                        res.runs[(scenario, two)][-1]["redis_cpu_s"] = redis_cpu()
            finally:
                live.stop()
        finally:
            extra["s5_redis"]["keys_removed"] = redis.cleanup()
    run_implementations(p, ts, scenarios, res, s1)
    return extra


def run_implementations(
    p: Profile, ts: Townsquare | None, scenarios: set[str], res: Results, s1: dict[str, Any]
) -> None:
    """The ``impl`` scenario, last (it is what a tight time budget skips first)."""
    if "impl" not in scenarios or ts is None:
        return
    # The same S1 load on each of uvicorn's WebSocket implementations (serve --ws, here
    # through SERVE_WS): the default of `serve` and `./run` is the fastest correct one.
    print("[townsquare by WebSocket implementation]", flush=True)
    for impl in WS_IMPLEMENTATIONS:
        live = Live(f"townsquare@{impl}", partial(ts.start, env={"SERVE_WS": impl}))
        try:
            for _ in range(p.repeats):
                res.run(f"impl-{impl}", "townsquare", live, "s1", expected_seconds(s1), **s1)
        finally:
            live.stop()


@contextlib.contextmanager
def cpu_of(pid: int | None) -> Iterator[Callable[[], float | None]]:
    """CPU seconds ``pid`` (Redis) used inside the block, readable after it."""
    import psutil

    proc = None
    if pid is not None:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
    spent: list[float] = []
    before = sum(proc.cpu_times()[:2]) if proc else 0.0
    try:
        yield lambda: spent[0] if spent else None
    finally:
        if proc is not None:
            with contextlib.suppress(psutil.Error):
                spent.append(sum(proc.cpu_times()[:2]) - before)


# --- the table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    scenario: str
    label: str
    key: str
    fmt: str
    ratio: bool = True


FIGURES = [
    Figure("s1", "deliveries/s", "deliveries_per_s", "{:,.0f}"),
    Figure("s1", "server µs/delivery", "server_us_per_delivery", "{:.2f}"),
    Figure("s1", "loss", "loss", "{:,.0f}", ratio=False),
    Figure("s2", "p50 ms", "p50_ms", "{:.2f}"),
    Figure("s2", "p99 ms", "p99_ms", "{:.2f}"),
    Figure("s2", "max ms", "max_ms", "{:.1f}"),
    Figure("s2", "loss", "loss", "{:,.0f}", ratio=False),
    Figure("s3", "p50 ms", "p50_ms", "{:.2f}"),
    Figure("s3", "p99 ms", "p99_ms", "{:.2f}"),
    Figure("s3", "loss", "loss", "{:,.0f}", ratio=False),
    Figure("s4", "KiB/idle socket", "rss_per_socket_kib", "{:.1f}"),
    Figure("s4", "open all s", "open_s", "{:.2f}"),
    Figure("s4", "reach all ms", "reach_all_ms", "{:.1f}"),
    Figure("s4", "loss", "loss", "{:,.0f}", ratio=False),
    Figure("s5-s1", "deliveries/s", "deliveries_per_s", "{:,.0f}", ratio=False),
    Figure("s5-s1", "deliveries/CPU-s", "deliveries_per_server_cpu_s", "{:,.0f}", ratio=False),
    Figure("s5-s1", "loss", "loss", "{:,.0f}", ratio=False),
    Figure("s5-s2", "p99 ms", "p99_ms", "{:.2f}", ratio=False),
    Figure("s5-s2", "loss", "loss", "{:,.0f}", ratio=False),
]


def values(res: Results, scenario: str, server: str, key: str) -> list[float]:
    out = []
    for r in res.runs.get((scenario, server), []):
        v = r.get(key)
        if r.get("ok") and isinstance(v, (int, float)):
            out.append(float(v))
    return out


def median(res: Results, scenario: str, server: str, key: str) -> float | None:
    v = values(res, scenario, server, key)
    return statistics.median(v) if v else None


def cell(v: list[float], fmt: str) -> str:
    if not v:
        return "-"
    m = fmt.format(statistics.median(v))
    if len(v) == 1:
        return m
    return f"{m} ({fmt.format(min(v))}–{fmt.format(max(v))})"


def targets(res: Results) -> dict[str, tuple[str, bool | None]]:
    """Each scenario's target for Townsquare: (text, met; None when not measured)."""
    ts = "townsquare"
    out: dict[str, tuple[str, bool | None]] = {}

    def all_zero(scenario: str, server: str, key: str = "loss") -> bool | None:
        runs = res.runs.get((scenario, server), [])
        if not runs:
            return None
        return all(r.get("ok") and r.get(key) == 0 for r in runs)

    d, seed, lim = (median(res, "s1", s, "deliveries_per_s") for s in (ts, "seed", "limit"))
    if d is not None and seed and lim:
        met = d >= 10 * seed and d >= 0.4 * lim and bool(all_zero("s1", ts))
        out["s1"] = (f"≥10× seed ({d / seed:.1f}×), ≥40% limit ({100 * d / lim:.0f}%), 0 loss", met)
    for s in ("s2", "s3"):
        p99 = median(res, s, ts, "p99_ms")
        if p99 is not None:
            out[s] = (f"p99 ≤ 20 ms ({p99:.1f}), 0 loss", p99 <= 20 and bool(all_zero(s, ts)))
    kib, reach = median(res, "s4", ts, "rss_per_socket_kib"), median(res, "s4", ts, "reach_all_ms")
    if kib is not None and reach is not None:
        out["s4"] = (
            f"≤ 30 KiB/socket ({kib:.1f}), reach all ≤ 100 ms ({reach:.0f})",
            kib <= 30 and reach <= 100,
        )
    eff1 = median(res, "s1", ts, "deliveries_per_server_cpu_s")
    eff2 = median(res, "s5-s1", "townsquare-2w", "deliveries_per_server_cpu_s")
    p99 = median(res, "s5-s2", "townsquare-2w", "p99_ms")
    if eff2 is not None and p99 is not None:
        zero = bool(all_zero("s5-s1", "townsquare-2w")) and bool(all_zero("s5-s2", "townsquare-2w"))
        share = f"{100 * eff2 / eff1:.0f}%" if eff1 else "?"
        met = zero and p99 <= 50 and eff1 is not None and eff2 >= 0.7 * eff1
        out["s5"] = (
            f"0 loss, p99 ≤ 50 ms ({p99:.1f}), deliveries/CPU-s ≥ 70% of 1 worker ({share})",
            met,
        )
    return out


def implementation_table(res: Results) -> str:
    """S1 on Townsquare under each of uvicorn's WebSocket implementations (``impl``)."""
    lines = []
    for impl in WS_IMPLEMENTATIONS:
        runs = res.runs.get((f"impl-{impl}", "townsquare"), [])
        rate = values(res, f"impl-{impl}", "townsquare", "deliveries_per_s")
        cost = values(res, f"impl-{impl}", "townsquare", "server_us_per_delivery")
        if runs:
            lines.append(
                f"  {impl:<19}{cell(rate, '{:,.0f}'):<30}{cell(cost, '{:.2f}'):<24}"
                f"loss {sum(r.get('loss', 0) or 0 for r in runs)}"
            )
    if not lines:
        return ""
    head = "S1 on Townsquare by uvicorn WebSocket implementation (serve --ws):"
    return "\n".join(
        [head, f"  {'implementation':<19}{'deliveries/s':<30}{'server µs/delivery':<24}", *lines]
    )


def table(res: Results) -> tuple[str, list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    for f in FIGURES:
        servers = ["townsquare-2w"] if f.scenario.startswith("s5") else list(SERVERS)
        for server in servers:
            v = values(res, f.scenario, server, f.key)
            runs = res.runs.get((f.scenario, server), [])
            if not runs:
                continue
            row: dict[str, Any] = {
                "scenario": f.scenario.upper(),
                "figure": f.label,
                "server": server,
                "value": cell(v, f.fmt),
                "median": statistics.median(v) if v else None,
                "runs": len(runs),
                "failed": sum(1 for r in runs if not r.get("ok") and not r.get("skipped")),
                "skipped": sum(1 for r in runs if r.get("skipped")),
            }
            if f.ratio and v:
                for ref in ("seed", "limit"):
                    base = median(res, f.scenario, ref, f.key)
                    row[f"x_{ref}"] = statistics.median(v) / base if base else None
            gens = values(res, f.scenario, server, "gen_cpu_pct")
            srvs = values(res, f.scenario, server, "server_cpu_pct")
            row["gen_cpu"] = statistics.median(gens) if gens else None
            row["srv_cpu"] = statistics.median(srvs) if srvs else None
            rows.append(row)
    goals = targets(res)
    header = (
        f"{'scen.':<6}{'figure':<20}{'server':<15}{'median (min–max)':<34}"
        f"{'×seed':>8}{'×limit':>8}{'gen%':>6}{'srv%':>6}  target"
    )
    lines = [header, "-" * len(header)]
    shown: set[str] = set()
    last = ""
    for row in rows:
        scen = row["scenario"].lower().split("-")[0]
        if last and row["scenario"] != last:
            lines.append("")
        last = row["scenario"]

        def ratio(key: str, row: dict[str, Any] = row) -> str:
            v = row.get(key)
            return f"{v:.2f}" if isinstance(v, float) else ""

        gen_pct = row["gen_cpu"]
        gen_text = "" if gen_pct is None else f"{gen_pct:.0f}{'!' if gen_pct > 90 else ''}"
        srv_text = "" if row["srv_cpu"] is None else f"{row['srv_cpu']:.0f}"
        target = ""
        if row["server"].startswith("townsquare") and scen in goals and scen not in shown:
            text, met = goals[scen]
            target = f"{'MET' if met else 'NOT MET'}: {text}"
            shown.add(scen)
            row["target"] = {"text": text, "met": met}
        failed = f" [{row['failed']} failed]" if row["failed"] else ""
        if row["skipped"]:
            failed += f" [{row['skipped']} skipped]"
        lines.append(
            f"{row['scenario']:<6}{row['figure']:<20}{row['server']:<15}"
            f"{row['value'] + failed:<34}{ratio('x_seed'):>8}{ratio('x_limit'):>8}"
            f"{gen_text:>6}{srv_text:>6}  {target}"
        )
    lines.append("")
    lines.append(
        "gen% / srv%: CPU of the load generator / the server(s) over the measured window, in % "
        "of one core ('!' = generator above 90%: saturated, the server figure is a lower bound)."
    )
    lines.append("×seed, ×limit: this median ÷ the reference's median from the same run.")
    return "\n".join(lines), rows


def cost_model(res: Results, p: Profile) -> dict[str, dict[str, float]]:
    """Server CPU per message = fixed + per_recipient × room size, fitted over S1 and the sweep.

    ``fixed`` is what one message costs whatever the room size (reading the client frame,
    for Townsquare storing it, publishing it, the ack); ``per_recipient`` what each socket in
    the room adds (the fan-out itself). Least squares over the room sizes measured.
    """
    out: dict[str, dict[str, float]] = {}
    for server in SERVERS:
        points = []
        for size in sorted({p.s1_clients, *p.sweep}):
            scenario = "s1" if size == p.s1_clients else f"sweep-{size}"
            for r in res.runs.get((scenario, server), []):
                if r.get("ok") and r.get("messages") and r.get("server_cpu_s"):
                    points.append((float(size), 1e6 * r["server_cpu_s"] / r["messages"]))
        if len({x for x, _ in points}) < 2:
            continue
        n = len(points)
        mx = sum(x for x, _ in points) / n
        my = sum(y for _, y in points) / n
        sxx = sum((x - mx) ** 2 for x, _ in points)
        slope = sum((x - mx) * (y - my) for x, y in points) / sxx
        out[server] = {"fixed_us": my - slope * mx, "per_recipient_us": slope, "points": n}
    return out


# --- the plot -------------------------------------------------------------------------------


def plot(res: Results, p: Profile, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sizes = sorted({p.s1_clients, *p.sweep})
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2), dpi=100)
    drew = False
    for server, style in (("seed", "o-"), ("limit", "s-"), ("townsquare", "^-")):
        xs, rate, cost = [], [], []
        for size in sizes:
            scenario = "s1" if size == p.s1_clients else f"sweep-{size}"
            r = median(res, scenario, server, "deliveries_per_s")
            c = median(res, scenario, server, "server_us_per_delivery")
            if r is not None and c is not None:
                xs.append(size)
                rate.append(r)
                cost.append(c)
        if xs:
            drew = True
            left.plot(xs, rate, style, label=server)
            right.plot(xs, cost, style, label=server)
    if not drew:
        plt.close(fig)
        return False
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sockets in the room")
        ax.grid(True, which="both", alpha=0.3)
    left.set_ylabel("deliveries/s (1 core)")
    right.set_ylabel("server CPU µs per delivery")
    left.legend(fontsize=8)
    fig.suptitle("S1 fan-out: one room, one sender, window 50", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


# --- main -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import psutil

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "host": platform.node(),
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "pinned": PIN,
    }


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in (
        "django",
        "channels",
        "daphne",
        "uvicorn",
        "websockets",
        "picows",
        "uvloop",
        "channels-redis",
    ):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def idle_check() -> list[float]:
    """CPU use of each core over one second before starting: is anything else running?"""
    import psutil

    return [float(x) for x in psutil.cpu_percent(interval=1.0, percpu=True)]


#: Import name → distribution of the ``bench`` extra in pyproject.toml.
BENCH_DEPENDENCIES = {
    "picows": "picows>=2.0",
    "uvloop": "uvloop>=0.19",
    "websockets": "websockets>=14",
    "psutil": "psutil>=6.0",
    "matplotlib": "matplotlib>=3.8",
    "wsproto": "wsproto>=1.2",
}


def ensure_dependencies(*, profile: bool = False) -> None:
    """Install the ``bench`` extra's missing packages into this venv (as ``./run`` installs
    the project's), so that the command works from a fresh clone; outside a venv, say how.
    py-spy (a program, not a module) only when ``--profile`` needs it."""
    import importlib.util

    missing = [d for m, d in BENCH_DEPENDENCIES.items() if importlib.util.find_spec(m) is None]
    if profile and py_spy() is None:
        missing.append("py-spy>=0.4")
    if not missing:
        return
    if sys.prefix == sys.base_prefix:
        sys.exit(f"missing {', '.join(missing)}: pip install -e '.[bench]' (in a venv)")
    print(f"installing the bench extra's missing packages: {', '.join(missing)}", flush=True)
    subprocess.run([PYTHON, "-m", "pip", "install", "-q", *missing], check=True)


def _terminated(signum: int, frame: Any) -> None:
    # SIGTERM (a CI timeout, kill): stop what we started on the way out, as for Ctrl-C.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 repeat, short, fewer sockets")
    parser.add_argument("--profile", action="store_true", help="py-spy Townsquare during S1")
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help="subset of seed,limit,townsquare"
    )
    parser.add_argument(
        "--scenarios",
        default="s1,s2,s3,s4,s5,sweep,impl",
        help="subset of s1,s2,s3,s4,s5,sweep,impl",
    )
    parser.add_argument("--repeats", type=int, default=0, help="override the mode's repeats")
    parser.add_argument(
        "--db-dir",
        default="",
        help="where Townsquare's scratch SQLite database goes (default: the system's temporary "
        "directory, a disk here); e.g. /dev/shm to take the disk out of the write path",
    )
    parser.add_argument(
        "--db-query",
        default="",
        help="query string added to Townsquare's DATABASE_URL, e.g. conn_max_age=0 "
        "(an experiment: a new connection per socket action, as before they were kept)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the Townsquare servers (an experiment), e.g. "
        "CHANNEL_LAYER=core or SERVE_WS=wsproto; repeatable",
    )
    args = parser.parse_args(argv)
    args.env = dict(item.split("=", 1) for item in args.env)
    ensure_dependencies(profile=args.profile)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    profile = QUICK if args.quick else FULL
    if args.repeats:
        profile = Profile(**{**profile.__dict__, "repeats": args.repeats})

    signal.signal(signal.SIGTERM, _terminated)
    started = time.monotonic()
    when = dt.datetime.now().astimezone()
    busy = idle_check()
    load_before = os.getloadavg()
    print(
        f"Townsquare fan-out benchmark, {profile.name} mode, {when:%Y-%m-%d %H:%M %Z}; "
        f"{'server on core 0, generator on core 1' if PIN else 'no pinning (taskset missing)'}; "
        f"CPU busy before start: {', '.join(f'{b:.0f}%' for b in busy)}; "
        f"load average {load_before[0]:.2f}",
        flush=True,
    )
    if args.db_dir or args.db_query or args.env:
        print(
            f"experiment: db_dir={args.db_dir or '-'} db_query={args.db_query or '-'} "
            f"env={args.env or '-'}",
            flush=True,
        )
    if max(busy) > 15:
        print("warning: the machine is not idle; numbers will be noisy", flush=True)

    RESULTS.mkdir(exist_ok=True)
    work = Workdir()
    res = Results(deadline=started + 60 * profile.budget_min)
    extra: dict[str, Any] = {}
    interrupted = False
    try:
        extra = run_plan(args, profile, work, res)
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: printing what was measured", flush=True)
    finally:
        stop_all()
        work.cleanup()

    text, rows = table(res)
    impls = implementation_table(res)
    if impls:
        text += "\n\n" + impls
    costs = cost_model(res, profile)
    if costs:
        text += "\n\nServer CPU per message = fixed + per recipient × room size (S1 + sweep fit):"
        for server, c in costs.items():
            text += (
                f"\n  {server:<11} {c['fixed_us']:>9,.0f} µs + {c['per_recipient_us']:>6.1f} µs × N"
            )
            if c["fixed_us"] < -1000:
                text += "   (negative fixed part: the cost per recipient grows with N)"
    elapsed = time.monotonic() - started
    load_after = os.getloadavg()
    print()
    print(text)
    print(
        f"\n{profile.name} mode, {profile.repeats} repeat(s), {elapsed / 60:.1f} min; "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    stamp = when.strftime("%Y-%m-%dT%H%M%S")
    out = RESULTS / f"{stamp}{'-quick' if args.quick else ''}.json"
    png = RESULTS / f"fanout{'-quick' if args.quick else ''}.png"
    plotted = plot(res, profile, png)
    document = {
        "date": when.isoformat(),
        "mode": profile.name,
        "profile": profile.__dict__,
        "machine": machine(),
        "versions": versions(),
        "cpu_busy_before_pct": busy,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "elapsed_s": elapsed,
        "interrupted": interrupted,
        "options": {"db_dir": args.db_dir, "db_query": args.db_query, "env": args.env},
        "extra": extra,
        "cost_model": costs,
        "table": rows,
        "runs": [
            {**r, "scenario": s, "server": server}
            for (s, server), runs in res.runs.items()
            for r in runs
        ],
    }
    out.write_text(json.dumps(document, indent=1, default=str))
    print(
        f"raw results: {out.relative_to(ROOT)}"
        + (f"; plot: {png.relative_to(ROOT)}" if plotted else "")
    )
    if extra.get("profile"):
        prof = extra["profile"]
        print(f"\npy-spy, Townsquare during S1 ({prof['samples']} samples; {prof['raw']}):")
        print("  threads: " + ", ".join(f"{k} {v}%" for k, v in prof["threads"].items()))
        print("  self:")
        for row in prof["self"][:12]:
            print(f"    {row['pct']:5.1f}%  {row['frame']}")
        print("  inclusive:")
        for row in prof["inclusive"][:15]:
            print(f"    {row['pct']:5.1f}%  {row['frame']}")
    failed = sum(1 for runs in res.runs.values() for r in runs if not r.get("ok"))
    if failed:
        print(f"{failed} run(s) failed; see {out.relative_to(ROOT)}")
    return 1 if interrupted or not res.runs else 0


if __name__ == "__main__":
    sys.exit(main())
