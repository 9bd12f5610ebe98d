"""The sizing model: measured per-unit costs, the arithmetic that turns them into a plan, and a
run that checks the arithmetic against 1, 2 and 4 worker processes over 1 and 2 Redis shards.

    .venv/bin/python bench/sizing.py            # measure + validate, 3 repeats: 10–15 minutes
    .venv/bin/python bench/sizing.py --quick    # 1 repeat, shorter: under 5 minutes
    .venv/bin/python bench/sizing.py --predict 100000 5000 --rooms 1000 --room-size 100
                                                # the model alone, from the newest results file

What runs (everything on 127.0.0.1; stopped by PID at the end):

- a scratch PostgreSQL database (``tests/pg.py``: created on the server at 127.0.0.1:5432,
  dropped afterwards) and two private ``redis-server`` processes (``tests/redis_server.py``),
  pinned to core 1 with the load generator;
- ``manage.py serve`` workers (``bench/run.py``'s ``Townsquare``), all pinned to core 0, on
  the pub/sub channel layer over one shard (``REDIS_URL=<r1>``) or two (``<r1>,<r2>``);
- the load generator, ``bench/loadgen.py``'s client driven by a multi-room closed loop
  (:class:`ManyRooms`, run as ``sizing.py --loadgen ...``, pinned to core 1): R rooms of N
  sockets, every room's first socket sending ``chat.send`` with ``--window`` messages
  un-acknowledged. Sockets go round-robin over the workers, so a room spans min(W, N) of
  them. Around the measured window it reads Redis's ``INFO`` (commands, bytes, CPU) and
  PostgreSQL's ``pg_stat_database`` (``active_time``, commits) itself.

Steps:

1. **Per-unit costs** (one shard): one worker at two room sizes (``fixed + deliver × N`` per
   message), two workers at one size (what each further worker with subscribers adds per
   message), one worker opening idle sockets (``bench/loadgen.py``'s S4: CPU per open +
   subscribe, RSS per socket). Written to ``bench/results/sizing-<date>.json`` as
   :class:`Costs`.
2. **Validation**: 20 rooms × 25 sockets on W ∈ {1, 2, 4} workers × {1, 2} shards; measured
   deliveries/s at saturation against :func:`capacity`'s prediction for one core (the
   workers share core 0: on this 2-core machine 2 and 4 workers oversubscribe it, so the
   model is checked on what each worker adds per message, not on parallel speed-up).
3. **The answer** for 100,000 sockets and 5,000 messages/s (:func:`predict`).

:func:`predict` and :func:`capacity` are pure functions of :class:`Costs`
(``tests/test_sizing.py``); docs/operations.md, "Sizing model", explains them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
for _path in (str(BENCH), str(ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import run  # noqa: E402  (bench/run.py: servers, pinning, the S4 load)

# --- the model (pure) -----------------------------------------------------------------------


@dataclass(frozen=True)
class Costs:
    """Measured per-unit costs (one core of the machine they were measured on).

    Server CPU, in µs of one core: ``message_us`` once per message (read the client frame,
    store it in a group commit, publish, ack), ``receive_us`` once per message per worker
    that has a subscriber to its stream (the layer message, decoded and encoded once for
    that worker), ``deliver_us`` per delivered frame, ``open_us`` per socket opened and
    subscribed. Memory: ``socket_kib`` per idle subscribed socket, ``worker_mib`` per
    worker without sockets. Redis: ``redis_publish_us`` CPU per message plus
    ``redis_push_us`` per subscribed worker, ``redis_commands`` and ``redis_bytes_in``
    per message. PostgreSQL: ``db_ms`` active time per stored message, ``db_commits``
    transactions per message. Connections: ``pool_max`` PostgreSQL connections at most and
    ``redis_connections`` per worker.
    """

    message_us: float = 300.0
    receive_us: float = 50.0
    deliver_us: float = 9.0
    open_us: float = 3000.0
    socket_kib: float = 27.0
    worker_mib: float = 120.0
    redis_publish_us: float = 20.0
    redis_push_us: float = 5.0
    redis_commands: float = 1.0
    redis_bytes_in: float = 400.0
    db_ms: float = 0.2
    db_commits: float = 0.5
    pool_max: int = 10
    redis_connections: int = 4

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Costs:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Plan:
    """What :func:`predict` answers. CPU in cores, memory in GiB, rates per second."""

    sockets: int
    messages_per_s: float
    rooms: int
    room_size: int
    deliveries_per_s: float
    #: Server CPU at 100% busy, by part: messages, receive (per worker), deliveries, opens.
    cpu: dict[str, float]
    cpu_cores: float
    memory_gib: float
    workers_for_cpu: int
    workers_for_memory: int
    workers: int
    #: Workers a room's sockets are spread over (expected, with least_conn).
    workers_per_room: float
    redis_cpu_cores: float
    redis_shards: int
    redis_mbit_s: float
    db_busy_connections: float
    db_connections: int
    pgbouncer: bool
    redis_client_connections: int
    #: Seconds the other workers need to take a restarted worker's sockets (opens only).
    restart_absorb_s: float

    def lines(self) -> list[str]:
        """The plan as a few lines of text."""
        parts = ", ".join(f"{k} {v:.2f}" for k, v in self.cpu.items())
        return [
            f"{self.sockets:,} sockets, {self.messages_per_s:,.0f} messages/s over "
            f"{self.rooms:,} rooms of {self.room_size:,}: {self.deliveries_per_s:,.0f} "
            "deliveries/s",
            f"  server CPU {self.cpu_cores:.2f} cores at 100% ({parts}); memory "
            f"{self.memory_gib:.1f} GiB",
            f"  workers: {self.workers} (CPU {self.workers_for_cpu}, memory "
            f"{self.workers_for_memory}); a room spans {self.workers_per_room:.1f} of them",
            f"  Redis: {self.redis_cpu_cores:.2f} cores → {self.redis_shards} shard(s); "
            f"{self.redis_mbit_s:,.0f} Mbit/s in+out; {self.redis_client_connections:,} "
            "client connections",
            f"  PostgreSQL: {self.db_busy_connections:.2f} connections busy on average; "
            f"{self.db_connections:,} pooled at most"
            + (" → PgBouncer (over max_connections)" if self.pgbouncer else ""),
            f"  a restarted worker's sockets are re-opened on the others in about "
            f"{self.restart_absorb_s:.0f} s of their spare CPU",
        ]


def workers_per_room(workers: int, room_size: int, *, even: bool = False) -> float:
    """How many of ``workers`` hold at least one of a room's ``room_size`` sockets.

    ``even`` (round-robin, as the load generator connects): ``min(workers, room_size)``.
    Otherwise each socket lands on any worker alike (nginx's ``least_conn`` over sockets
    that arrive in no particular order): the expected count, ``W × (1 − (1 − 1/W)^N)``.
    """
    if workers <= 0 or room_size <= 0:
        return 0.0
    if even:
        return float(min(workers, room_size))
    return workers * (1 - (1 - 1 / workers) ** room_size)


def message_cpu_us(costs: Costs, workers: int, room_size: int, *, even: bool = False) -> float:
    """Server CPU (µs) one message costs the whole deployment, delivered to ``room_size``."""
    spread = workers_per_room(workers, room_size, even=even)
    return costs.message_us + spread * costs.receive_us + room_size * costs.deliver_us


def capacity(
    costs: Costs, *, workers: int, room_size: int, cores: float = 1.0, even: bool = True
) -> float:
    """Deliveries/s that ``cores`` of server CPU sustain at saturation (the validation's
    prediction: ``workers`` processes on ``cores`` cores, rooms of ``room_size``)."""
    return cores * 1e6 / message_cpu_us(costs, workers, room_size, even=even) * room_size


def predict(
    *,
    sockets: int,
    messages_per_s: float,
    rooms: int,
    room_size: int,
    costs: Costs,
    utilisation: float = 0.6,
    memory_per_core_gib: float = 4.0,
    redis_utilisation: float = 0.5,
    session_s: float = 1800.0,
    max_connections: int = 100,
    reserved_connections: int = 10,
) -> Plan:
    """Workers, Redis shards and database connections for a load.

    ``sockets`` open at once; ``messages_per_s`` chat messages in all, over ``rooms`` rooms
    of ``room_size`` subscribers (every message goes to ``room_size`` sockets). One worker
    per core, kept at ``utilisation`` of it (the rest absorbs bursts and a restarted
    worker's sockets); at most ``memory_per_core_gib`` of memory per worker. Sockets live
    ``session_s`` on average, so ``sockets / session_s`` opens per second. Redis is one
    core per shard, kept under ``redis_utilisation``. PostgreSQL's ``max_connections``
    less ``reserved_connections`` (migrations, admin, monitoring) is the pools' budget.

    Raises ``ValueError`` for a negative or zero size.
    """
    if min(sockets, rooms, room_size) <= 0 or messages_per_s < 0:
        raise ValueError("sockets, rooms and room_size must be positive, the rate not negative")
    if not 0 < utilisation <= 1 or not 0 < redis_utilisation <= 1:
        raise ValueError("utilisation must be in (0, 1]")
    opens_per_s = sockets / session_s
    memory_gib = (sockets * costs.socket_kib) / 2**20
    workers = 1
    for _ in range(50):  # the receive part grows with the workers: iterate to a fixed point
        spread = workers_per_room(workers, room_size)
        cpu = {
            "messages": messages_per_s * costs.message_us / 1e6,
            "receive": messages_per_s * spread * costs.receive_us / 1e6,
            "deliveries": messages_per_s * room_size * costs.deliver_us / 1e6,
            "opens": opens_per_s * costs.open_us / 1e6,
        }
        cores = sum(cpu.values())
        memory = memory_gib + workers * costs.worker_mib / 1024
        for_cpu = max(1, math.ceil(cores / utilisation))
        for_memory = max(1, math.ceil(memory / memory_per_core_gib))
        wanted = max(for_cpu, for_memory)
        if wanted <= workers:
            break
        workers = wanted
    spread = workers_per_room(workers, room_size)
    redis_cores = messages_per_s * (costs.redis_publish_us + spread * costs.redis_push_us) / 1e6
    shards = max(1, math.ceil(redis_cores / redis_utilisation))
    redis_bits = messages_per_s * costs.redis_bytes_in * (1 + spread) * 8
    db_connections = workers * costs.pool_max
    per_worker = sockets / workers
    spare = max(workers - 1, 0) * (1 - utilisation)
    absorb = per_worker * costs.open_us / 1e6 / spare if spare > 0 else math.inf
    return Plan(
        sockets=sockets,
        messages_per_s=messages_per_s,
        rooms=rooms,
        room_size=room_size,
        deliveries_per_s=messages_per_s * room_size,
        cpu=cpu,
        cpu_cores=cores,
        memory_gib=memory_gib + workers * costs.worker_mib / 1024,
        workers_for_cpu=for_cpu,
        workers_for_memory=for_memory,
        workers=workers,
        workers_per_room=spread,
        redis_cpu_cores=redis_cores,
        redis_shards=shards,
        redis_mbit_s=redis_bits / 1e6,
        db_busy_connections=messages_per_s * costs.db_ms / 1000,
        db_connections=db_connections,
        pgbouncer=db_connections > max_connections - reserved_connections,
        redis_client_connections=workers * costs.redis_connections,
        restart_absorb_s=absorb,
    )


def fit_costs(
    *,
    one_small: Measured,
    one_large: Measured,
    two_small: Measured,
    opens: dict[str, Any],
    pool_max: int,
) -> Costs:
    """Per-unit costs from three closed-loop runs and one S4 run (medians of repeats).

    One worker at rooms of sizes n1 < n2 gives CPU per message ``y = fixed + deliver × n``
    (two points: a line); two workers at the small size n1 give ``y2 = fixed + receive +
    deliver × n1`` (both workers hold sockets of every room), so ``receive = y2 − y1`` and
    ``message = fixed − receive``: measured where deliveries are few, the difference is
    not lost in their cost. Redis likewise: ``publish + push`` per message with one
    subscribed worker, ``publish + 2 push`` with two. A negative difference (noise) is
    taken as 0.
    """
    n1, n2 = one_small.room_size, one_large.room_size
    deliver = (one_large.cpu_us - one_small.cpu_us) / (n2 - n1)
    fixed = one_small.cpu_us - deliver * n1
    receive = max(0.0, two_small.cpu_us - one_small.cpu_us)
    redis_one = statistics.mean([one_small.redis_us, one_large.redis_us])
    push = max(0.0, two_small.redis_us - one_small.redis_us)
    sockets = max(int(opens.get("sockets") or 0), 1)
    workers_two = max(two_small.workers, 1)
    return Costs(
        message_us=max(fixed - receive, 0.0),
        receive_us=receive,
        deliver_us=deliver,
        open_us=1e6 * float(opens.get("open_server_cpu_s") or 0.0) / sockets,
        socket_kib=float(opens.get("rss_per_socket_kib") or 0.0),
        worker_mib=float(opens.get("rss_before_bytes") or 0.0) / 2**20,
        redis_publish_us=max(redis_one - push, 0.0),
        redis_push_us=push,
        redis_commands=statistics.mean([one_small.redis_commands, one_large.redis_commands]),
        redis_bytes_in=statistics.mean([one_small.redis_bytes_in, one_large.redis_bytes_in]),
        db_ms=one_large.db_ms,
        db_commits=one_large.db_commits,
        pool_max=pool_max,
        redis_connections=max(1, round(two_small.redis_clients / workers_two)),
    )


@dataclass(frozen=True)
class Measured:
    """Medians over the repeats of one closed-loop configuration (per message unless named)."""

    workers: int
    shards: int
    rooms: int
    room_size: int
    deliveries_per_s: float
    cpu_us: float
    server_cpu_pct: float
    redis_us: float
    redis_commands: float
    redis_bytes_in: float
    redis_clients: float
    db_ms: float
    db_commits: float
    db_connections: float
    loss: int
    load: float
    runs: int

    @classmethod
    def from_runs(
        cls, runs: Sequence[dict[str, Any]], *, workers: int, shards: int, rooms: int, size: int
    ) -> Measured:
        good = [r for r in runs if r.get("ok") and r.get("messages")]

        def med(key: str) -> float:
            values = [float(r[key]) for r in good if isinstance(r.get(key), (int, float))]
            return statistics.median(values) if values else float("nan")

        return cls(
            workers=workers,
            shards=shards,
            rooms=rooms,
            room_size=size,
            deliveries_per_s=med("deliveries_per_s"),
            cpu_us=med("server_us_per_message"),
            server_cpu_pct=med("server_cpu_pct"),
            redis_us=med("redis_us_per_message"),
            redis_commands=med("redis_commands_per_message"),
            redis_bytes_in=med("redis_bytes_in_per_message"),
            redis_clients=med("redis_clients"),
            db_ms=med("db_ms_per_message"),
            db_commits=med("db_commits_per_message"),
            db_connections=med("db_connections"),
            loss=sum(int(r.get("loss") or 0) for r in runs),
            load=med("load_before"),
            runs=len(good),
        )


# --- the load generator's multi-room closed loop (runs in its own process) ------------------


def run_loadgen(argv: Sequence[str]) -> None:
    """``sizing.py --loadgen <bench/loadgen.py options>``: :class:`ManyRooms`, JSON on stdout.

    ``SIZING_REDIS_URLS`` (comma-separated) and ``SIZING_DATABASE_URL`` name what to read
    around the window; ``SIZING_DB_SETTLE`` how long to wait for PostgreSQL's statistics
    (flushed by idle backends within 10 s) before the last reading.
    """
    import loadgen
    import uvloop

    class ManyRooms(loadgen.Run):
        """``s1`` on every room at once: each room's first socket sends, closed loop."""

        async def s1(self) -> dict[str, Any]:
            a = self.args
            open_s = await self.open_all(a.rooms, a.clients)
            await asyncio.sleep(a.settle)
            probe = Probe.from_env()
            db_before = probe.db()
            sent_before = sum(r.next_seq for r in self.rooms)
            for room in self.rooms:
                room.window = a.window
                room.closed_loop = True
                loadgen.fill_window(room, room.clients[0])
            await asyncio.sleep(a.warmup)
            redis_before = probe.redis()
            before = self.meter.snapshot()
            started = loadgen.now_ns()
            for room in self.rooms:
                room.first_counted = room.next_seq
                room.first_send_ns = 0
            await asyncio.sleep(a.duration)
            for room in self.rooms:
                room.closed_loop = False
                room.last_counted = room.next_seq - 1
            redis_after = probe.redis()
            await self.drain(a.drain)
            after = self.meter.snapshot()
            sent = sum(r.next_seq for r in self.rooms) - sent_before
            db_after = await probe.db_settled(float(os.environ.get("SIZING_DB_SETTLE", "0")))
            tally = self.tally()
            span = (self.gen.last_rx - started) / 1e9 if self.gen.last_rx else 0.0
            messages = tally["messages"]
            out: dict[str, Any] = {
                "open_s": open_s,
                **tally,
                "deliveries_per_s": tally["deliveries"] / span if span > 0 else 0.0,
                "messages_per_s": messages / span if span > 0 else 0.0,
                **loadgen.percentiles(self.gen.latencies),
                **self.window_figures(before, after, tally["deliveries"]),
                "server_us_per_message": 1e6 * (after[1] - before[1]) / messages
                if messages
                else None,
                "sent_all": sent,
            }
            out.update(probe.redis_figures(redis_before, redis_after, messages))
            out.update(probe.db_figures(db_before, db_after, sent))
            probe.close()
            return out

    args = loadgen.parse(argv)
    loadgen.raise_fd_limit()

    async def amain() -> dict[str, Any]:
        gen = ManyRooms(args)
        started = time.perf_counter()
        try:
            result = await asyncio.wait_for(gen.main(), args.timeout)
            result["ok"] = True
        except Exception as exc:  # reported in the JSON, as bench/loadgen.py does
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", **gen.common()}
            await gen.close_all()
        result["elapsed_s"] = time.perf_counter() - started
        return result

    json.dump(uvloop.run(amain()), sys.stdout)
    sys.stdout.write("\n")


class Probe:
    """Readings of the private Redis shards and the scratch database around a window."""

    def __init__(self, redis_urls: list[str], database_url: str) -> None:
        import redis

        self.shards = [redis.Redis.from_url(u, socket_timeout=2) for u in redis_urls]
        self.pg: Any = None
        if database_url:
            import psycopg

            self.pg = psycopg.connect(database_url, autocommit=True)

    @classmethod
    def from_env(cls) -> Probe:
        urls = [u for u in os.environ.get("SIZING_REDIS_URLS", "").split(",") if u]
        return cls(urls, os.environ.get("SIZING_DATABASE_URL", ""))

    def redis(self) -> list[dict[str, float]]:
        out = []
        for shard in self.shards:
            info = shard.info("everything")
            calls = sum(v["calls"] for k, v in info.items() if k.startswith("cmdstat_"))
            out.append(
                {
                    "calls": float(calls),
                    "in": float(info["total_net_input_bytes"]),
                    "out": float(info["total_net_output_bytes"]),
                    "cpu": float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
                    "clients": float(info["connected_clients"]) - 1,  # not this one
                }
            )
        return out

    @staticmethod
    def redis_figures(
        before: list[dict[str, float]], after: list[dict[str, float]], messages: int
    ) -> dict[str, Any]:
        if not before or not messages:
            return {}

        def total(key: str) -> float:
            # One INFO per shard per reading counts as a call: not the servers' work.
            own = 1.0 if key == "calls" else 0.0
            return sum(a[key] - b[key] - own for a, b in zip(after, before, strict=True))

        return {
            "redis_us_per_message": 1e6 * total("cpu") / messages,
            "redis_commands_per_message": total("calls") / messages,
            "redis_bytes_in_per_message": total("in") / messages,
            "redis_bytes_out_per_message": total("out") / messages,
            "redis_cpu_s_by_shard": [
                a["cpu"] - b["cpu"] for a, b in zip(after, before, strict=True)
            ],
            "redis_clients": sum(a["clients"] for a in after),
        }

    def db(self) -> dict[str, float] | None:
        if self.pg is None:
            return None
        active, commits = self.pg.execute(
            "SELECT active_time, xact_commit FROM pg_stat_database "
            "WHERE datname = current_database()"
        ).fetchone()
        (connections,) = self.pg.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
        return {"active_ms": float(active), "commits": float(commits), "conns": float(connections)}

    async def db_settled(self, wait: float) -> dict[str, float] | None:
        """A reading once ``active_time`` stops moving (or after ``wait`` seconds)."""
        last = self.db()
        deadline = time.monotonic() + wait
        while last is not None and time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            now = self.db()
            if now is not None and now["active_ms"] == last["active_ms"]:
                return now
            last = now
        return last

    @staticmethod
    def db_figures(
        before: dict[str, float] | None, after: dict[str, float] | None, sent: int
    ) -> dict[str, Any]:
        if before is None or after is None or not sent:
            return {}
        return {
            "db_ms_per_message": (after["active_ms"] - before["active_ms"]) / sent,
            # Our own two readings' statements commit too.
            "db_commits_per_message": (after["commits"] - before["commits"] - 4) / sent,
            "db_connections": after["conns"],
        }

    def close(self) -> None:
        for shard in self.shards:
            shard.close()
        if self.pg is not None:
            self.pg.close()


# --- driving it -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    name: str
    repeats: int
    warmup: float
    duration: float
    drain: float
    s4_sockets: int


FULL = Mode("full", repeats=3, warmup=1.0, duration=5.0, drain=3.0, s4_sockets=1000)
QUICK = Mode("quick", repeats=1, warmup=0.7, duration=3.0, drain=2.0, s4_sockets=400)

#: (rooms, sockets per room) of the calibration runs and of the validation runs.
SMALL = (40, 5)
LARGE = (8, 50)
VALIDATION = (20, 25)
WINDOW = 4
WORKER_COUNTS = (1, 2, 4)
SHARD_COUNTS = (1, 2)


def load1() -> float:
    return os.getloadavg()[0]


def wait_quiet(limit: float, seconds: float) -> float:
    """Wait up to ``seconds`` for the 1-minute load average to fall under ``limit``."""
    deadline = time.monotonic() + seconds
    while load1() >= limit and time.monotonic() < deadline:
        time.sleep(5)
    return load1()


def closed_loop(
    server: run.Running,
    *,
    rooms: int,
    size: int,
    mode: Mode,
    redis_urls: list[str],
    database_url: str,
    db_settle: float = 0.0,
) -> dict[str, Any]:
    """One :class:`ManyRooms` run against ``server`` (pinned to core 1); its JSON."""
    options = {
        "rooms": rooms,
        "clients": size,
        "window": WINDOW,
        "warmup": mode.warmup,
        "duration": mode.duration,
        "drain": mode.drain,
        "timeout": 150,
    }
    argv = [
        run.PYTHON,
        str(Path(__file__).resolve()),
        "--loadgen",
        "--kind",
        "townsquare",
        "--scenario",
        "s1",
        "--ports",
        ",".join(map(str, server.ports)),
        "--server-pids",
        ",".join(map(str, server.pids)),
        "--config",
        str(server.config),
    ]
    for key, value in options.items():
        argv += [f"--{key}", str(value)]
    env = dict(
        os.environ,
        SIZING_REDIS_URLS=",".join(redis_urls),
        SIZING_DATABASE_URL=database_url,
        SIZING_DB_SETTLE=str(db_settle),
    )
    load = load1()
    try:
        out = subprocess.run(
            run.pinned(1, argv), cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": "load generator timed out", "load_before": load}
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"ok": False, "error": out.stderr[-1500:], "load_before": load}
    result: dict[str, Any] = json.loads(lines[-1])
    result["load_before"] = load
    return result


def brief(r: dict[str, Any]) -> str:
    if not r.get("ok"):
        return f"FAILED: {r.get('error')}"
    return (
        f"{r['deliveries_per_s']:,.0f} deliveries/s, {r.get('server_us_per_message') or 0:,.0f} "
        f"µs/message, srv {r.get('server_cpu_pct') or 0:.0f}%, gen {r.get('gen_cpu_pct') or 0:.0f}%"
        f", redis {r.get('redis_us_per_message') or 0:.0f} µs/msg, loss {r.get('loss')}, "
        f"load {r.get('load_before', 0):.2f}"
    )


@dataclass
class Bench:
    """The scratch services and the deployments built on them."""

    work: run.Workdir
    database_url: str
    redis_urls: list[str]
    mode: Mode
    base: run.Townsquare | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)

    def deployment(self, shards: int) -> run.Townsquare:
        """A Townsquare over the first ``shards`` Redis instances, on the one database."""
        urls = self.redis_urls[:shards]
        ts = run.Townsquare(
            self.work,
            f"townsquare-sizing-{shards}s-{len(self.runs)}",
            redis_url=",".join(urls),
            overrides={"DATABASE_URL": self.database_url, "CHANNEL_LAYER": "pubsub"},
        )
        if self.base is None:
            ts.prepare(users=100, rooms=max(SMALL[0], LARGE[0], VALIDATION[0]))
            self.base = ts
        else:
            ts.config.write_text(self.base.config.read_text())
        return ts

    def measure(
        self, *, workers: int, shards: int, shape: tuple[int, int], label: str, db_settle: float = 0
    ) -> Measured:
        ts = self.deployment(shards)
        rooms, size = shape
        live = run.Live(label, lambda: ts.start(workers=workers))
        results = []
        try:
            for _ in range(self.mode.repeats):
                live.settle()
                r = closed_loop(
                    live.server,
                    rooms=rooms,
                    size=size,
                    mode=self.mode,
                    redis_urls=self.redis_urls[:shards],
                    database_url=self.database_url,
                    db_settle=db_settle,
                )
                live.dirty = not r.get("ok") or bool(r.get("loss"))
                r.update(label=label, workers=workers, shards=shards, rooms=rooms, size=size)
                print(f"  {label:<24} {brief(r)}", flush=True)
                results.append(r)
                self.runs.append(r)
        finally:
            live.stop()
        return Measured.from_runs(results, workers=workers, shards=shards, rooms=rooms, size=size)

    def opens(self) -> dict[str, Any]:
        """S4 (``bench/loadgen.py``) on one fresh worker: CPU per open, RSS per socket."""
        ts = self.deployment(1)
        server = ts.start(workers=1)
        try:
            options = run.s4_options(run.QUICK)
            options["clients"] = self.mode.s4_sockets
            result = run.loadgen(server, "s4", **options)
        finally:
            server.stop()
        print(
            f"  {'opens (S4, 1 worker)':<24} "
            + (
                f"{1e3 * result['open_server_cpu_s'] / result['sockets']:.2f} ms CPU/open, "
                f"{result['rss_per_socket_kib']:.1f} KiB/socket"
                if result.get("ok")
                else f"FAILED: {result.get('error')}"
            ),
            flush=True,
        )
        result["label"] = "opens"
        self.runs.append(result)
        return result


