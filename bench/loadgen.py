"""The benchmark's load generator: one process, uvloop + picows, JSON on stdout.

Started by ``bench/run.py`` (pinned to its own core), once per scenario run:

    python bench/loadgen.py --kind townsquare --ports 8001 --scenario s1 \
        --rooms 1 --clients 100 --duration 5 --server-pids 1234 --config users.json

Targets (``--kind``), all on 127.0.0.1:

- ``townsquare``: ``/ws/`` with the ``townsquare`` and ``bearer.<jwt>`` subprotocols and an
  ``Origin`` header; each client subscribes to ``chat:room:<id>``; a sender sends
  ``chat.send {room, text, client_id}`` and its window is released by the ``ack``. Users and
  rooms come from ``--config`` (``bench/townsquare_setup.py``'s output). With several
  ``--ports`` (several workers), client ``i`` connects to port ``i % len(ports)``.
- ``seed``: ``/ws/chat/<room>/``, ``{"message", "username"}`` in and out (seed 003).
- ``limit``: ``/room/<room>``, the text is broadcast as sent.
  For the references, the sender's own copy of its message is its ack.

Every message text carries ``BM<run>.<seq>.<send time ns>.<room>E``; a client finds it with a
byte search (no JSON decoding), so latency is receive time minus send time on one clock (one
process), and loss is counted per client and message. ``<run>`` is random per run: messages of
an earlier run that an overloaded server is still delivering are counted as ``stale_frames``,
never as this run's.

Scenarios (``--scenario``):

- ``s1`` fan-out throughput: ``--rooms`` × ``--clients``; client 0 of room 0 sends with
  ``--window`` messages un-acknowledged for ``--warmup`` s (not counted), then
  ``--duration`` s; deliveries/s = deliveries of the counted messages / (last delivery −
  first counted send).
- ``s2``/``s3`` latency: in every room, client 0 sends at ``--rate`` messages/s (open loop,
  on a fixed schedule; the embedded time is the scheduled one, so a late sender counts as
  latency) for ``--duration`` s; p50/p99/max and loss.
- ``s4`` idle capacity: ``--clients`` sockets in one room; server RSS before and after
  opening them, the time to open (and subscribe) them all, then ``--probes`` single messages,
  each timed until every socket has it.

Measured in every scenario: loss (expected − received, per client), duplicates, error frames,
unexpected closes, the server's CPU time over the measured window (``--server-pids``, via
psutil) and this process's own CPU time (``getrusage``): a generator near 100 % of its core is
saturated, and the server's figure is then a lower bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import time
from array import array
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

now_ns = time.perf_counter_ns
NOT_YET = 1 << 62  # a room's first counted seq before counting starts
MARK = b"BM"
END = b"E"
ACK = b'{"type":"ack"'
ERROR = b'{"type":"error"'
FOR_SEND = b'"for":"chat.send"'
FOR_SUBSCRIBE = b'"for":"subscribe"'


@dataclass
class Room:
    """One room: its clients, its sender's state and what was sent."""

    index: int
    path_or_id: str
    clients: list[Client] = field(default_factory=list)
    next_seq: int = 0
    first_counted: int = NOT_YET
    last_counted: int = -1
    inflight: int = 0
    window: int = 0
    closed_loop: bool = False
    first_send_ns: int = 0
    # seq -> [receivers, last arrival ns] (s4 only)
    track: dict[int, list[int]] | None = None


