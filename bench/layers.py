"""Compare the two channels_redis layers on Townsquare's fan-out path, across two processes.

    .venv/bin/python bench/layers.py            # both layers, 3 repeats, about 2 minutes
    .venv/bin/python bench/layers.py --help     # sizes, rates, layers, repeats

What it runs, all on 127.0.0.1 and all started (and stopped, by PID) by this script:

- a Redis server of its own on a free port (``redis-server``; never the system's, because
  the restart check below restarts it), and a scratch SQLite database with 50 items, a
  user and a chat room per layer;
- for each layer (``CHANNEL_LAYER=core``: ``RedisChannelLayer``; ``CHANNEL_LAYER=pubsub``:
  ``RedisPubSubChannelLayer``; each under its own Redis key prefix), two ``manage.py serve``
  processes (one worker each) and a publisher process that calls
  ``realtime.publish.apublish`` in a loop;
- N subscriber sockets per server process (in this process), on one stream
  (``shop:item:<id>``), then spread over 50 streams.

Measured, the two layers' runs alternating, each repeated (default 3 times; the table shows
medians):

- ``publish/s``: events one publisher process gets through ``apublish`` when it publishes
  M events back to back (each awaited: as fast as the layer takes them);
- ``deliveries/s``: frames all sockets received, from the first publish to the last frame;
- ``burst p50/p99``: publish-to-receive latency during that burst (includes queueing);
- ``paced p50/p99``: the same at a steady, moderate rate (the path itself);
- ``pub/redis/srv µs``: CPU time per published event during the burst, of the publisher,
  of Redis and of both servers together (from /proc; Linux);
- ``lost``: deliveries expected (events × sockets on the event's stream) and not received.

Then the known failure facts, once for both layers at the same time: Redis is restarted
(empty, as a restart without persistence leaves it) while each publisher sends ephemeral
events and writes chat messages; the script reports the publishes Redis refused, the
ephemeral events it accepted that no socket received, the chat messages stored that no
socket received live, and how long the sockets stayed deaf after Redis was back.

Not imported by the application; needs the project's venv (websockets, orjson, httpx) and
``redis-server`` on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SECRET_KEY = "bench-layers-secret-key-not-for-production-0123456789abcdef"
EVENT = "bench.tick"
BENCH_PASSWORD = "bench-layers-password-0123"
STREAMS_MANY = 50
#: Seconds one publisher command may take before the bench gives up.
PUBLISHER_TIMEOUT = 180.0
LAYERS = {
    "core": "RedisChannelLayer",
    "pubsub": "RedisPubSubChannelLayer",
}


# --- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited early:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start in 30 s:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def stop(process: subprocess.Popen[Any]) -> None:
    """Stop a process this script started (by its PID), killing it after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Redis:
    """A throwaway redis-server on a free port, without persistence; restartable."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("bench/layers.py needs redis-server on PATH (apt-get install redis)")
        self.binary = binary
        self.port = free_port()
        self.log = workdir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--logfile", str(self.log)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_port(self.port, self.process, "redis-server", self.log)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None


def base_env(workdir: Path, redis_url: str, layer: str, prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
            "REDIS_URL": redis_url,
            "REDIS_PREFIX": prefix,
            "CHANNEL_LAYER": layer,
            "SECRET_KEY": SECRET_KEY,
            "ALLOWED_HOSTS": "127.0.0.1",
            "DEBUG": "0",
            # Socket open/close lines at INFO would cost the servers more than the layer.
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            # Bounds how long the core layer's groups stay lost after a Redis restart.
            "RT_HUB_REFRESH_SECONDS": "5",
            "TOKEN_RATE": "1000/min",
        }
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def manage(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return out.stdout


@dataclass
class Fixtures:
    items: list[int]  # the items whose shop:item streams the sockets watch
    user: int  # a user who may read and write the rooms
    rooms: dict[str, int]  # a public chat room (a durable stream) per layer


def prepare_database(env: dict[str, str]) -> Fixtures:
    """Migrate the scratch database; add the items, a user and a room the bench uses."""
    manage(env, "migrate", "--noinput", "-v", "0")
    code = (
        "import json\n"
        "from django.contrib.auth.models import User\n"
        "from chat.models import Room\n"
        "from shop.models import Item\n"
        f"Item.objects.bulk_create([Item(name=f'bench-{{i}}', price_cents=100, quantity=5)"
        f" for i in range({STREAMS_MANY})])\n"
        f"user = User.objects.create_user('bench', password={BENCH_PASSWORD!r})\n"
        f"rooms = {{name: Room.objects.create(name=f'bench-{{name}}').pk\n"
        f"         for name in {list(LAYERS)!r}}}\n"
        "print(json.dumps({'items': list(Item.objects.filter(name__startswith='bench-')"
        ".order_by('id').values_list('id', flat=True)), 'user': user.pk, 'rooms': rooms}))"
    )
    out = json.loads(manage(env, "shell", "-c", code).strip().splitlines()[-1])
    return Fixtures(items=out["items"], user=out["user"], rooms=out["rooms"])


def token(port: int) -> str:
    """A JWT for the bench user, from ``POST /api/token/``."""
    import httpx

    response = httpx.post(
        f"http://127.0.0.1:{port}/api/token/",
        json={"username": "bench", "password": BENCH_PASSWORD},
        timeout=20,
    )
    response.raise_for_status()
    return str(response.json()["access"])


@contextmanager
def servers(workdir: Path, env: dict[str, str], count: int = 2) -> Iterator[list[tuple[int, int]]]:
    """``count`` separate ``manage.py serve`` processes (one worker each); yields their
    ``(port, pid)``."""
    processes: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    try:
        for _ in range(count):
            port = free_port()
            log = workdir / f"serve-{env['CHANNEL_LAYER']}-{port}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [PYTHON, "manage.py", "serve", "--port", str(port), "--no-access-log"],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            processes.append(process)
            ports.append(port)
            wait_port(port, process, f"serve on {port}", log)
        yield [(port, process.pid) for port, process in zip(ports, processes, strict=True)]
    finally:
        for process in processes:
            stop(process)


class Publisher:
    """A child process that publishes through the layer (``--publisher`` mode below)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [PYTHON, str(Path(__file__).resolve()), "--publisher"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = self._read()
        assert ready == {"ready": True}, ready

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the publisher process died")
        result: dict[str, Any] = json.loads(line)
        return result

    def request(self, **command: Any) -> dict[str, Any]:
        """Send one command and wait for its result (blocking: call it in a thread)."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                stop(self.process)


async def ask(publisher: Publisher, **command: Any) -> dict[str, Any]:
    """Run one publisher command; give up after PUBLISHER_TIMEOUT (the bench stays bounded)."""
    return await asyncio.wait_for(
        asyncio.to_thread(publisher.request, **command), PUBLISHER_TIMEOUT
    )


# --- the publisher process ------------------------------------------------------------------


def publisher_main() -> None:
    """Publish what the parent asks for (JSON lines on stdin), answer with JSON lines."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "townsquare.settings")
    import logging

    import django

    django.setup()
    # A refused publish is counted, not logged with its traceback.
    logging.getLogger("realtime.publish").setLevel(logging.CRITICAL)
    from channels.db import database_sync_to_async
    from django.contrib.auth.models import User

    from chat.services import message_create
    from realtime.publish import apublish

    async def burst(streams: list[str], count: int, run: int) -> dict[str, Any]:
        ok = failed = 0
        start = time.time()
        for seq in range(count):
            data = {"run": run, "seq": seq, "t": time.time()}
            if await apublish(streams[seq % len(streams)], EVENT, data):
                ok += 1
            else:
                failed += 1
        return {"start": start, "end": time.time(), "ok": ok, "failed": failed}

    async def paced(streams: list[str], rate: float, seconds: float, run: int) -> dict[str, Any]:
        sent: list[tuple[int, float, bool]] = []
        start = time.time()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for seq in range(int(rate * seconds)):
            delay = t0 + seq / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            t = time.time()
            taken = await apublish(
                streams[seq % len(streams)], EVENT, {"run": run, "seq": seq, "t": t}
            )
            sent.append((seq, t, taken))
        ok = sum(1 for s in sent if s[2])
        return {
            "start": start,
            "end": time.time(),
            "ok": ok,
            "failed": len(sent) - ok,
            "sent": sent,
        }

    async def restart_load(
        stream: str,
        room: int,
        user: int,
        rate: float,
        seconds: float,
        chat_seconds: float,
        run: int,
        chat_run: int,
    ) -> dict[str, Any]:
        """Each tick: one ephemeral event on ``stream``; in the first ``chat_seconds`` also one
        chat message in ``room`` (stored, then published after commit by the service, as in
        production)."""
        author = await database_sync_to_async(User.objects.get)(pk=user)
        create = database_sync_to_async(message_create)
        sent: list[tuple[int, float, bool]] = []
        stored = 0
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for seq in range(int(rate * seconds)):
            delay = t0 + seq / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            t = time.time()
            taken = await apublish(stream, EVENT, {"run": run, "seq": seq, "t": t})
            sent.append((seq, t, taken))
            if seq >= rate * chat_seconds:
                continue
            text = json.dumps({"run": chat_run, "seq": seq, "t": time.time()})
            try:
                await create(user=author, room_id=room, text=text)
                stored += 1
            except Exception:  # a refused write is not expected on SQLite; count it as lost
                pass
        ok = sum(1 for s in sent if s[2])
        return {"ok": ok, "failed": len(sent) - ok, "sent": sent, "stored": stored}

    operations: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
        "burst": burst,
        "paced": paced,
        "restart_load": restart_load,
    }

    async def main() -> None:
        loop = asyncio.get_running_loop()
        print(json.dumps({"ready": True}), flush=True)
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            command = json.loads(line)
            op = command.pop("op")
            result = await operations[op](**command)
            print(json.dumps(result), flush=True)

    asyncio.run(main())