@contextlib.contextmanager
def services(work: run.Workdir) -> Iterator[tuple[str, list[str]]]:
    """A scratch PostgreSQL database and two private Redis servers (pinned to core 1)."""
    from tests.pg import scratch_postgres
    from tests.redis_server import private_redises

    (work.path / "redis").mkdir()
    with scratch_postgres() as database_url, private_redises(work.path / "redis", 2) as shards:
        for shard in shards:
            if run.PIN and shard.pid is not None:
                os.sched_setaffinity(shard.pid, {1})
        yield database_url, [s.url for s in shards]


def pool_max() -> int:
    return int(os.environ.get("DATABASE_POOL_MAX", "10"))


def validation_rows(costs: Costs, measured: list[Measured]) -> list[dict[str, Any]]:
    """Predicted against measured capacity of one core, per configuration.

    Measured capacity per core is deliveries per server CPU-second (room size × 10⁶ ÷ the
    server CPU µs per message): what the workers deliver for each second of CPU they got.
    On a shared machine the workers get less than their core, so the wall-clock rate
    (also shown, with the CPU share) is lower; per CPU-second it is not.
    """
    rows = []
    for m in measured:
        predicted = capacity(costs, workers=m.workers, room_size=m.room_size)
        per_core = m.room_size * 1e6 / m.cpu_us if m.cpu_us else float("nan")
        rows.append(
            {
                "workers": m.workers,
                "shards": m.shards,
                "predicted_per_core": predicted,
                "measured_per_core": per_core,
                "ratio": per_core / predicted if predicted else None,
                "predicted_cpu_us_per_message": message_cpu_us(
                    costs, m.workers, m.room_size, even=True
                ),
                "measured_cpu_us_per_message": m.cpu_us,
                "measured_deliveries_per_s": m.deliveries_per_s,
                "server_cpu_pct": m.server_cpu_pct,
                "redis_us_per_message": m.redis_us,
                "loss": m.loss,
                "load": m.load,
                "runs": m.runs,
            }
        )
    return rows


