"""The real-time core in another Django project: ``tests/minimal_project/``.

The minimal project installs Django's auth, Channels, ``realtime`` and one app of its own
(``board``: a model with an offset, a service that publishes on commit, a durable stream kind
with presence and one action). It runs as a real uvicorn process with its own settings and
SQLite file, in which the main project's packages cannot be imported at all (each is set to
``None`` in ``sys.modules``, so an ``import chat`` raises ``ModuleNotFoundError``): anything
that worked here needs ``realtime`` alone. docs/using-realtime.md quotes its code.
"""

from __future__ import annotations

import ast
import asyncio
import io
import itertools
import json
import os
import re
import subprocess
import sys
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.server import free_port, wait_serving

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ROOT / "tests" / "minimal_project"
DOC = ROOT / "docs" / "using-realtime.md"
SECRET_KEY = "minimal-project-test-secret-key-not-for-production-0123456789abcdef"
#: The main project's packages (and this test suite): none may be imported by the minimal one.
MAIN_PACKAGES = ("townsquare", "chat", "shop", "notifications", "dashboard", "tests")
#: Prepended to every Python process of the minimal project: makes the packages unimportable.
BLOCK = f"import sys; sys.modules.update(dict.fromkeys({MAIN_PACKAGES!r}))"

_refs = itertools.count(1)


@dataclass
class Minisite:
    """The running minimal project: its port, environment, log and users' tokens."""

    port: int
    env: dict[str, str]
    log_path: Path
    tokens: dict[str, str]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def run_python(env: dict[str, str], code: str, *, block: bool = True) -> str:
    """Run ``code`` in a Python process of the minimal project (the main project's packages
    blocked unless ``block`` is false); return its standard output."""
    out = subprocess.run(
        [sys.executable, "-c", f"{BLOCK}\n{code}" if block else code],
        cwd=PROJECT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout


def django(env: dict[str, str], *args: str) -> str:
    """``python -m django <args>`` in the minimal project, the main packages blocked."""
    code = "from django.core.management import execute_from_command_line as run\n"
    return run_python(env, code + f"run({['django', *args]!r})")


@pytest.fixture(scope="module")
def minisite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Minisite]:
    """Migrate a fresh database, create users ann and ben, serve the project with uvicorn."""
    workdir = tmp_path_factory.mktemp("minisite")
    # Nothing of the main project's environment: its settings module, database or Redis.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "PYTHONPATH")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="minisite.settings",
        SECRET_KEY=SECRET_KEY,
        MINISITE_DATABASE=str(workdir / "db.sqlite3"),
        PYTHONUNBUFFERED="1",
        # Every event the server publishes is checked against its declaration
        # (realtime.events); a refused one is logged as event=invalid_event.
        TOWNSQUARE_VALIDATE_EVENTS="1",
    )
    django(env, "migrate", "--noinput", "-v", "0")
    tokens = json.loads(
        run_python(
            env,
            "import django, json; django.setup()\n"
            "from django.contrib.auth.models import User\n"
            "from realtime.tokens import issue_token\n"
            "names = ('ann', 'ben')\n"
            "print(json.dumps({n: issue_token(User.objects.create_user(n))[0] for n in names}))",
        )
    )
    port = free_port()
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"{BLOCK}\nimport uvicorn; uvicorn.main()",
                "minisite.asgi:application",
                *("--port", str(port), "--lifespan", "on", "--ws-max-size", "65536"),
            ],
            cwd=PROJECT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    site = Minisite(port=port, env=env, log_path=log_path, tokens=tokens)
    try:
        # No page is served: any answer means the server is up.
        wait_serving(f"{site.origin}/", process, site.log, any_answer=True)
        yield site
        assert "event=invalid_event" not in site.log(), site.log()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def open_socket(site: Minisite, user: str | None) -> ClientConnection:
    """A socket on ``/ws/``, signed in as ``user`` by JWT subprotocol (anonymous for None)."""
    protocols = ["townsquare", f"bearer.{site.tokens[user]}"] if user else None
    return await connect(
        f"ws://127.0.0.1:{site.port}/ws/",
        origin=site.origin,  # type: ignore[arg-type]
        subprotocols=protocols,  # type: ignore[arg-type]
        open_timeout=5,
    )