# --- subscribers ----------------------------------------------------------------------------


@dataclass
class Received:
    """What the sockets of one measurement received: (socket, seq) → latency in seconds."""

    run: int
    latencies: list[float] = field(default_factory=list)
    seen: set[tuple[int, int]] = field(default_factory=set)
    arrivals: dict[int, list[tuple[int, float]]] = field(default_factory=dict)  # socket → seqs
    duplicates: int = 0
    last: float = 0.0


class Sockets:
    """Subscriber sockets on the servers; each records ``bench.tick`` frames of the run."""

    def __init__(self, access: str | None = None) -> None:
        """``access``: a JWT to sign the sockets in (chat rooms need a user)."""
        # The runs being recorded, by run id (``data.run`` of each frame).
        self.receiving: dict[int, Received] = {}
        self.access = access
        self.connections: list[Any] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.stream_of: list[str] = []

    async def open(
        self,
        ports: Sequence[int],
        per_server: int,
        streams: Sequence[str],
        also: Sequence[str] = (),
    ) -> None:
        """Open ``per_server`` sockets on each port; socket i subscribes to ``streams[i % n]``
        and to every stream in ``also``."""
        from websockets.asyncio.client import connect
        from websockets.typing import Origin, Subprotocol

        subprotocols = None
        if self.access:
            subprotocols = [Subprotocol("townsquare"), Subprotocol(f"bearer.{self.access}")]

        async def one(port: int, stream: str) -> Any:
            ws = await connect(
                f"ws://127.0.0.1:{port}/ws/",
                origin=Origin(f"http://127.0.0.1:{port}"),
                subprotocols=subprotocols,
                max_size=None,
                open_timeout=20,
            )
            for ref, name in enumerate([stream, *also]):
                since = {"since": 0} if name.startswith("chat:") else {}
                await ws.send(
                    json.dumps({"type": "subscribe", "stream": name, "ref": ref, **since})
                )
                while True:  # the ack (snapshots follow)
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
                    if frame["type"] == "ack" and frame.get("ref") == ref:
                        break
                    if frame["type"] == "error":
                        raise RuntimeError(f"subscribe {name}: {frame}")
            return ws

        wanted = [(port, streams[i % len(streams)]) for port in ports for i in range(per_server)]
        for start in range(0, len(wanted), 25):
            batch = wanted[start : start + 25]
            opened = await asyncio.gather(*(one(port, stream) for port, stream in batch))
            for (_, stream), ws in zip(batch, opened, strict=True):
                index = len(self.connections)
                self.connections.append(ws)
                self.stream_of.append(stream)
                self.tasks.append(asyncio.create_task(self._read(index, ws)))

    async def _read(self, index: int, ws: Any) -> None:
        import orjson

        try:
            async for text in ws:
                frame = orjson.loads(text)
                name = frame.get("event")
                if name == EVENT:
                    data = frame["data"]
                elif name == "chat.message":
                    data = orjson.loads(frame["data"]["text"])
                else:
                    continue
                now = time.time()
                received = self.receiving.get(data["run"])
                if received is None:
                    continue
                key = (index, data["seq"])
                if key in received.seen:
                    received.duplicates += 1
                    continue
                received.seen.add(key)
                received.latencies.append(now - data["t"])
                received.arrivals.setdefault(index, []).append((data["seq"], now))
                received.last = now
        except Exception:  # a closed socket ends its reader; the loss column shows it
            return

    def subscribers(self, stream: str) -> int:
        return sum(1 for s in self.stream_of if s == stream)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(ws.close() for ws in self.connections), return_exceptions=True)
        self.connections.clear()
        self.tasks.clear()
        self.stream_of.clear()