def validation_table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'workers':>7} {'shards':>6} {'predicted/core':>15} {'measured/core':>14} "
        f"{'ratio':>6}  {'wall/s':>8} {'srv%':>5} {'redis µs':>8} {'loss':>5} {'load':>5}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['workers']:>7} {r['shards']:>6} {r['predicted_per_core']:>15,.0f} "
            f"{r['measured_per_core']:>14,.0f} {r['ratio'] or 0:>6.2f}  "
            f"{r['measured_deliveries_per_s']:>8,.0f} {r['server_cpu_pct']:>5.0f} "
            f"{r['redis_us_per_message']:>8.0f} {r['loss']:>5} {r['load']:>5.2f}"
        )
    return "\n".join(lines)


#: The loads the closing note answers: (sockets, messages/s, rooms, room size).
QUESTIONS = ((100_000, 5_000, 1_000, 100), (100_000, 5_000, 10_000, 10))


def measure_all(args: argparse.Namespace, mode: Mode) -> dict[str, Any]:
    work = run.Workdir()
    try:
        with services(work) as (database_url, redis_urls):
            bench = Bench(work, database_url, redis_urls, mode)
            print("[per-unit costs: one shard]", flush=True)
            wait_quiet(args.quiet_load, args.wait_quiet)
            one_small = bench.measure(workers=1, shards=1, shape=SMALL, label="1w 40×5")
            one_large = bench.measure(
                workers=1, shards=1, shape=LARGE, label="1w 8×50", db_settle=12.0
            )
            two_small = bench.measure(workers=2, shards=1, shape=SMALL, label="2w 40×5")
            opens = bench.opens()
            costs = fit_costs(
                one_small=one_small,
                one_large=one_large,
                two_small=two_small,
                opens=opens,
                pool_max=pool_max(),
            )
            print("[validation: 20 rooms × 25 sockets]", flush=True)
            measured = []
            for workers in WORKER_COUNTS:
                for shards in SHARD_COUNTS:
                    wait_quiet(args.quiet_load, args.wait_quiet)
                    measured.append(
                        bench.measure(
                            workers=workers,
                            shards=shards,
                            shape=VALIDATION,
                            label=f"{workers}w {shards}s 20×25",
                        )
                    )
            return {
                "costs": asdict(costs),
                "calibration": [asdict(m) for m in (one_small, one_large, two_small)],
                "validation": validation_rows(costs, measured),
                "runs": bench.runs,
            }
    finally:
        run.stop_all()
        work.cleanup()