async def recv(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
    return frame


async def call(ws: ClientConnection, frame: dict[str, Any]) -> list[dict[str, Any]]:
    """Send ``frame`` with a fresh ref; return what arrived up to its ack or error, inclusive."""
    ref = next(_refs)
    await ws.send(orjson.dumps({**frame, "ref": ref}).decode())
    frames = [await recv(ws)]
    while not (frames[-1].get("ref") == ref and frames[-1]["type"] in ("ack", "error")):
        frames.append(await recv(ws))
    return frames


async def next_event(ws: ClientConnection, event: str) -> dict[str, Any]:
    """The next ``event`` frame named ``event``; other frames are skipped."""
    while True:
        frame = await recv(ws)
        if frame["type"] == "event" and frame["event"] == event:
            return frame


def users(frame: dict[str, Any]) -> list[str]:
    return sorted(u["username"] for u in frame["data"]["users"])


@pytest.mark.server
def test_installs_only_realtime(minisite: Minisite) -> None:
    """The server's own import path (settings, app registry, ASGI stack) loads no package of
    the main project, and the only apps besides Django's and Channels' are realtime and board;
    the server itself runs with those packages blocked (``BLOCK``)."""
    code = (
        "import json, sys, minisite.asgi\n"
        "from django.conf import settings\n"
        f"main = sorted(m for m in sys.modules if m.split('.')[0] in {MAIN_PACKAGES!r})\n"
        "print(json.dumps({'apps': settings.INSTALLED_APPS, 'main': main}))"
    )
    found = json.loads(run_python(minisite.env, code, block=False))
    assert found["main"] == []
    assert found["apps"] == [
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "channels",
        "realtime",
        "board",
    ]


@pytest.mark.server
async def test_subscribe_answers_ack_then_snapshot(minisite: Minisite) -> None:
    """A signed-in subscribe gets the durable ``ack`` then the presence snapshot; the stream
    kind's ``authorize`` refuses an anonymous socket."""
    ws = await open_socket(minisite, "ann")
    try:
        ack = await call(ws, {"type": "subscribe", "stream": "board:subscribe"})
        assert len(ack) == 1 and ack[0]["type"] == "ack", ack
        assert {k: ack[0][k] for k in ("for", "stream", "durable", "replayed", "truncated")} == {
            "for": "subscribe",
            "stream": "board:subscribe",
            "durable": True,
            "replayed": 0,
            "truncated": False,
        }
        state = await recv(ws)
        assert state["event"] == "presence.state" and users(state) == ["ann"]
    finally:
        await ws.close()
    anonymous = await open_socket(minisite, None)
    try:
        [refused] = await call(anonymous, {"type": "subscribe", "stream": "board:subscribe"})
        assert (refused["type"], refused["code"]) == ("error", "unauthenticated")
    finally:
        await anonymous.close()


@pytest.mark.server
async def test_a_write_through_the_service_reaches_a_subscriber(minisite: Minisite) -> None:
    """``board.post`` stores through ``post_create``; after commit the post is an event at its
    offset on every subscribed socket. A refused post takes no offset and publishes nothing."""
    ann, ben = await open_socket(minisite, "ann"), await open_socket(minisite, "ben")
    try:
        await call(ann, {"type": "subscribe", "stream": "board:news"})
        [ack] = await call(ben, {"type": "board.post", "topic": "news", "text": "first"})
        assert (ack["for"], ack["offset"]) == ("board.post", 1)
        event = await next_event(ann, "board.post")
        assert (event["stream"], event["offset"]) == ("board:news", 1)
        assert event["data"] == {"author": "ben", "text": "first"}

        [refused] = await call(ben, {"type": "board.post", "topic": "news", "text": ""})
        assert (refused["type"], refused["code"]) == ("error", "invalid")
        [ack] = await call(ben, {"type": "board.post", "topic": "news", "text": "second"})
        assert ack["offset"] == 2
        event = await next_event(ann, "board.post")
        assert (event["offset"], event["data"]["text"]) == (2, "second")
    finally:
        await ann.close()
        await ben.close()


@pytest.mark.server
async def test_reconnect_with_since_gets_exactly_the_missed_posts(minisite: Minisite) -> None:
    """A socket that saw offset 1, left, and came back with ``since: 1`` gets 2, 3, 4 from the
    database, in order, then the next live post (5): nothing twice, nothing missing."""
    ben = await open_socket(minisite, "ben")
    ann = await open_socket(minisite, "ann")
    try:
        await call(ann, {"type": "subscribe", "stream": "board:recovery"})
        await call(ben, {"type": "board.post", "topic": "recovery", "text": "p1"})
        seen = await next_event(ann, "board.post")
        assert seen["offset"] == 1
        await ann.close()
        for text in ("p2", "p3", "p4"):
            await call(ben, {"type": "board.post", "topic": "recovery", "text": text})

        ann = await open_socket(minisite, "ann")
        frames = await call(ann, {"type": "subscribe", "stream": "board:recovery", "since": 1})
        assert frames[-1]["type"] == "ack" and frames[-1]["replayed"] == 3, frames
        replayed = [await next_event(ann, "board.post") for _ in range(3)]
        await call(ben, {"type": "board.post", "topic": "recovery", "text": "p5"})
        live = await next_event(ann, "board.post")
        got = [(e["offset"], e["data"]["text"]) for e in [*replayed, live]]
        assert got == [(2, "p2"), (3, "p3"), (4, "p4"), (5, "p5")]
    finally:
        await ann.close()
        await ben.close()


@pytest.mark.server
async def test_two_signed_in_sockets_see_each_other(minisite: Minisite) -> None:
    """On a stream kind registered with ``presence=True``: the second sees both in its
    ``presence.state``, the first hears the second's ``presence.join``, then its
    ``presence.leave`` when it closes."""
    ann = await open_socket(minisite, "ann")
    ben = await open_socket(minisite, "ben")
    try:
        await call(ann, {"type": "subscribe", "stream": "board:presence"})
        assert users(await next_event(ann, "presence.state")) == ["ann"]
        await call(ben, {"type": "subscribe", "stream": "board:presence"})
        assert users(await next_event(ben, "presence.state")) == ["ann", "ben"]
        # A socket also hears its own join (docs/protocol.md): skip ann's.
        joined = await next_event(ann, "presence.join")
        if joined["data"]["user"]["username"] == "ann":
            joined = await next_event(ann, "presence.join")
        assert joined["data"]["user"]["username"] == "ben"
        await ben.close()
        left = await next_event(ann, "presence.leave")
        assert left["data"]["user"] == joined["data"]["user"]
    finally:
        await ann.close()
        await ben.close()


def code_lines(path: Path) -> tuple[int, int]:
    """``(lines of code, import lines among them)`` of a module: blank lines, comments and
    docstrings are not code."""
    source = path.read_text()
    skip: set[int] = set()
    imports: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        documented = ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
        if isinstance(node, documented) and ast.get_docstring(node, clean=False) is not None:
            skip.update(range(node.body[0].lineno, (node.body[0].end_lineno or 0) + 1))
        if isinstance(node, ast.Import | ast.ImportFrom):
            imports.update(range(node.lineno, (node.end_lineno or 0) + 1))
    code: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE) and token.string:
            code.update(range(token.start[0], token.end[0] + 1))
    code -= skip
    return len(code), len(code & imports)


def test_the_guide_quotes_the_minimal_project() -> None:
    """Every Python block of docs/using-realtime.md that names a file of the minimal project
    is in that file, as it is; each of its modules is quoted; the app's size is the one the
    guide gives."""
    guide = DOC.read_text()
    blocks = re.findall(r"```python\n# (tests/minimal_project/\S+)\n(.*?)```", guide, re.S)
    for path, block in blocks:
        assert block in (ROOT / path).read_text(), f"{path} no longer has the guide's block"
    app = ("apps.py", "models.py", "services.py", "streams.py")
    assert {path for path, _ in blocks} == {
        *(f"tests/minimal_project/board/{name}" for name in app),
        "tests/minimal_project/minisite/settings.py",
        "tests/minimal_project/minisite/asgi.py",
    }
    counts = [code_lines(PROJECT / "board" / name) for name in app]
    total, imports = sum(c for c, _ in counts), sum(i for _, i in counts)
    assert f"{total} lines of code in `board/`" in guide
    assert f"{total - imports} without the import lines" in guide