class Gen:
    """Shared state of one run."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.run_id = random.randrange(10**5, 10**6)
        self.run_b = str(self.run_id).encode()
        self.stale = 0
        self.latencies = array("q")
        self.last_rx = 0
        self.errors = 0
        self.error_samples: list[str] = []
        self.disconnects = 0
        self.close_samples: list[str] = []
        self.duplicates = 0
        self.other_frames = 0


class Client(WSListener):
    """One socket. The per-frame path is written for speed: one byte search, a few ints."""

    def __init__(self, gen: Gen, room: Room, index: int, username: str) -> None:
        self.gen = gen
        self.room = room
        self.index = index
        self.username = username
        self.transport: WSTransport | None = None
        self.seen = bytearray(4096)
        self.count = 0
        self.is_sender = False
        self.subscribed: asyncio.Future[None] | None = None
        self.closing = False
        self._partial: bytearray | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.closing:
            self.gen.disconnects += 1
        if self.subscribed is not None and not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError("closed before subscribing"))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type is WSMsgType.TEXT and frame.fin:
            data = frame.get_payload_as_bytes()
        elif msg_type is WSMsgType.TEXT or msg_type is WSMsgType.CONTINUATION:
            if self._partial is None:
                self._partial = bytearray()
            self._partial += frame.get_payload_as_bytes()
            if not frame.fin:
                return
            data, self._partial = bytes(self._partial), None
        elif msg_type is WSMsgType.CLOSE:
            if not self.closing:
                self.gen.disconnects += 1
                if len(self.gen.close_samples) < 5:
                    self.gen.close_samples.append(
                        f"{frame.get_close_code()} {frame.get_close_message()!r}"
                    )
            self.closing = True
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        else:
            return
        i = data.find(MARK)
        if i < 0:
            self._control(data)
            return
        t = now_ns()
        j = data.find(END, i)
        run_b, seq_b, ts_b, _ = data[i + 2 : j].split(b".")
        if run_b != self.gen.run_b:
            self.gen.stale += 1
            return
        seq = int(seq_b)
        room = self.room
        if seq >= room.first_counted:
            seen = self.seen
            if seq >= len(seen):
                seen.extend(bytes(max(seq + 1 - len(seen), len(seen))))
            if seen[seq]:
                self.gen.duplicates += 1
            else:
                seen[seq] = 1
                self.count += 1
                self.gen.latencies.append(t - int(ts_b))
                self.gen.last_rx = t
                if room.track is not None:
                    entry = room.track.get(seq)
                    if entry is not None:
                        entry[0] += 1
                        entry[1] = t
        if self.is_sender and self.gen.kind != "townsquare" and room.closed_loop:
            room.inflight -= 1
            fill_window(room, self)

    def _control(self, data: bytes) -> None:
        gen = self.gen
        if data.startswith(ACK):
            if FOR_SEND in data:
                room = self.room
                if room.closed_loop and self.is_sender:
                    room.inflight -= 1
                    fill_window(room, self)
            elif FOR_SUBSCRIBE in data and self.subscribed and not self.subscribed.done():
                self.subscribed.set_result(None)
            return
        if data.startswith(ERROR):
            gen.errors += 1
            if len(gen.error_samples) < 5:
                gen.error_samples.append(data[:300].decode(errors="replace"))
            if self.subscribed is not None and not self.subscribed.done():
                self.subscribed.set_exception(RuntimeError(data[:300].decode(errors="replace")))
            return
        gen.other_frames += 1


def encode(kind: str, room: Room, sender: Client, seq: int, ts: int) -> bytes:
    text = f"BM{sender.gen.run_id}.{seq}.{ts}.{room.index}E"
    if kind == "townsquare":
        # client_id is an idempotency key (a repeat stores nothing): unique across runs.
        client_id = f"c{sender.gen.run_id}.{room.index}.{seq}"
        return (
            f'{{"type":"chat.send","room":{room.path_or_id},"text":"{text}",'
            f'"client_id":"{client_id}"}}'
        ).encode()
    return f'{{"message":"{text}","username":"{sender.username}"}}'.encode()


def send_one(room: Room, sender: Client, ts: int | None = None) -> int:
    seq = room.next_seq
    room.next_seq = seq + 1
    stamp = now_ns() if ts is None else ts
    if room.first_send_ns == 0 and seq >= room.first_counted:
        room.first_send_ns = stamp
    assert sender.transport is not None
    sender.transport.send(WSMsgType.TEXT, encode(sender.gen.kind, room, sender, seq, stamp))
    return seq


def fill_window(room: Room, sender: Client) -> None:
    while room.closed_loop and room.inflight < room.window:
        room.inflight += 1
        send_one(room, sender)


# --- measuring ------------------------------------------------------------------------------


class Meter:
    """CPU time of the server processes and of this process over a window."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.procs = [psutil.Process(p) for p in pids]

    def server_cpu(self) -> tuple[float, float]:
        """User + system CPU seconds of the server processes, and the system part alone."""
        total = system = 0.0
        for p in self.procs:
            t = p.cpu_times()
            total += t.user + t.system
            system += t.system
        return total, system

    def server_rss(self) -> int:
        return sum(p.memory_info().rss for p in self.procs)

    @staticmethod
    def own_cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def snapshot(self) -> tuple[float, float, float, float]:
        """(wall seconds, server CPU seconds, own CPU seconds, server system CPU seconds)."""
        cpu, system = self.server_cpu()
        return now_ns() / 1e9, cpu, self.own_cpu(), system