async def drain(received: Received, expected: int, quiet: float = 2.0, limit: float = 60.0) -> None:
    """Wait until every expected frame arrived, or nothing arrived for ``quiet`` seconds."""
    started = time.monotonic()
    last_count, last_change = -1, time.monotonic()
    while len(received.seen) < expected and time.monotonic() - started < limit:
        if len(received.seen) != last_count:
            last_count, last_change = len(received.seen), time.monotonic()
        elif time.monotonic() - last_change > quiet:
            return
        await asyncio.sleep(0.05)


def cpu_seconds(pids: Sequence[int]) -> float:
    """User plus system CPU time of processes so far, in seconds (Linux /proc; else NaN)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- measurements ---------------------------------------------------------------------------


@dataclass
class Sample:
    paced_rate: float
    publish_rate: float
    delivery_rate: float
    burst_p50: float
    burst_p99: float
    paced_p50: float
    paced_p99: float
    lost: int
    expected: int
    # CPU time per published event during the burst, in µs: the publisher process, Redis,
    # and both servers together (layer receive plus fan-out to the sockets).
    cpu_publisher: float
    cpu_redis: float
    cpu_servers: float


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run = 0

    def next_run(self) -> int:
        self.run += 1
        return self.run

    async def measure(
        self,
        publisher: Publisher,
        sockets: Sockets,
        streams: list[str],
        events: int,
        paced_rate: float,
        pids: dict[str, list[int]],
    ) -> Sample:
        expected = sum(sockets.subscribers(streams[i % len(streams)]) for i in range(events))
        burst = Received(run=self.next_run())
        sockets.receiving = {burst.run: burst}
        cpu_before = {name: cpu_seconds(ids) for name, ids in pids.items()}
        result = await ask(publisher, op="burst", streams=streams, count=events, run=burst.run)
        await drain(burst, expected)
        cpu = {
            name: (cpu_seconds(ids) - cpu_before[name]) / events * 1e6 for name, ids in pids.items()
        }
        paced_events = int(paced_rate * self.args.paced_seconds)
        paced_expected = sum(
            sockets.subscribers(streams[i % len(streams)]) for i in range(paced_events)
        )
        paced = Received(run=self.next_run())
        sockets.receiving = {paced.run: paced}
        await ask(
            publisher,
            op="paced",
            streams=streams,
            rate=paced_rate,
            seconds=self.args.paced_seconds,
            run=paced.run,
        )
        await drain(paced, paced_expected)
        elapsed = max(burst.last - result["start"], 1e-9)
        return Sample(
            paced_rate=paced_rate,
            publish_rate=result["ok"] / max(result["end"] - result["start"], 1e-9),
            delivery_rate=len(burst.seen) / elapsed,
            burst_p50=percentile(burst.latencies, 0.50) * 1000,
            burst_p99=percentile(burst.latencies, 0.99) * 1000,
            paced_p50=percentile(paced.latencies, 0.50) * 1000,
            paced_p99=percentile(paced.latencies, 0.99) * 1000,
            lost=(expected - len(burst.seen)) + (paced_expected - len(paced.seen)),
            expected=expected + paced_expected,
            cpu_publisher=cpu["publisher"],
            cpu_redis=cpu["redis"],
            cpu_servers=cpu["servers"],
        )

    async def restart_check(
        self, redis: Redis, setups: dict[str, tuple[Publisher, Sockets]], fixtures: Fixtures
    ) -> dict[str, dict[str, Any]]:
        """Restart Redis once while each layer's publisher sends, 10 times a second, one
        ephemeral event (a stock stream) and, until 1 s after the restart, one chat message (a
        durable stream, stored first).

        Per layer: the ephemeral events Redis refused, and those it took but a socket never
        received; the chat messages stored but never received live: no later message reveals
        the gap, so only the hub's own catch-up from the database after an outage delivers
        them; and how long the sockets heard nothing after Redis was back.
        """
        rate, seconds, restart_after = 10.0, self.args.restart_window, 2.0
        stream = f"shop:item:{fixtures.items[0]}"
        runs: dict[str, tuple[Received, Received]] = {}
        pending = {}
        for layer, (publisher, sockets) in setups.items():
            stock, chat = Received(run=self.next_run()), Received(run=self.next_run())
            runs[layer] = (stock, chat)
            sockets.receiving = {stock.run: stock, chat.run: chat}
            pending[layer] = asyncio.create_task(
                ask(
                    publisher,
                    op="restart_load",
                    stream=stream,
                    room=fixtures.rooms[layer],
                    user=fixtures.user,
                    rate=rate,
                    seconds=seconds,
                    chat_seconds=restart_after + 1.0,
                    run=stock.run,
                    chat_run=chat.run,
                )
            )
        await asyncio.sleep(restart_after)
        down = time.time()
        await asyncio.to_thread(redis.stop)
        await asyncio.to_thread(redis.start)
        up = time.time()
        results: dict[str, dict[str, Any]] = {}
        for layer, (_, sockets) in setups.items():
            result = await pending[layer]
            stock, chat = runs[layer]
            # Each socket holds both streams: stock for its events, the room for its messages.
            expected_chat = result["stored"] * len(sockets.connections)
            await drain(chat, expected_chat, quiet=3.0, limit=15)
            await drain(stock, result["ok"] * len(sockets.connections), quiet=1.0, limit=3)
            after_down = [seq for seq, t, ok in result["sent"] if ok and t >= down]
            lost = 0
            deaf: list[float] = []
            for index in range(len(sockets.connections)):
                arrivals = stock.arrivals.get(index, [])
                got = {seq for seq, _ in arrivals}
                lost += sum(1 for seq in after_down if seq not in got)
                heard = [when for _, when in arrivals if when >= up]
                deaf.append(min(heard) - up if heard else float("inf"))
            results[layer] = {
                "outage": up - down,
                "refused": result["failed"],
                "lost": lost,
                "accepted_after_restart": len(after_down) * len(sockets.connections),
                "chat_missed": expected_chat - len(chat.seen),
                "chat_expected": expected_chat,
                "deaf": max(deaf),
            }
        return results


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def print_table(rows: list[tuple[str, str, list[Sample]]], args: argparse.Namespace) -> None:
    columns = [
        ("layer", 6),
        ("streams", 7),
        ("publish/s", 9),
        ("deliveries/s", 12),
        ("burst p50", 9),
        ("burst p99", 9),
        ("paced/s", 7),
        ("paced p50", 9),
        ("paced p99", 9),
        ("pub µs", 7),
        ("redis µs", 8),
        ("srv µs", 7),
        ("lost", 13),
    ]
    header = " ".join(
        f"{name:<{width}}" if i == 0 else f"{name:>{width}}"
        for i, (name, width) in enumerate(columns)
    )
    print()
    print(
        f"Fan-out across 2 server processes, {args.sockets} sockets each; medians of "
        f"{args.repeats} runs. Latency: publish to receive, ms. CPU: µs per published event "
        "in the burst, of the publisher, Redis, and both servers."
    )
    print(header)
    print("-" * len(header))
    for layer, streams, samples in rows:
        lost = sum(s.lost for s in samples)
        expected = sum(s.expected for s in samples)

        def m(attribute: str, samples: list[Sample] = samples) -> float:
            return median([getattr(s, attribute) for s in samples])

        print(
            f"{layer:<6} {streams:>7} {m('publish_rate'):>9,.0f} {m('delivery_rate'):>12,.0f} "
            f"{m('burst_p50'):>9.1f} {m('burst_p99'):>9.1f} {m('paced_rate'):>7,.0f} "
            f"{m('paced_p50'):>9.2f} {m('paced_p99'):>9.2f} {m('cpu_publisher'):>7,.0f} "
            f"{m('cpu_redis'):>8,.0f} {m('cpu_servers'):>7,.0f} {f'{lost}/{expected}':>13}"
        )
    print(
        "core: channels_redis.core.RedisChannelLayer; "
        "pubsub: channels_redis.pubsub.RedisPubSubChannelLayer"
    )


def print_restarts(restarts: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    print(
        "Redis restarted (empty, as without persistence) while each layer's publisher sent 10 "
        f"events/s to a stock stream for {args.restart_window:g} s, and wrote 10 chat messages/s "
        "until 1 s after the restart; 2 sockets per layer, one per server, on both streams."
    )
    columns = [
        ("layer", 6),
        ("outage s", 8),
        ("stock refused", 13),
        ("stock lost/accepted", 19),
        ("chat missed live/stored", 23),
        ("deaf after s", 12),
    ]
    header = " ".join(
        f"{name:<{width}}" if i == 0 else f"{name:>{width}}"
        for i, (name, width) in enumerate(columns)
    )
    print(header)
    print("-" * len(header))
    for layer, r in restarts.items():
        deaf = "never" if r["deaf"] == float("inf") else f"{r['deaf']:.2f}"
        lost = f"{r['lost']}/{r['accepted_after_restart']}"
        missed = f"{r['chat_missed']}/{r['chat_expected']}"
        print(
            f"{layer:<6} {r['outage']:>8.2f} {r['refused']:>13} {lost:>19} {missed:>23} {deaf:>12}"
        )


async def bench_main(args: argparse.Namespace) -> None:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="townsquare-bench-layers-"))
    redis = Redis(workdir)
    bench = Bench(args)
    samples: dict[tuple[str, str], list[Sample]] = {}
    restarts: dict[str, dict[str, Any]] = {}
    try:
        redis.start()
        fixtures = prepare_database(base_env(workdir, redis.url, "core", "bench-prepare"))
        streams_all = [f"shop:item:{i}" for i in fixtures.items]
        with ExitStack() as stack:
            # Both layers' servers run side by side (each layer under its own Redis prefix)
            # and the measurements alternate between them, so that a change in the machine's
            # load during the run does not favour one layer.
            ports: dict[str, list[int]] = {}
            pids: dict[str, dict[str, list[int]]] = {}
            publishers: dict[str, Publisher] = {}
            for layer in args.layers:
                env = base_env(workdir, redis.url, layer, f"bench-{uuid.uuid4().hex[:8]}")
                started_servers = stack.enter_context(servers(workdir, env))
                ports[layer] = [port for port, _ in started_servers]
                publishers[layer] = Publisher(env)
                pids[layer] = {
                    "publisher": [publishers[layer].process.pid],
                    "servers": [pid for _, pid in started_servers],
                }
                stack.callback(publishers[layer].close)
            for label, streams, events, paced_rate in (
                ("1", streams_all[:1], args.events, args.paced_rate),
                (str(STREAMS_MANY), streams_all, args.events_many, args.paced_rate_many),
            ):
                sockets = {layer: Sockets() for layer in args.layers}
                for layer in args.layers:
                    await sockets[layer].open(ports[layer], args.sockets, streams)
                for repeat in range(args.repeats):
                    for layer in args.layers:
                        assert redis.process is not None
                        sample = await bench.measure(
                            publishers[layer],
                            sockets[layer],
                            streams,
                            events,
                            paced_rate,
                            {**pids[layer], "redis": [redis.process.pid]},
                        )
                        samples.setdefault((layer, label), []).append(sample)
                        print(
                            f"  {layer:<6} streams={label:<3} run {repeat + 1}: "
                            f"{sample.publish_rate:,.0f} publish/s, "
                            f"{sample.delivery_rate:,.0f} deliveries/s, "
                            f"paced p99 {sample.paced_p99:.2f} ms, lost {sample.lost}",
                            flush=True,
                        )
                for layer in args.layers:
                    await sockets[layer].close()
            if args.restart_window > 0:
                setups = {}
                for layer in args.layers:
                    one_each = Sockets(access=token(ports[layer][0]))
                    await one_each.open(
                        ports[layer],
                        1,
                        streams_all[:1],
                        also=[f"chat:room:{fixtures.rooms[layer]}"],
                    )
                    setups[layer] = (publishers[layer], one_each)
                found = await bench.restart_check(redis, setups, fixtures)
                restarts = found
                for _, one_each in setups.values():
                    await one_each.close()
    finally:
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print_table([(layer, label, runs) for (layer, label), runs in samples.items()], args)
    if restarts:
        print_restarts(restarts, args)
    print(f"\n({time.monotonic() - started:.0f} s)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--layers", default="core,pubsub", help="comma-separated: core, pubsub (default both)"
    )
    parser.add_argument("--sockets", type=int, default=100, help="subscriber sockets per process")
    parser.add_argument("--events", type=int, default=500, help="events per burst on 1 stream")
    parser.add_argument(
        "--events-many", type=int, default=5000, help="events per burst over 50 streams"
    )
    parser.add_argument("--paced-rate", type=float, default=20.0, help="paced events/s on 1 stream")
    parser.add_argument(
        "--paced-rate-many", type=float, default=200.0, help="paced events/s over 50 streams"
    )
    parser.add_argument("--paced-seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--restart-window",
        type=float,
        default=10.0,
        help="seconds of publishing around the Redis restart (0 skips the restart check)",
    )
    args = parser.parse_args(argv)
    args.layers = [name.strip() for name in args.layers.split(",") if name.strip()]
    unknown = set(args.layers) - set(LAYERS)
    if unknown:
        parser.error(f"unknown layers: {', '.join(sorted(unknown))}")
    return args


def main() -> None:
    args = parse_args()
    if args.publisher:
        publisher_main()
        return
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split(" sha=")[0]
    print(
        f"bench/layers.py: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{redis_version}; {' '.join(sys.argv[1:]) or 'default options'}",
        flush=True,
    )
    asyncio.run(bench_main(args))


if __name__ == "__main__":
    main()
