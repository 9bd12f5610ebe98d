"""``manage.py serve`` with uvicorn's wsproto WebSocket implementation (``SERVE_WS=wsproto``).

wsproto is a main dependency, so the option the command offers works out of the box; a
WebSocket implementation whose package is missing is refused before uvicorn starts, with
the package to install.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import orjson
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from websockets.asyncio.client import connect
from websockets.typing import Origin, Subprotocol

from tests.conftest import token_for
from tests.server import run_server


@pytest.mark.server
async def test_serve_with_wsproto_serves_a_websocket(tmp_path: Path) -> None:
    with run_server(tmp_path, SERVE_WS="wsproto") as server:
        assert "ws=wsproto" in server.log()
        token = token_for(server, "alice")
        async with connect(
            f"{server.ws}/ws/",
            origin=Origin(server.origin),
            subprotocols=[Subprotocol("townsquare"), Subprotocol(f"bearer.{token}")],
            open_timeout=5,
            proxy=None,
        ) as ws:
            assert ws.subprotocol == "townsquare"
            await ws.send(orjson.dumps({"type": "ping", "ref": 7}).decode())
            pong = orjson.loads(await ws.recv())
            assert (pong["type"], pong["ref"]) == ("pong", 7)
            await ws.send(orjson.dumps({"type": "subscribe", "stream": "nope", "ref": 8}).decode())
            error = orjson.loads(await ws.recv())
            assert (error["type"], error["ref"]) == ("error", 8)
        # uvicorn names the implementation it loaded in no line; a crash would have ended the
        # process, and a wsproto import error would show in the log.
        assert server.process.poll() is None
        assert "wsproto" not in server.log().replace("ws=wsproto", "")


def test_serve_refuses_a_ws_implementation_that_is_not_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> object:
        return None if name == "wsproto" else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(CommandError, match=r"--ws wsproto needs the 'wsproto' package.*pip"):
        call_command("serve", "--ws", "wsproto", "--port", "1")