def percentiles(values: array[int]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(values)
    n = len(ordered)

    def at(q: float) -> float:
        return ordered[min(n - 1, int(q * n))] / 1e6

    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": ordered[-1] / 1e6}


# --- the run --------------------------------------------------------------------------------


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.kind: str = args.kind
        self.gen = Gen(self.kind)
        self.ports: list[int] = [int(p) for p in args.ports.split(",")]
        self.meter = Meter([int(p) for p in args.server_pids.split(",") if p])
        self.config: dict[str, Any] = {}
        if args.config:
            with open(args.config) as f:
                self.config = json.load(f)
        self.rooms: list[Room] = []
        self.clients: list[Client] = []

    def room_key(self, index: int) -> str:
        if self.kind == "townsquare":
            return str(self.config["rooms"][index])
        return f"bench{index}"

    def url(self, client_index: int, room: Room) -> str:
        port = self.ports[client_index % len(self.ports)]
        base = f"ws://127.0.0.1:{port}"
        if self.kind == "townsquare":
            return f"{base}/ws/"
        if self.kind == "seed":
            return f"{base}/ws/chat/{room.path_or_id}/"
        return f"{base}/room/{room.path_or_id}"

    def user(self, client_index: int) -> dict[str, Any]:
        users = self.config.get("users") or [{"username": f"u{i}"} for i in range(100)]
        return dict(users[client_index % len(users)])

    async def open_client(self, room: Room, index: int, sem: asyncio.Semaphore) -> Client:
        user = self.user(index)
        port = self.ports[index % len(self.ports)]
        headers = {"Origin": f"http://127.0.0.1:{port}"}
        if self.kind == "townsquare":
            headers["Sec-WebSocket-Protocol"] = f"townsquare, bearer.{user['token']}"
        client = Client(self.gen, room, index, user["username"])
        async with sem:
            for attempt in range(3):
                try:
                    await ws_connect(
                        lambda: client,
                        self.url(index, room),
                        extra_headers=headers,
                        websocket_handshake_timeout=30,
                        max_frame_size=1 << 24,
                    )
                    break
                except (OSError, TimeoutError):
                    if attempt == 2:
                        raise
                    await asyncio.sleep(0.2 * (attempt + 1))
            if self.kind == "townsquare":
                client.subscribed = asyncio.get_running_loop().create_future()
                assert client.transport is not None
                client.transport.send(
                    WSMsgType.TEXT,
                    f'{{"type":"subscribe","stream":"chat:room:{room.path_or_id}",'
                    f'"ref":"s{index}"}}'.encode(),
                )
                await asyncio.wait_for(client.subscribed, 30)
        return client

    async def open_all(self, rooms: int, per_room: int, concurrency: int = 50) -> float:
        """Open ``rooms`` × ``per_room`` clients; returns the seconds it took."""
        start = time.perf_counter()
        sem = asyncio.Semaphore(concurrency)
        tasks: list[Coroutine[Any, Any, Client]] = []
        base = len(self.rooms)
        for r in range(rooms):
            room = Room(index=base + r, path_or_id=self.room_key(base + r))
            self.rooms.append(room)
            for _ in range(per_room):
                tasks.append(self.open_client(room, len(tasks) + len(self.clients), sem))
        clients = await asyncio.gather(*tasks)
        for client in clients:
            client.room.clients.append(client)
            self.clients.append(client)
        for room in self.rooms[base:]:
            room.clients[0].is_sender = True
        return time.perf_counter() - start

    async def close_all(self) -> None:
        for c in self.clients:
            c.closing = True
            if c.transport is not None:
                c.transport.send_close()
                c.transport.disconnect()
        await asyncio.sleep(0.2)

    def complete(self) -> bool:
        for room in self.rooms:
            expected = room.last_counted - room.first_counted + 1
            if expected <= 0:
                continue
            for c in room.clients:
                if c.count < expected:
                    return False
        return True

    async def drain(self, timeout: float) -> float:
        """Wait until every client has every counted message, or ``timeout``; seconds waited."""
        start = time.perf_counter()
        deadline = start + timeout
        while not self.complete() and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        return time.perf_counter() - start

    def tally(self) -> dict[str, Any]:
        expected = received = complete = 0
        for room in self.rooms:
            n = max(0, room.last_counted - room.first_counted + 1)
            for c in room.clients:
                expected += n
                received += min(c.count, n)
                complete += c.count >= n
        return {
            "messages": sum(max(0, r.last_counted - r.first_counted + 1) for r in self.rooms),
            "expected_deliveries": expected,
            "deliveries": received,
            "loss": expected - received,
            "clients_complete": complete,
            "clients": len(self.clients),
        }

    def window_figures(
        self,
        before: tuple[float, float, float, float],
        after: tuple[float, float, float, float],
        deliveries: int,
    ) -> dict[str, Any]:
        wall = after[0] - before[0]
        server = after[1] - before[1]
        own = after[2] - before[2]
        return {
            "window_s": wall,
            "server_cpu_s": server,
            "server_cpu_pct": 100 * server / wall if wall > 0 else None,
            # The kernel's share of the server's CPU (socket writes on loopback, epoll).
            "server_system_pct_of_cpu": 100 * (after[3] - before[3]) / server
            if server > 0
            else None,
            "gen_cpu_pct": 100 * own / wall if wall > 0 else None,
            "deliveries_per_server_cpu_s": deliveries / server if server > 0 else None,
            "server_us_per_delivery": 1e6 * server / deliveries if deliveries else None,
        }

    def common(self) -> dict[str, Any]:
        return {
            "errors": self.gen.errors,
            "error_samples": self.gen.error_samples,
            "unexpected_closes": self.gen.disconnects,
            "close_samples": self.gen.close_samples,
            "duplicates": self.gen.duplicates,
            "stale_frames": self.gen.stale,
            "other_frames": self.gen.other_frames,
        }

    # --- scenarios ------------------------------------------------------------------------

    async def s1(self) -> dict[str, Any]:
        a = self.args
        open_s = await self.open_all(a.rooms, a.clients)
        await asyncio.sleep(a.settle)
        room = self.rooms[0]
        sender = room.clients[0]
        room.window = a.window
        room.closed_loop = True
        fill_window(room, sender)  # warm-up: not counted
        await asyncio.sleep(a.warmup)
        before = self.meter.snapshot()
        room.first_counted = room.next_seq
        room.first_send_ns = 0
        await asyncio.sleep(a.duration)
        room.closed_loop = False
        room.last_counted = room.next_seq - 1
        await self.drain(a.drain)
        after = self.meter.snapshot()
        tally = self.tally()
        span = (self.gen.last_rx - room.first_send_ns) / 1e9 if self.gen.last_rx else 0.0
        out = {
            "open_s": open_s,
            **tally,
            "deliveries_per_s": tally["deliveries"] / span if span > 0 else 0.0,
            "messages_per_s": tally["messages"] / span if span > 0 else 0.0,
            **percentiles(self.gen.latencies),
            **self.window_figures(before, after, tally["deliveries"]),
        }
        return out

    async def paced(self) -> dict[str, Any]:
        a = self.args
        open_s = await self.open_all(a.rooms, a.clients)
        await asyncio.sleep(a.settle)
        before = self.meter.snapshot()
        start = now_ns() + 20_000_000
        interval = int(1e9 / a.rate)
        end = start + int(a.duration * 1e9)
        rng = random.Random(1)

        async def pace(room: Room) -> None:
            sender = room.clients[0]
            room.first_counted = room.next_seq
            due = start + rng.randrange(interval)  # rooms out of phase with each other
            while due < end:
                delay = due - now_ns()
                if delay > 0:
                    await asyncio.sleep(delay / 1e9)
                send_one(room, sender, ts=due)
                due += interval
            room.last_counted = room.next_seq - 1

        await asyncio.gather(*(pace(r) for r in self.rooms))
        drained = await self.drain(a.drain)
        after = self.meter.snapshot()
        tally = self.tally()
        return {
            "open_s": open_s,
            "offered_messages_per_s": a.rate * len(self.rooms),
            "offered_deliveries_per_s": a.rate * len(self.rooms) * a.clients,
            **tally,
            **percentiles(self.gen.latencies),
            "drain_s": drained,
            **self.window_figures(before, after, tally["deliveries"]),
        }

    async def s4(self) -> dict[str, Any]:
        a = self.args
        # Warm up the server's code paths with a few sockets, then measure from there.
        warm = await self.open_all(1, min(20, a.clients))
        await asyncio.sleep(0.3)
        await self.close_all()
        self.rooms.clear()
        self.clients.clear()
        await asyncio.sleep(a.settle)
        rss_before = self.meter.server_rss()
        before = self.meter.snapshot()
        open_s = await self.open_all(1, a.clients, concurrency=a.concurrency)
        opened = self.meter.snapshot()
        await asyncio.sleep(max(1.0, a.settle))
        rss_after = self.meter.server_rss()
        room = self.rooms[0]
        sender = room.clients[0]
        room.track = {}
        room.first_counted = room.next_seq
        reach: list[float] = []
        incomplete = 0
        for _ in range(a.probes):
            seq = room.next_seq
            room.track[seq] = [0, 0]
            sent = now_ns()
            send_one(room, sender, ts=sent)
            deadline = time.perf_counter() + a.drain
            while room.track[seq][0] < len(room.clients) and time.perf_counter() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            entry = room.track[seq]
            if entry[0] < len(room.clients):
                incomplete += 1
            else:
                reach.append((entry[1] - sent) / 1e6)
            await asyncio.sleep(0.2)
        room.last_counted = room.next_seq - 1
        after = self.meter.snapshot()
        tally = self.tally()
        reach.sort()
        return {
            "warmup_open_s": warm,
            "sockets": len(self.clients),
            "open_s": open_s,
            "open_server_cpu_s": opened[1] - before[1],
            "rss_before_bytes": rss_before,
            "rss_after_bytes": rss_after,
            "rss_per_socket_kib": (rss_after - rss_before) / len(self.clients) / 1024,
            "reach_all_ms": reach[len(reach) // 2] if reach else None,
            "reach_all_max_ms": reach[-1] if reach else None,
            "reach_all_samples_ms": reach,
            "probes_incomplete": incomplete,
            **tally,
            **self.window_figures(before, after, tally["deliveries"]),
        }

    async def main(self) -> dict[str, Any]:
        scenario = self.args.scenario
        if scenario == "s1":
            result = await self.s1()
        elif scenario in ("s2", "s3"):
            result = await self.paced()
        elif scenario == "s4":
            result = await self.s4()
        else:
            raise SystemExit(f"unknown scenario {scenario}")
        await self.close_all()
        return {**result, **self.common()}


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--kind", choices=["townsquare", "seed", "limit"], required=True)
    p.add_argument("--ports", required=True, help="comma-separated; clients go round-robin")
    p.add_argument("--scenario", choices=["s1", "s2", "s3", "s4"], required=True)
    p.add_argument("--server-pids", default="", help="comma-separated, for CPU and RSS")
    p.add_argument("--config", default="", help="townsquare: users, tokens and room ids (JSON)")
    p.add_argument("--rooms", type=int, default=1)
    p.add_argument("--clients", type=int, default=100, help="clients per room (s4: sockets)")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--settle", type=float, default=0.5)
    p.add_argument("--drain", type=float, default=5.0)
    p.add_argument("--window", type=int, default=50)
    p.add_argument("--rate", type=float, default=200.0, help="messages/s per room (s2, s3)")
    p.add_argument("--probes", type=int, default=5, help="s4: single messages timed")
    p.add_argument("--concurrency", type=int, default=50, help="handshakes in flight")
    p.add_argument("--timeout", type=float, default=120.0, help="give up after this long")
    return p.parse_args(argv)


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    run = Run(args)
    started = time.perf_counter()
    try:
        result = await asyncio.wait_for(run.main(), args.timeout)
        result["ok"] = True
    except Exception as exc:  # reported, not raised: run.py shows it in the table
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", **run.common()}
        await run.close_all()
    result["scenario"] = args.scenario
    result["kind"] = args.kind
    result["elapsed_s"] = time.perf_counter() - started
    return result


def main() -> None:
    args = parse()
    raise_fd_limit()
    result = uvloop.run(amain(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