def newest_results() -> Path | None:
    files = sorted(RESULTS.glob("sizing-*.json"))
    return files[-1] if files else None


def print_costs(costs: Costs) -> None:
    print(
        "Per-unit costs (server CPU on one core of this machine):\n"
        f"  per message {costs.message_us:,.0f} µs + per worker with subscribers "
        f"{costs.receive_us:,.0f} µs + per delivery {costs.deliver_us:.1f} µs\n"
        f"  per socket open + subscribe {costs.open_us / 1000:.2f} ms; "
        f"{costs.socket_kib:.1f} KiB per idle socket; {costs.worker_mib:.0f} MiB per worker\n"
        f"  Redis per message: {costs.redis_publish_us:.0f} µs CPU + {costs.redis_push_us:.0f} µs "
        f"per subscribed worker, {costs.redis_commands:.2f} commands, "
        f"{costs.redis_bytes_in:,.0f} bytes in\n"
        f"  PostgreSQL per message: {costs.db_ms:.3f} ms active, {costs.db_commits:.3f} commits; "
        f"connections per worker: {costs.pool_max} (pool max), Redis {costs.redis_connections}"
    )


def validation_measured(runs: list[dict[str, Any]]) -> list[Measured]:
    """The validation runs of a results file, as medians per (workers, shards)."""
    rooms, size = VALIDATION
    groups: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for r in runs:
        if (r.get("rooms"), r.get("size")) == (rooms, size) and "workers" in r:
            groups.setdefault((r["workers"], r["shards"]), []).append(r)
    return [
        Measured.from_runs(group, workers=w, shards=s, rooms=rooms, size=size)
        for (w, s), group in sorted(groups.items())
    ]


