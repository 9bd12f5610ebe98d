"""``manage.py tail`` as a subprocess against a real server: history first, then live."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import token_for
from tests.server import ROOT, Server

pytestmark = pytest.mark.server


def line(stream: str, message: dict[str, Any]) -> str:
    """The line tail prints for ``message`` (as the API returns it; the API writes UTC as
    ``Z``, events as ``+00:00``)."""
    data = {**message, "created_at": message["created_at"].replace("Z", "+00:00")}
    dumped = orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
    return f"{stream} {message['offset']} chat.message {dumped}"


def test_tail_prints_the_history_then_a_live_message(server: Server) -> None:
    token = token_for(server, "carol")
    with httpx.Client(base_url=server.http, headers={"Authorization": f"Bearer {token}"}) as http:
        alice = token_for(server, "alice")  # staff: no room quota
        room = http.post(
            "/api/rooms/",
            json={"name": f"tail-{uuid.uuid4().hex[:10]}"},
            headers={"Authorization": f"Bearer {alice}"},
        ).json()["id"]
        stream = f"chat:room:{room}"
        history = [
            http.post(f"/api/rooms/{room}/messages/", json={"text": f"old {i}"}).json()
            for i in range(2)
        ]
        tail = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "tail",
                stream,
                "--since",
                "0",
                "--count",
                "3",
                "--event",
                "chat.message",
                "--url",
                f"{server.ws}/ws/",
                "--user",
                "bob",
            ],
            cwd=ROOT,
            env=server.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert tail.stdout is not None
            # The replay is printed once the subscription holds: a message sent now is live.
            printed = [tail.stdout.readline().rstrip("\n") for _ in history]
            live = http.post(f"/api/rooms/{room}/messages/", json={"text": "new"}).json()
            printed.append(tail.stdout.readline().rstrip("\n"))
            assert tail.wait(timeout=30) == 0, tail.stderr.read() if tail.stderr else ""
        finally:
            tail.kill()
    assert printed == [line(stream, m) for m in [*history, live]]
    assert [m["offset"] for m in [*history, live]] == [1, 2, 3]


def test_tail_refuses_a_stream_it_may_not_read(server: Server) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "tail",
            "user:1",
            "--count",
            "1",
            "--url",
            f"{server.ws}/ws/",
            "--user",
            "bob",
        ],
        cwd=ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert "forbidden: " in done.stderr
