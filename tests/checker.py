"""The exactly-once checker: many clients send through ``/ws/`` while faults are injected.

What it checks, per stream (a chat room created for the run), once the traffic is over and
every client has drained its outbox:

1. every acknowledged ``chat.send`` is stored exactly once, at the ``id`` and ``offset`` its
   ack named (read straight from the database, PostgreSQL or SQLite), and stored offsets run
   1, 2, 3, … with no gap;
2. every client (each stayed or came back) saw every stored message exactly once, in offset
   order, across all the sockets it opened;
3. no client saw a message that is not stored (same offset, ``id`` and ``client_id``);
4. optionally, two Chromium pages on the first room, typing into the composer as people do
   (the bundled client's outbox resends with the same ``client_id``), have each typed text
   stored once and end showing exactly the stored list (offset, ``id``, ``client_id`` of
   each item of ``#messages``), with nothing left pending.

The clients are real ``websockets`` asyncio clients signed in with JWTs from
``POST /api/token/`` (the demo users). Each behaves as the protocol asks of a client that
wants exactly-once (docs/protocol.md, "Sending exactly once" and "Recovering missed
events"): every message gets a fresh ``client_id`` and stays in an outbox until acked; after
a reconnect the client subscribes with ``since`` = the last offset it saw (again from the
last offset when the ack says ``truncated``) and resends its outbox with the same
``client_id``s; an ``unavailable`` answer, or no answer within ``RESEND_AFTER`` seconds, is
resent too. A client-side token bucket keeps each socket under the server's default frame
rate limit (``FRAMES_PER_SECOND`` 20, burst 40), so the server runs with its defaults.

Faults, each optional, on a schedule spread over the traffic:

- ``cut``: a client writes ``CUT_BURST`` messages back to back and aborts its TCP
  connection (``transport.abort()``) right after the last left, so their acks, and maybe
  their stores, are unknown to it;
- ``restart``: one ``manage.py serve`` stopped (SIGTERM) and started again on the same port;
- ``kill``: one of two workers behind nginx SIGKILLed, then started again on the same port;
- ``redis``: the private Redis SIGKILLed and started again, empty (``tests/redis_server.py``).

Topologies: ``single`` (one worker, SQLite or PostgreSQL, in-memory channel layer) and
``nginx`` (two workers behind ``deploy/nginx.conf`` on a scratch PostgreSQL database and a
private Redis, as ``tests/test_server_nginx.py`` runs them).

Use it from a test (``tests/test_checker.py``), from a shell::

    .venv/bin/python -m tests.checker --topology nginx --seconds 300 --clients 12 --browsers 2

or from ``bench/`` (whose scripts put the repository root on ``sys.path``)::

    from tests.checker import Config, run_check
    result = asyncio.run(run_check(Config.ci("nginx", seconds=60), Path(workdir)))
    print(result.describe()); assert result.ok

Everything runs on 127.0.0.1; every wait is bounded; only processes started here are
stopped, by PID. The figures are printed by ``Result.describe()``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import psycopg
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Origin, Subprotocol

if TYPE_CHECKING:
    from playwright.async_api import ConsoleMessage, Page

try:
    from playwright.async_api import Error as PlaywrightError
except ImportError:  # Playwright is needed for the pages only
    PlaywrightError = Exception  # type: ignore[misc,assignment]

from tests.conftest import DEMO_PASSWORD
from tests.nginx import run_nginx
from tests.pg import scratch_postgres
from tests.redis_server import RedisServer, private_redis
from tests.server import ROOT, Server, run_server, wait_serving

USERS = ("alice", "bob", "carol", "dave")
PAGE_USERS = ("carol", "dave")
FAULT_KINDS = ("cut", "restart", "kill", "redis")
#: Client-side frame budget per socket, under the server's default 20/s, burst 40.
CLIENT_FRAMES_PER_SECOND = 15.0
CLIENT_FRAME_BURST = 30
#: Messages a client writes back to back before a ``cut`` aborts its socket.
CUT_BURST = 5
#: A chat.send with no answer after this many seconds is sent again (same client_id).
RESEND_AFTER = 4.0
#: How long a client waits for a subscribe's ack before it gives the socket up.
SUBSCRIBE_TIMEOUT = 10.0
#: Reconnect backoff: first delay, cap (seconds), with full jitter.
BACKOFF_FIRST = 0.05
BACKOFF_CAP = 1.0
#: Refresh a client's token when it is older than this (JWT_TTL_SECONDS defaults to 900).
TOKEN_MAX_AGE = 600.0
#: The run's own random numbers (backoff jitter, cut victims), seeded by ``Config.seed``;
#: the process's global ``random`` is left alone.
_random = random.Random()


@dataclass
class Config:
    """One run: the deployment, the traffic and the faults.

    ``faults`` maps a kind of ``FAULT_KINDS`` to how many are injected, evenly spread over
    the traffic; ``restart`` applies to either topology, ``kill`` and ``redis`` need
    ``nginx``. ``rate`` is messages per second per client. ``database`` is ``sqlite`` or
    ``postgres`` (``nginx`` always uses PostgreSQL).
    """

    topology: str = "single"
    database: str = "sqlite"
    clients: int = 6
    rooms: int = 2
    seconds: float = 20.0
    rate: float = 4.0
    faults: dict[str, int] = field(default_factory=dict)
    #: Seconds a killed worker or Redis stays down before it is started again.
    down_seconds: float = 1.0
    #: Bound on the drain (outboxes empty, every client caught up) after the traffic.
    drain_seconds: float = 40.0
    channel_layer: str = "pubsub"
    seed: int = 0
    #: Chromium pages (0–2) on the first room, signed in as carol and dave, typing into the
    #: composer ``page_rate`` times a second; their message lists must end equal to the
    #: stored list. Needs Chromium (``tests.services.need_chromium``).
    browsers: int = 0
    page_rate: float = 1.0

    @classmethod
    def ci(cls, topology: str, seconds: float = 20.0, **overrides: Any) -> Config:
        """The CI-sized run of a topology: 6 clients, 2 rooms, 20 s, a few faults of each
        kind it supports (``single``: cuts and restarts; ``nginx``: cuts, kills, Redis and a
        restart). A longer ``seconds`` scales the faults: cuts in proportion, the heavy
        ones (which take seconds each) one of each kind per 60 s beyond the first 20 s."""
        faults = (
            {"cut": 6, "restart": 2}
            if topology == "single"
            else {"cut": 6, "kill": 2, "redis": 2, "restart": 1}
        )
        extra = max(0.0, seconds - 20.0)
        faults = {
            kind: n + round(extra * 6 / 20 if kind == "cut" else extra / 60)
            for kind, n in faults.items()
        }
        database = "sqlite" if topology == "single" else "postgres"
        return dataclasses.replace(
            cls(topology=topology, database=database, faults=faults, seconds=seconds),
            **overrides,
        )

    def check(self) -> None:
        """Raises ``ValueError`` for a topology, database or fault the run cannot do."""
        if self.topology not in ("single", "nginx"):
            raise ValueError(f"unknown topology {self.topology!r}")
        if not 0 <= self.browsers <= len(PAGE_USERS):
            raise ValueError(f"browsers must be 0 to {len(PAGE_USERS)}")
        if self.database not in ("sqlite", "postgres"):
            raise ValueError(f"unknown database {self.database!r}")
        if self.topology == "nginx" and self.database != "postgres":
            raise ValueError("the nginx topology runs on PostgreSQL")
        for kind in self.faults:
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault {kind!r} (one of {', '.join(FAULT_KINDS)})")
            if kind in ("kill", "redis") and self.topology != "nginx":
                raise ValueError(f"fault {kind!r} needs the nginx topology")


# --- The deployment --------------------------------------------------------------------------


@dataclass
class Deployment:
    """The servers of a run: where clients connect, the database, what faults act on."""

    workers: list[Server]
    http: str
    ws: str
    database_url: str
    redis: RedisServer | None = None
    #: ``manage.py serve`` processes started by ``respawn`` (stopped by ``stop_respawned``).
    respawned: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: Restarts and kills so far, by kind: each kind hits the workers in turn.
    worker_faults: Counter[str] = field(default_factory=Counter)


def respawn(deployment: Deployment, server: Server, *, kill: bool, down: float) -> None:
    """Stop ``server``'s process by its PID (SIGKILL when ``kill``, else SIGTERM), stay down
    ``down`` seconds, start ``manage.py serve`` again on the same port with the same
    environment (as ``tests.server.run_server`` does, appending to its log) and wait until
    it answers. Blocking: call it on a thread. Raises ``RuntimeError`` if it does not start.
    """
    old = server.process
    if kill:
        old.kill()
    else:
        old.terminate()
    try:
        old.wait(timeout=15)
    except subprocess.TimeoutExpired:
        old.kill()
        old.wait(timeout=10)
    time.sleep(down)
    with server.log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(server.port)],
            cwd=ROOT,
            env=server.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deployment.respawned.append(process)
    server.process = process
    wait_serving(f"{server.http}/accounts/login/", process, server.log, interval=0.05)


def stop_respawned(deployment: Deployment) -> None:
    """Stop the processes ``respawn`` started (only those), by PID."""
    for process in deployment.respawned:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def deploy(config: Config, workdir: Path) -> Iterator[Deployment]:
    """Start the run's servers in ``workdir``; stop them (and only them) on exit.

    Skips (or fails under ``TOWNSQUARE_REQUIRE_SERVICES=1``) when PostgreSQL, redis-server
    or nginx is needed and absent (``tests.services.need``).
    """
    with contextlib.ExitStack() as stack:
        env: dict[str, Any] = {"TRUSTED_PROXIES": "127.0.0.1"}
        if config.database == "postgres":
            env["DATABASE_URL"] = stack.enter_context(scratch_postgres())
        redis: RedisServer | None = None
        if config.topology == "nginx":
            redis = stack.enter_context(private_redis(workdir / "redis"))
            env.update(
                REDIS_URL=redis.url,
                REDIS_PREFIX=f"checker-{uuid.uuid4().hex[:8]}",
                CHANNEL_LAYER=config.channel_layer,
                # Quick recovery after a Redis restart or a dead leader (as tests/test_faults.py).
                RT_HUB_REFRESH_SECONDS="1",
                RT_LEASE_TTL_SECONDS="2",
                RT_PRESENCE_TTL_SECONDS="3",
            )
        first = stack.enter_context(run_server(workdir, **env))
        workers = [first]
        if config.topology == "nginx":
            workers.append(stack.enter_context(run_server(workdir, prepare=False, **env)))
            port = stack.enter_context(run_nginx(workdir / "nginx", [w.port for w in workers]))
            http, ws = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
        else:
            http, ws = first.http, first.ws
        deployment = Deployment(
            workers=workers,
            http=http,
            ws=ws,
            database_url=first.env["DATABASE_URL"],
            redis=redis,
        )
        # Runs before run_server's own exit, which stops only the process it started.
        stack.callback(stop_respawned, deployment)
        yield deployment


# --- The clients -----------------------------------------------------------------------------


@dataclass
class Outgoing:
    """One message a client wants stored: its idempotency key, room and text."""

    client_id: str
    room: int
    text: str
    frames: int = 0  # chat.send frames sent for it (1 + resends)
    last_sent: float = 0.0  # monotonic time of the last frame, 0 when not on this socket yet


@dataclass(frozen=True)
class Seen:
    """One ``chat.message`` event as a client received it."""

    offset: int
    id: int
    client_id: str


class TokenBucket:
    """Client-side frame budget: ``rate`` frames per second, ``burst`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.at = time.monotonic()

    async def take(self) -> None:
        while True:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / self.rate)


class CheckClient:
    """A reconnecting ``/ws/`` client with an outbox, recording everything it sees.

    ``seen[stream]`` lists the ``chat.message`` events received on the stream, in arrival
    order, across every socket; ``acks[client_id]`` is the first ack of each message;
    ``outbox`` holds the messages not acked yet.
    """

    def __init__(
        self, name: str, user: str, token: str, deployment: Deployment, rooms: list[int]
    ) -> None:
        self.name = name
        self.user = user
        self.token = token
        self.token_at = time.monotonic()
        self.deployment = deployment
        self.rooms = rooms
        self.streams = [f"chat:room:{room}" for room in rooms]
        self.seen: dict[str, list[Seen]] = {s: [] for s in self.streams}
        self.sent: dict[str, Outgoing] = {}
        self.outbox: dict[str, Outgoing] = {}
        self.acks: dict[str, dict[str, Any]] = {}
        self.ack_mismatches: list[str] = []
        self.refused: list[str] = []
        self.counts: Counter[str] = Counter()
        self.log: list[tuple[float, str]] = []  # (wall time, what happened)
        self.cut_pending = False
        self.stopping = False
        self.offline_since: float | None = None  # monotonic time the last socket ended
        self.max_offline = 0.0  # longest time without a subscribed socket, in seconds
        self.connected = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._refs = itertools.count(1)
        self._bucket = TokenBucket(CLIENT_FRAMES_PER_SECOND, CLIENT_FRAME_BURST)
        self._sequence = itertools.count(1)

    # --- what the traffic calls ---

    def last_offset(self, stream: str) -> int:
        seen = self.seen[stream]
        return seen[-1].offset if seen else 0

    async def write(self, room: int) -> None:
        """Put a new message in the outbox and send it if a socket is up. With a cut
        pending (the fault), write ``CUT_BURST`` messages back to back (pipelined: some may
        be stored, some not, some acked) and abort the socket right after the last left."""
        cut = self.cut_pending and self.connected.is_set()
        for _ in range(CUT_BURST if cut else 1):
            client_id = f"{self.name}-{next(self._sequence)}"
            out = Outgoing(client_id, room, f"{client_id} {uuid.uuid4().hex[:6]}")
            self.sent[client_id] = out
            self.outbox[client_id] = out
            ws = self._ws
            if ws is not None and self.connected.is_set():
                await self._send_chat(ws, out)
        ws = self._ws
        if cut and ws is not None and self.connected.is_set():
            self.cut_pending = False
            self.counts["cuts"] += 1
            self.log.append((time.time(), f"cut after sending {out.client_id}"))
            ws.transport.abort()

    # --- the socket ---

    async def run(self) -> None:
        """Connect, subscribe, resend, read; reconnect with backoff until ``stop``."""
        backoff = BACKOFF_FIRST
        while not self.stopping:
            ws = await self._connect()
            if ws is None:
                await asyncio.sleep(_random.uniform(0, backoff))
                backoff = min(backoff * 2, BACKOFF_CAP)
                continue
            backoff = BACKOFF_FIRST
            await self._session(ws)

    async def stop(self) -> None:
        self.stopping = True
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)

    async def _connect(self) -> ClientConnection | None:
        if time.monotonic() - self.token_at > TOKEN_MAX_AGE:
            await self._refresh_token()
        try:
            return await connect(
                f"{self.deployment.ws}/ws/",
                origin=Origin(self.deployment.http),
                subprotocols=[Subprotocol("townsquare"), Subprotocol(f"bearer.{self.token}")],
                open_timeout=5,
                compression=None,
                proxy=None,
                max_size=None,
            )
        except InvalidStatus as exc:
            self.counts[f"connect_{exc.response.status_code}"] += 1
            self.log.append((time.time(), f"connect refused: {exc.response.status_code}"))
            if exc.response.status_code in (401, 403):
                await self._refresh_token()
            return None
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
            self.counts["connect_failed"] += 1
            self.log.append((time.time(), f"connect failed: {exc!r}"))
            return None

    async def _refresh_token(self) -> None:
        with contextlib.suppress(Exception):
            self.token = await asyncio.to_thread(token_for_deployment, self.deployment, self.user)
            self.token_at = time.monotonic()

    async def _session(self, ws: ClientConnection) -> None:
        self._ws = ws
        self.counts["connections"] += 1
        self.log.append((time.time(), "open"))
        reader = asyncio.create_task(self._read(ws))
        resender: asyncio.Task[None] | None = None
        try:
            for stream in self.streams:
                await self._subscribe(ws, stream)
            # What waits in the outbox now is resent here; what is written from now on is
            # sent by ``write`` (so nothing goes twice on one socket).
            waiting = list(self.outbox.values())
            self.connected.set()
            if self.offline_since is not None:
                self.max_offline = max(self.max_offline, time.monotonic() - self.offline_since)
                self.offline_since = None
            for out in waiting:
                await self._send_chat(ws, out)
            resender = asyncio.create_task(self._resend_late(ws))
            await reader
        except (ConnectionClosed, ConnectionError, TimeoutError) as exc:
            self.log.append((time.time(), f"session ended: {exc!r}"))
        finally:
            if self.connected.is_set():
                self.offline_since = time.monotonic()
            self.connected.clear()
            self._ws = None
            if resender is not None:
                resender.cancel()
            if not reader.done():
                ws.transport.abort()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await reader
            self.log.append((time.time(), f"closed {ws.close_code}"))
            if not self.stopping:
                self.counts["reconnects"] += 1

    async def _call(self, ws: ClientConnection, frame: dict[str, Any]) -> dict[str, Any]:
        ref = f"r{next(self._refs)}"
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[ref] = waiter
        await self._bucket.take()
        await ws.send(orjson.dumps({**frame, "ref": ref}).decode())
        try:
            return await asyncio.wait_for(waiter, SUBSCRIBE_TIMEOUT)
        finally:
            self._waiters.pop(ref, None)

    async def _subscribe(self, ws: ClientConnection, stream: str) -> None:
        """Subscribe with ``since`` = the last offset seen; again while the server answers
        ``unavailable``/``rate_limited`` or says the replay was ``truncated``."""
        while True:
            since = self.last_offset(stream)
            before = len(self.seen[stream])
            reply = await self._call(ws, {"type": "subscribe", "stream": stream, "since": since})
            if reply["type"] == "error":
                self.counts[f"subscribe_error_{reply['code']}"] += 1
                if reply["code"] not in ("unavailable", "rate_limited"):
                    raise ConnectionError(f"{self.name}: subscribe {stream}: {reply}")
                await asyncio.sleep(float(reply.get("retry_after") or 0.5))
                continue
            if not reply.get("truncated"):
                return
            self.counts["truncated"] += 1
            deadline = time.monotonic() + SUBSCRIBE_TIMEOUT
            while len(self.seen[stream]) < before + int(reply["replayed"]):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name}: truncated replay of {stream} incomplete")
                await asyncio.sleep(0.02)

    async def _send_chat(self, ws: ClientConnection, out: Outgoing) -> None:
        if out.client_id not in self.outbox:
            return
        await self._bucket.take()
        if ws is not self._ws:
            return  # the socket went away while this send waited for its turn
        frame = {
            "type": "chat.send",
            "room": out.room,
            "text": out.text,
            "client_id": out.client_id,
            "ref": f"m:{out.client_id}",
        }
        out.last_sent = time.monotonic()
        out.frames += 1
        self.counts["send_frames"] += 1
        if out.frames > 1:
            self.counts["resends"] += 1
        try:
            await ws.send(orjson.dumps(frame).decode())
        except ConnectionClosed:
            return

    async def _resend_late(self, ws: ClientConnection) -> None:
        """Resend what got no answer within ``RESEND_AFTER`` (e.g. a ``rate_limited`` error,
        which carries no ref)."""
        while True:
            await asyncio.sleep(RESEND_AFTER / 4)
            now = time.monotonic()
            for out in list(self.outbox.values()):
                if out.last_sent and now - out.last_sent > RESEND_AFTER:
                    await self._send_chat(ws, out)

    async def _read(self, ws: ClientConnection) -> None:
        try:
            await self._read_frames(ws)
        finally:
            for waiter in self._waiters.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError(f"{self.name}: socket closed"))

    async def _read_frames(self, ws: ClientConnection) -> None:
        async for text in ws:
            frame: dict[str, Any] = orjson.loads(text)
            kind = frame["type"]
            if kind == "event":
                if frame.get("event") == "chat.message" and frame["stream"] in self.seen:
                    data = frame["data"]
                    self.seen[frame["stream"]].append(
                        Seen(int(frame["offset"]), int(data["id"]), str(data["client_id"]))
                    )
                continue
            ref = frame.get("ref")
            if isinstance(ref, str) and ref.startswith("m:"):
                self._answered(ws, ref[2:], frame)
            elif isinstance(ref, str) and ref in self._waiters:
                waiter = self._waiters.pop(ref)
                if not waiter.done():
                    waiter.set_result(frame)
            elif kind == "error":
                self.counts[f"error_{frame.get('code')}"] += 1

    def _answered(self, ws: ClientConnection, client_id: str, frame: dict[str, Any]) -> None:
        if frame["type"] == "ack":
            if frame.get("duplicate"):
                self.counts["duplicate_acks"] += 1
            first = self.acks.get(client_id)
            if first is None:
                self.acks[client_id] = frame
            elif (first["id"], first["offset"]) != (frame["id"], frame["offset"]):
                self.ack_mismatches.append(
                    f"{client_id}: acked as id {first['id']} offset {first['offset']}, "
                    f"then as id {frame['id']} offset {frame['offset']}"
                )
            self.outbox.pop(client_id, None)
            return
        code = frame.get("code")
        self.counts[f"send_error_{code}"] += 1
        out = self.outbox.get(client_id)
        if out is None:
            return
        if code in ("unavailable", "rate_limited"):
            # Sent again by _resend_late, or after the next reconnect.
            return
        self.refused.append(f"{client_id}: {frame}")
        self.outbox.pop(client_id, None)


def token_for_deployment(deployment: Deployment, user: str) -> str:
    """A JWT for ``user`` from ``POST /api/token/`` at the deployment's front (nginx, or the
    single worker). Raises ``RuntimeError`` unless it answers 200."""
    response = httpx.post(
        f"{deployment.http}/api/token/",
        json={"username": user, "password": DEMO_PASSWORD},
        timeout=10,
    )
    if response.status_code != 200:
        raise RuntimeError(f"token for {user}: {response.status_code} {response.text}")
    return str(response.json()["access"])


# --- Chromium pages --------------------------------------------------------------------------


@dataclass
class BrowserPage:
    """A room page in headless Chromium, typing into its composer as a person would.

    ``typed`` lists the texts entered (the page picks their ``client_id``s, so they are
    matched by text); ``retries`` counts clicks on "Retry" of a message shown as not sent;
    ``shown`` is the page's final message list, ``(offset, id, client_id)`` per stored item.
    """

    name: str
    user: str
    page: Page
    typed: list[str] = field(default_factory=list)
    retries: int = 0
    shown: list[tuple[int, int, str]] = field(default_factory=list)
    local_left: int = 0  # items still pending or failed at the end
    #: Why the page stopped taking input (its notice, error and connection state), if it did.
    stuck: str = ""
    console: list[str] = field(default_factory=list)  # the page's console warnings and errors
    loads: int = 0  # page loads after the room was opened (the page reloads itself if stale)

    async def type(self, text: str) -> None:
        """Type ``text`` and press Enter; if the composer does not take it within 15 s,
        record the page's state in ``stuck`` and type no more."""
        if self.stuck:
            return
        try:
            await self.page.fill("#composer-text", text)
            await self.page.press("#composer-text", "Enter")
        except PlaywrightError as exc:
            self.stuck = f"{time.strftime('%H:%M:%S')} {await self.state()}: {exc.message[:200]}"
            return
        self.typed.append(text)

    def on_load(self, _page: Page) -> None:
        self.loads += 1

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type in ("warning", "error"):
            self.console.append(f"{time.strftime('%H:%M:%S')} {message.type}: {message.text}")

    async def state(self) -> str:
        """The page's notice, error line, connection badge and composer, in a few words."""
        return str(
            await self.page.evaluate(
                """() => JSON.stringify({
                    notice: document.querySelector("#room-notice")?.textContent,
                    error: document.querySelector("#composer-error")?.textContent,
                    connection: document.querySelector("#connection-state")?.dataset.state,
                    badge: document.querySelector("#connection-state")?.textContent,
                    composer_disabled: document.querySelector("#composer-text")?.disabled,
                    items: document.querySelectorAll("#messages li").length,
                })"""
            )
        )

    async def retry_failed(self) -> None:
        """Click "Retry" on each message the page shows as not sent."""
        for button in await self.page.locator("#messages li.local.failed button").all():
            if (await button.text_content()) == "Retry":
                await button.click()
                self.retries += 1

    async def read(self) -> None:
        """Read the page's message list: stored items, and how many local ones are left."""
        self.shown = [
            (int(o), int(i), str(c))
            for o, i, c in await self.page.eval_on_selector_all(
                "#messages li.message:not(.local)",
                "els => els.map(e => [e.dataset.offset, e.dataset.id, e.dataset.clientId])",
            )
        ]
        self.local_left = await self.page.locator("#messages li.local").count()


async def open_pages(
    config: Config, deployment: Deployment, room: int, stack: contextlib.AsyncExitStack
) -> list[BrowserPage]:
    """Launch Chromium (closed by ``stack``), sign ``config.browsers`` users in through the
    login form at the deployment's front, and open ``room``'s page in each, live."""
    if not config.browsers:
        return []
    from playwright.async_api import async_playwright, expect

    from tests.services import CHROMIUM_ARGS, need_chromium

    executable = need_chromium()
    playwright = await stack.enter_async_context(async_playwright())
    browser = await playwright.chromium.launch(
        executable_path=executable, args=CHROMIUM_ARGS, headless=True
    )
    stack.push_async_callback(browser.close)
    pages: list[BrowserPage] = []
    for i, user in enumerate(PAGE_USERS[: config.browsers]):
        context = await browser.new_context(base_url=deployment.http)
        context.set_default_timeout(15_000)
        page = await context.new_page()
        browser_page = BrowserPage(f"page{i}", user, page)
        page.on("console", browser_page.on_console)
        await page.goto("/accounts/login/")
        await page.fill("input[name=username]", user)
        await page.fill("input[name=password]", DEMO_PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.locator(".username")).to_have_text(user)
        await page.goto(f"/chat/room/{room}/")
        await expect(page.locator("#connection-state")).to_have_attribute("data-state", "open")
        page.on("load", browser_page.on_load)
        pages.append(browser_page)
    return pages


# --- Faults ----------------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str
    at: float  # seconds after the traffic started, as scheduled
    wall: float = 0.0  # when it was injected (Unix time)
    took: float = 0.0  # seconds until the deployment was whole again
    detail: str = ""


def schedule(config: Config) -> list[Fault]:
    """The run's faults: cuts evenly over the traffic; the heavy ones (restart, kill, redis)
    interleaved, evenly between 15 % and 85 % of it. Sorted by time."""
    faults = [
        Fault("cut", config.seconds * (i + 0.5) / n)
        for n in [config.faults.get("cut", 0)]
        for i in range(n)
    ]
    heavy: list[str] = []
    queues = {k: config.faults.get(k, 0) for k in ("restart", "kill", "redis")}
    while any(queues.values()):
        for kind in ("kill", "redis", "restart"):
            if queues[kind]:
                heavy.append(kind)
                queues[kind] -= 1
    for i, kind in enumerate(heavy):
        faults.append(Fault(kind, config.seconds * (0.15 + 0.7 * (i + 0.5) / len(heavy))))
    return sorted(faults, key=lambda f: f.at)


async def inject(
    fault: Fault, config: Config, deployment: Deployment, clients: list[CheckClient]
) -> None:
    """Inject one fault and wait until the deployment is whole again."""
    fault.wall = time.time()
    started = time.monotonic()
    if fault.kind == "cut":
        candidates = [c for c in clients if c.connected.is_set() and not c.cut_pending]
        if candidates:
            victim = _random.choice(candidates)
            victim.cut_pending = True
            fault.detail = victim.name
    elif fault.kind in ("restart", "kill"):
        # Each worker in turn: with two, both are hit (the leader among them).
        turn = deployment.worker_faults[fault.kind]
        server = deployment.workers[turn % len(deployment.workers)]
        deployment.worker_faults[fault.kind] += 1
        fault.detail = f"worker :{server.port}"
        kill = fault.kind == "kill"
        await asyncio.to_thread(
            respawn, deployment, server, kill=kill, down=config.down_seconds if kill else 0.0
        )
    elif fault.kind == "redis":
        assert deployment.redis is not None
        await asyncio.to_thread(deployment.redis.restart, down_seconds=config.down_seconds)
        fault.detail = f"redis :{deployment.redis.port}"
    fault.took = time.monotonic() - started


async def run_faults(
    faults: list[Fault], config: Config, deployment: Deployment, clients: list[CheckClient]
) -> None:
    """Inject ``faults`` at their times: cuts on their own, the heavy ones one at a time (a
    late one waits for the last to finish)."""
    started = time.monotonic()

    async def in_turn(queue: list[Fault]) -> None:
        for fault in queue:
            await asyncio.sleep(max(0.0, fault.at - (time.monotonic() - started)))
            await inject(fault, config, deployment, clients)

    await asyncio.gather(
        in_turn([f for f in faults if f.kind == "cut"]),
        in_turn([f for f in faults if f.kind != "cut"]),
    )


# --- The run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One stored message, read from the database."""

    room: int
    offset: int
    id: int
    client_id: str
    author: int
    created_at: datetime
    text: str


def stored_rows(database_url: str, rooms: list[int]) -> list[Row]:
    """The rooms' messages, by room then offset, read straight from the database
    (``postgres://…`` with psycopg, ``sqlite:///…`` read-only with sqlite3)."""
    marks = ",".join("?" * len(rooms))
    query = (
        'SELECT room_id, "offset", id, client_id, author_id, created_at, text FROM chat_message '
        f'WHERE room_id IN ({marks}) ORDER BY room_id, "offset"'
    )
    if database_url.startswith("sqlite:///"):
        path = database_url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            rows = db.execute(query, rooms).fetchall()
    else:
        with psycopg.connect(database_url, connect_timeout=5) as conn:
            rows = conn.execute(query.replace("?", "%s"), rooms).fetchall()
    return [
        Row(int(r[0]), int(r[1]), int(r[2]), str(r[3]), int(r[4]), _aware(r[5]), str(r[6]))
        for r in rows
    ]


def _aware(value: datetime | str) -> datetime:
    """A stored ``created_at`` as an aware datetime (SQLite gives naive UTC text)."""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass
class Result:
    """The figures of a run and the problems found (empty when exactly-once held)."""

    config: Config
    figures: dict[str, Any]
    faults: list[Fault]
    problems: list[str]
    #: Every client's socket history, ``(Unix time, client, what)``, for a verbose report.
    timeline: list[tuple[float, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self, *, verbose: bool = False) -> str:
        """The figures and the problems, as printed; ``verbose`` adds the timeline of
        faults and sockets (times from the first fault)."""
        c = self.config
        lines = [
            f"[checker] topology={c.topology} database={c.database} clients={c.clients} "
            f"rooms={c.rooms} seconds={c.seconds:g} rate={c.rate:g}/s per client",
            "[checker] " + " ".join(f"{k}={v}" for k, v in self.figures.items()),
            "[checker] faults: "
            + (
                ", ".join(
                    f"{f.kind}@{f.at:.1f}s({f.detail or 'none'}, {f.took:.2f}s)"
                    for f in self.faults
                )
                or "none"
            ),
        ]
        lines += [f"[checker] PROBLEM {p}" for p in self.problems]
        if verbose and self.timeline:
            start = min(f.wall for f in self.faults if f.wall) if self.faults else 0.0
            events = sorted(
                [(t, c, w) for t, c, w in self.timeline]
                + [(f.wall, "FAULT", f"{f.kind} {f.detail}") for f in self.faults if f.wall]
            )
            lines += [f"[checker]   {t - start:+8.2f}s {c}: {w}" for t, c, w in events]
        return "\n".join(lines)


async def _create_rooms(deployment: Deployment, token: str, count: int) -> list[int]:
    run = uuid.uuid4().hex[:8]
    rooms: list[int] = []
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=10) as h:
        for i in range(count):
            response = await h.post(
                f"{deployment.http}/api/rooms/", json={"name": f"check-{run}-{i}"}
            )
            if response.status_code != 201:
                raise RuntimeError(f"room not created: {response.status_code} {response.text}")
            rooms.append(int(response.json()["id"]))
    return rooms


async def _until(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def traffic(config: Config, deployment: Deployment) -> Result:
    """Run the clients, the pages and the faults against a started deployment; wait until
    every outbox is drained and everyone caught up (bounded by ``drain_seconds``); check."""
    async with contextlib.AsyncExitStack() as stack:
        return await _traffic(config, deployment, stack)


async def _traffic(
    config: Config, deployment: Deployment, stack: contextlib.AsyncExitStack
) -> Result:
    rng = random.Random(config.seed)
    tokens = {
        user: await asyncio.to_thread(token_for_deployment, deployment, user) for user in USERS
    }
    rooms = await _create_rooms(deployment, tokens["alice"], config.rooms)
    pages = await open_pages(config, deployment, rooms[0], stack)
    clients = [
        CheckClient(f"c{i}", user, tokens[user], deployment, rooms)
        for i, user in ((i, USERS[i % len(USERS)]) for i in range(config.clients))
    ]
    runners = [asyncio.create_task(c.run()) for c in clients]
    ready = await _until(lambda: all(c.connected.is_set() for c in clients), 20)
    if not ready:
        raise RuntimeError("the clients did not connect within 20 s")

    faults = schedule(config)
    started = time.monotonic()

    def running() -> bool:
        return time.monotonic() - started < config.seconds

    async def typist(client: CheckClient) -> None:
        # Poisson-ish: exponential gaps with the configured mean rate.
        while running():
            await asyncio.sleep(rng.expovariate(config.rate))
            if running():
                await client.write(rng.choice(rooms))

    async def page_typist(page: BrowserPage) -> None:
        count = itertools.count(1)
        while running():
            await asyncio.sleep(rng.expovariate(config.page_rate))
            if running():
                await page.type(f"{page.name}-{next(count)} {uuid.uuid4().hex[:6]}")
                await page.retry_failed()

    async def pages_settled() -> bool:
        for page in pages:
            await page.retry_failed()
            await page.read()
        return all(page.local_left == 0 for page in pages)

    async def pages_show(stored: list[tuple[int, int, str]]) -> bool:
        for page in pages:
            await page.read()
        return all(page.shown == stored for page in pages)

    fault_task = asyncio.create_task(run_faults(faults, config, deployment, clients))
    try:
        await asyncio.gather(*(typist(c) for c in clients), *(page_typist(p) for p in pages))
        # Faults scheduled inside the traffic window finish (the deployment is whole again).
        await asyncio.wait_for(fault_task, config.drain_seconds)
        drain_started = time.monotonic()

        def left() -> float:
            return max(5.0, config.drain_seconds - (time.monotonic() - drain_started))

        drained = await _until(lambda: all(not c.outbox for c in clients), left())
        settled = await _until_async(pages_settled, left())
        rows = stored_rows(deployment.database_url, rooms)
        last = {f"chat:room:{room}": 0 for room in rooms}
        for row in rows:
            last[f"chat:room:{row.room}"] = max(last[f"chat:room:{row.room}"], row.offset)
        caught_up = await _until(
            lambda: all(c.last_offset(s) >= last[s] for c in clients for s in c.streams),
            left(),
        )
        first_room = [(r.offset, r.id, r.client_id) for r in rows if r.room == rooms[0]]
        await _until_async(partial(pages_show, first_room), left())
        await asyncio.sleep(0.5)  # nothing more (no late duplicate) arrives
        for page in pages:
            await page.read()
        drain_took = time.monotonic() - drain_started
    finally:
        if not fault_task.done():
            fault_task.cancel()
        for client in clients:
            await client.stop()
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, fault_task, return_exceptions=True)
    rows = stored_rows(deployment.database_url, rooms)
    result = verify(config, clients, rows, faults, pages, rooms[0])
    result.figures["drain_s"] = round(drain_took, 2)
    result.timeline = [(t, c.name, what) for c in clients for t, what in c.log]
    if not drained:
        result.problems.append(f"outboxes not drained in {config.drain_seconds} s")
    if not settled:
        left_over = {p.name: p.local_left for p in pages}
        result.problems.append(f"pages still show unsent messages: {left_over}")
    if not caught_up:
        result.problems.append("clients not caught up with the stored messages in time")
    return result


async def _until_async(condition: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.3)
    return True


def _near(faults: list[Fault], when: datetime) -> str:
    """The faults injected within 5 s of ``when`` (a message's created_at), for a report."""
    at = when.timestamp()
    near = [f"{f.kind}({f.detail})@{f.wall - at:+.1f}s" for f in faults if abs(f.wall - at) < 5]
    return ", ".join(near) or "no fault within 5 s"


def verify(
    config: Config,
    clients: list[CheckClient],
    rows: list[Row],
    faults: list[Fault],
    pages: Sequence[BrowserPage] = (),
    page_room: int = 0,
) -> Result:
    """Compare what the clients were told and saw, and what the pages show, with what the
    database holds. Returns the figures and a list of problems (empty: exactly once)."""
    problems: list[str] = []
    by_room: dict[int, list[Row]] = {}
    for row in rows:
        by_room.setdefault(row.room, []).append(row)
    by_client_id: dict[str, list[Row]] = {}
    for row in rows:
        by_client_id.setdefault(row.client_id, []).append(row)

    # Stored exactly once, gapless.
    duplicates = sum(len(found) - 1 for found in by_client_id.values() if len(found) > 1)
    for client_id, found in by_client_id.items():
        if len(found) > 1:
            problems.append(
                f"duplicate: {client_id} stored {len(found)} times in room {found[0].room} at "
                f"offsets {[r.offset for r in found]} ({_near(faults, found[0].created_at)})"
            )
    for room in {c for client in clients for c in client.rooms}:
        offsets = [r.offset for r in by_room.get(room, [])]
        if offsets != list(range(1, len(offsets) + 1)):
            problems.append(f"gap: chat:room:{room} stored offsets {offsets[:5]}…{offsets[-5:]}")

    sent = {cid: out for c in clients for cid, out in c.sent.items()}
    typed = {text: page for page in pages for text in page.typed}
    foreign = [r.client_id for r in rows if r.client_id not in sent and r.text not in typed]
    if foreign:
        problems.append(f"stored but never sent by a client: {foreign[:10]}")

    # What the pages typed is stored once (matched by text: the page picks the client_id),
    # and each page ends showing exactly the stored list of its room.
    by_text = Counter(r.text for r in rows if r.room == page_room)
    page_lost = 0
    for text, page in typed.items():
        if by_text[text] == 0:
            page_lost += 1
            problems.append(f"lost: {page.name} typed {text!r}, not stored")
        elif by_text[text] > 1:
            duplicates += by_text[text] - 1
            problems.append(f"duplicate: {page.name} typed {text!r}, stored {by_text[text]} times")
    expected = [(r.offset, r.id, r.client_id) for r in by_room.get(page_room, [])]
    page_mismatch = 0
    for page in pages:
        if page.stuck:
            problems.append(
                f"page: {page.name} stopped taking input at {page.stuck}; "
                f"its console: {page.console[-8:]}"
            )
        if page.shown != expected:
            page_mismatch += 1
            shown = [o for o, _, _ in page.shown]
            missing = sorted(set(r[0] for r in expected) - set(shown))
            extra = sorted(set(shown) - set(r[0] for r in expected))
            repeated = sorted(o for o, n in Counter(shown).items() if n > 1)
            problems.append(
                f"page: {page.name} shows {len(page.shown)} messages, stored "
                f"{len(expected)}: missing offsets {_ranges(missing)}, not stored "
                f"{_ranges(extra)}, twice {_ranges(repeated)}, "
                f"in order {shown == sorted(shown)}, still local {page.local_left}"
            )

    # Every ack names a stored message, the right one.
    lost_acked = 0
    acked = 0
    for client in clients:
        problems += [f"ack mismatch: {m}" for m in client.ack_mismatches]
        problems += [f"refused: {m}" for m in client.refused]
        for client_id, ack in client.acks.items():
            acked += 1
            found = by_client_id.get(client_id, [])
            if not found:
                lost_acked += 1
                problems.append(
                    f"lost: {client_id} acked at chat:room:{sent[client_id].room} offset "
                    f"{ack['offset']} (id {ack['id']}) but not stored"
                )
            elif (found[0].id, found[0].offset) != (ack["id"], ack["offset"]):
                lost_acked += 1
                problems.append(
                    f"lost: {client_id} acked as id {ack['id']} offset {ack['offset']}, stored as "
                    f"id {found[0].id} offset {found[0].offset}"
                )
    unacked = sum(len(c.outbox) for c in clients)
    if unacked:
        problems.append(
            "unacked at the end: "
            + ", ".join(cid for c in clients for cid in list(c.outbox)[:5])
        )

    # Every client saw every stored message once, in order, and nothing else.
    missing_total = repeated_total = phantom_total = disorder_total = 0
    for client in clients:
        for stream in client.streams:
            room = int(stream.rsplit(":", 1)[1])
            stored = {r.offset: r for r in by_room.get(room, [])}
            seen = client.seen[stream]
            offsets = [s.offset for s in seen]
            counts = Counter(offsets)
            missing = sorted(set(stored) - set(counts))
            repeated = sorted(o for o, n in counts.items() if n > 1)
            phantom = [
                s
                for s in seen
                if s.offset not in stored
                or (stored[s.offset].id, stored[s.offset].client_id) != (s.id, s.client_id)
            ]
            disorder = [
                (a, b) for a, b in itertools.pairwise(offsets) if b <= a and b not in repeated
            ]
            missing_total += len(missing)
            repeated_total += sum(counts[o] - 1 for o in repeated)
            phantom_total += len(phantom)
            disorder_total += len(disorder)
            if missing:
                near = _near(faults, stored[missing[0]].created_at)
                problems.append(
                    f"lost: {client.name} never saw {stream} offsets {_ranges(missing)} ({near}); "
                    f"its sockets: {_connections(client, stored[missing[0]].created_at)}"
                )
            if repeated:
                first = stored.get(repeated[0])
                near = _near(faults, first.created_at) if first else "not stored"
                problems.append(
                    f"duplicate delivery: {client.name} saw {stream} offsets "
                    f"{_ranges(repeated)} more than once ({near})"
                )
            if phantom:
                problems.append(f"phantom: {client.name} saw on {stream} {phantom[:5]}")
            if disorder:
                problems.append(f"out of order: {client.name} on {stream}: {disorder[:5]}")

    total = Counter[str]()
    for client in clients:
        total.update(client.counts)
    injected = Counter(f.kind for f in faults if f.kind != "cut" or f.detail)
    injected["cut"] = total["cuts"]
    figures: dict[str, Any] = {
        "sent": len(sent),
        "send_frames": total["send_frames"],
        "acked": acked,
        "stored": len(rows),
        "duplicates": duplicates,
        "lost": lost_acked + missing_total + page_lost,
        "lost_acked": lost_acked,
        "lost_unseen": missing_total,
        "delivered_twice": repeated_total,
        "phantom": phantom_total,
        "out_of_order": disorder_total,
        "unacked": unacked,
        "resends": total["resends"],
        "duplicate_acks": total["duplicate_acks"],
        "reconnects": total["reconnects"],
        "connects_refused": sum(v for k, v in total.items() if k.startswith("connect_")),
        "max_offline_s": round(max((c.max_offline for c in clients), default=0.0), 2),
        "faults": sum(injected.values()),
        **{f"faults_{k}": injected[k] for k in FAULT_KINDS if k in config.faults},
        **(
            {
                "pages": len(pages),
                "page_typed": len(typed),
                "page_lost": page_lost,
                "page_retries": sum(p.retries for p in pages),
                "pages_not_matching": page_mismatch,
                "page_reloads": sum(p.loads for p in pages),
            }
            if pages
            else {}
        ),
        "send_errors": sum(v for k, v in total.items() if k.startswith("send_error_")),
        "subscribe_errors": sum(v for k, v in total.items() if k.startswith("subscribe_error_")),
    }
    return Result(config=config, figures=figures, faults=faults, problems=problems)


def _ranges(offsets: list[int]) -> str:
    """``[1, 2, 3, 7]`` → ``"1-3,7"``."""
    parts: list[str] = []
    for _, group in itertools.groupby(enumerate(offsets), lambda p: p[1] - p[0]):
        run = [o for _, o in group]
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts)


def _connections(client: CheckClient, when: datetime) -> str:
    at = when.timestamp()
    return "; ".join(f"{what}@{t - at:+.1f}s" for t, what in client.log if abs(t - at) < 5)


async def run_check(config: Config, workdir: Path) -> Result:
    """Start the deployment in ``workdir``, run the traffic and the faults, stop, check."""
    config.check()
    _random.seed(config.seed)
    with deploy(config, workdir) as deployment:
        return await traffic(config, deployment)


# --- Command line ----------------------------------------------------------------------------


def _faults(text: str) -> dict[str, int]:
    faults: dict[str, int] = {}
    for part in filter(None, text.split(",")):
        kind, _, count = part.partition("=")
        faults[kind.strip()] = int(count or 1)
    return faults


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.checker``: one run; exit status 0 when exactly-once held, 1 if not."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.checker",
        description="Many clients send through /ws/ while faults are injected; "
        "check that every message is stored and seen exactly once.",
    )
    parser.add_argument("--topology", choices=["single", "nginx"], default="nginx")
    parser.add_argument("--database", choices=["sqlite", "postgres"])
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--rooms", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=4.0, help="messages/s per client")
    parser.add_argument(
        "--faults",
        type=_faults,
        help="kind=count,… (cut, restart, kill, redis); default: Config.ci's mix for --seconds",
    )
    parser.add_argument("--channel-layer", choices=["pubsub", "core"], default="pubsub")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--browsers", type=int, default=0, help="Chromium pages on the first room (0-2)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print the timeline")
    args = parser.parse_args(argv)
    config = Config.ci(args.topology, seconds=args.seconds)
    config = dataclasses.replace(
        config,
        database=args.database or config.database,
        clients=args.clients,
        rooms=args.rooms,
        rate=args.rate,
        faults=args.faults if args.faults is not None else config.faults,
        channel_layer=args.channel_layer,
        seed=args.seed,
        browsers=args.browsers,
    )
    with tempfile.TemporaryDirectory(prefix="townsquare-checker-") as workdir:
        result = asyncio.run(run_check(config, Path(workdir)))
    print(result.describe(verbose=args.verbose))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