def report(document: dict[str, Any], costs: Costs) -> list[Plan]:
    """Print the costs, the validation table (recomputed from the costs) and the answers."""
    print()
    print_costs(costs)
    print(
        "\nValidation, 20 rooms × 25 sockets (deliveries per second of one core: predicted, "
        "and measured per server CPU-second):"
    )
    print(validation_table(validation_rows(costs, validation_measured(document["runs"]))))
    plans = [
        predict(sockets=s, messages_per_s=m, rooms=r, room_size=n, costs=costs)
        for s, m, r, n in QUESTIONS
    ]
    for plan in plans:
        print()
        print("\n".join(plan.lines()))
    return plans


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--loadgen"]:
        run_loadgen(argv[1:])
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 repeat, shorter: under 5 min")
    parser.add_argument(
        "--predict",
        nargs=2,
        type=float,
        metavar=("SOCKETS", "MESSAGES_PER_S"),
        help="only the model, with the costs of --costs (default: the newest results file)",
    )
    parser.add_argument("--rooms", type=int, default=1000, help="with --predict")
    parser.add_argument("--room-size", type=int, default=100, help="with --predict")
    parser.add_argument(
        "--session-s",
        type=float,
        default=1800.0,
        help="with --predict: how long a socket stays open on average (opens = sockets ÷ it)",
    )
    parser.add_argument("--costs", default="", help="a sizing-*.json to take the costs from")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each step, wait up to this long for the 1-minute load to fall under "
        "--quiet-load",
    )
    parser.add_argument("--quiet-load", type=float, default=1.5)
    parser.add_argument(
        "--report", default="", metavar="JSON", help="print a results file's tables again"
    )
    args = parser.parse_args(argv)

    if args.report:
        document = json.loads(Path(args.report).read_text())
        report(document, Costs.from_dict(document["costs"]))
        return 0

    if args.predict:
        path = Path(args.costs).resolve() if args.costs else newest_results()
        costs = Costs.from_dict(json.loads(path.read_text())["costs"]) if path else Costs()
        print(f"costs: {path.relative_to(ROOT) if path else 'defaults (no results file)'}")
        print_costs(costs)
        sockets, rate = args.predict
        plan = predict(
            sockets=int(sockets),
            messages_per_s=rate,
            rooms=args.rooms,
            room_size=args.room_size,
            costs=costs,
            session_s=args.session_s,
        )
        print("\n".join(plan.lines()))
        return 0

    run.ensure_dependencies()
    mode = QUICK if args.quick else FULL
    when = dt.datetime.now().astimezone()
    before = os.getloadavg()
    started = time.monotonic()
    print(
        f"Townsquare sizing run, {mode.name} mode, {when:%Y-%m-%d %H:%M %Z}; workers on core 0, "
        f"load generator and Redis on core 1; load average {before[0]:.2f}",
        flush=True,
    )
    if before[0] > args.quiet_load:
        print("warning: the machine is busy; figures will be noisy", flush=True)
    document = measure_all(args, mode)
    costs = Costs.from_dict(document["costs"])
    plans = report(document, costs)
    after = os.getloadavg()
    elapsed = time.monotonic() - started
    print(
        f"\n{mode.name} mode, {mode.repeats} repeat(s), {elapsed / 60:.1f} min; load average "
        f"{before[0]:.2f} before, {after[0]:.2f} after"
    )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"sizing-{when:%Y-%m-%dT%H%M%S}{'-quick' if args.quick else ''}.json"
    document.update(
        date=when.isoformat(),
        mode=asdict(mode),
        machine=run.machine(),
        versions=run.versions(),
        load_average_before=before,
        load_average_after=after,
        elapsed_s=elapsed,
        plans=[asdict(p) for p in plans],
    )
    out.write_text(json.dumps(document, indent=1, default=str))
    print(f"raw results: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
