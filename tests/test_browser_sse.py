"""End to end in headless Chromium with WebSockets blocked: the pages fall back to
Server-Sent Events (``/sse/``, realtime/static/realtime/client.js) and work as over ``/ws/``:
live stock, chat between two users, and recovery after a server restart with every message
once, in order.

WebSockets are blocked the way a proxy that accepts the upgrade and passes nothing does:
Playwright's ``route_web_socket`` takes every ``/ws/`` socket, never connects it to the
server, and closes it. Waits are on page conditions, never sleeps.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, WebSocketRoute, expect

from tests.browser import log_in, wait_live
from tests.server import ROOT, Server, run_server, wait_serving

pytestmark = pytest.mark.browser

WS_URL = re.compile(r"/ws/")
ON_SSE = """() => {
  const client = window.__townsquareClient;
  return client?.transport === "sse" && client.state === "open";
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of this module's own: the test restarts it."""
    with run_server(tmp_path_factory.mktemp("browser-sse")) as running:
        first = running.process
        yield running
        if running.process is not first:  # restarted: run_server only knows the first
            running.process.terminate()
            running.process.wait(timeout=15)


def stop(server: Server) -> None:
    """SIGTERM, as a deploy does. Open event streams must not hold the process: uvicorn
    waits for a response still being written, so each stream is closed with 1012 (as uvicorn
    closes WebSockets). The pages' streams may end sooner on their own (a POST refused
    while the server stops ends a page's stream), so an idle one, as ``curl -N``'s, is
    open too: it gets the close record, then the end of the response."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as idle:
        idle.sendall(b"GET /sse/?stream=feed HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = idle.recv(65536)
        while b"event: connected" not in received:
            received += idle.recv(65536)
        server.process.terminate()
        while chunk := idle.recv(65536):
            received += chunk
    server.process.wait(timeout=15)
    assert received.endswith(
        b'event: close\ndata: {"code":1012,"reason":"the server is restarting"}\n\n\r\n0\r\n\r\n'
    ), received[-300:]


def start(server: Server) -> None:
    """Start the server again on the same port and database."""
    with server.log_path.open("ab") as log:
        server.process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(server.port)],
            cwd=ROOT,
            env=server.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    wait_serving(f"{server.http}/accounts/login/", server.process, server.log, timeout=60)


def on_sse(page: Page) -> None:
    """Wait until the page's client is open over SSE (after its WebSocket tries failed)."""
    page.wait_for_function(ON_SSE, timeout=30_000)
    wait_live(page)


def stored(page: Page, tag: str) -> list[str]:
    """The texts of the page's stored (acknowledged or received) messages carrying ``tag``."""
    return (
        page.locator("#messages li.message:not(.local) .text")
        .filter(has_text=tag)
        .all_text_contents()
    )


def type_and_enter(page: Page, text: str) -> None:
    box = page.locator("#composer-text")
    box.fill(text)
    box.press("Enter")
    expect(box).to_have_value("")


def test_two_users_chat_over_sse_and_recover_after_a_restart(
    browser: Browser, server: Server
) -> None:
    blocked: list[str] = []  # the WebSockets the pages tried (each closed unconnected)

    def refuse(ws: WebSocketRoute) -> None:
        blocked.append(ws.url)
        ws.close()

    pages: list[Page] = []
    errors: list[str] = []
    for user in ("alice", "bob"):
        context = browser.new_context(base_url=server.http)
        context.set_default_timeout(20_000)
        context.route_web_socket(WS_URL, refuse)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        log_in(page, user)
        pages.append(page)
    alice, bob = pages
    try:
        # Stock: alice buys on the item page, bob's item page shows the new number.
        items = httpx.get(f"{server.http}/api/items/", timeout=10).json()
        mug = next(i["id"] for i in items if i["name"] == "Ceramic mug")
        for page in pages:
            page.goto(f"/shop/item/{mug}/")
            on_sse(page)
        start_quantity = int(bob.locator("#quantity").text_content() or "")
        alice.fill("#buy-quantity", "1")
        alice.locator("#buy-submit").click()
        expect(bob.locator("#quantity")).to_have_text(str(start_quantity - 1))
        expect(alice.locator("#quantity")).to_have_text(str(start_quantity - 1))

        # Chat in the lobby, over SSE on both pages.
        tag = uuid.uuid4().hex[:8]
        for page in pages:
            page.goto("/chat/lobby/")
            on_sse(page)
        type_and_enter(alice, f"{tag} 1 alice")
        expect(bob.locator("#messages li.message .text").filter(has_text=f"{tag} 1")).to_have_count(
            1
        )
        type_and_enter(bob, f"{tag} 2 bob")
        for page in pages:
            expect(
                page.locator("#messages li.message:not(.local)").filter(has_text=tag)
            ).to_have_count(2)

        # The server restarts; messages typed while it is down wait in the outboxes.
        stop(server)
        type_and_enter(alice, f"{tag} 3 alice")
        type_and_enter(alice, f"{tag} 4 alice")
        type_and_enter(bob, f"{tag} 5 bob")
        for page in pages:
            expect(
                page.locator("#messages li.message.local").filter(has_text=tag)
            ).not_to_have_count(0)
        start(server)
        for page in pages:
            on_sse(page)
            expect(page.locator("#messages li.message.local")).to_have_count(0)
            expect(
                page.locator("#messages li.message:not(.local)").filter(has_text=tag)
            ).to_have_count(5)
        type_and_enter(bob, f"{tag} 6 bob")
        for page in pages:
            expect(
                page.locator("#messages li.message:not(.local)").filter(has_text=tag)
            ).to_have_count(6)
            page.wait_for_function(ON_SSE)

        # Once each, in the server's order, the same on both pages; each user's own in the
        # order typed.
        token = httpx.post(
            f"{server.http}/api/token/",
            json={"username": "alice", "password": "townsquare-demo"},
            timeout=10,
        ).json()["access"]
        lobby = next(
            r["id"]
            for r in httpx.get(
                f"{server.http}/api/rooms/",
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            ).json()
            if r["name"] == "lobby"
        )
        listed = httpx.get(
            f"{server.http}/api/rooms/{lobby}/messages/",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).json()
        listed = listed["results"] if isinstance(listed, dict) else listed
        on_server = [
            m["text"] for m in sorted(listed, key=lambda m: m["offset"]) if tag in m["text"]
        ]
        assert len(on_server) == 6 and len(set(on_server)) == 6, on_server
        assert stored(alice, tag) == stored(bob, tag) == on_server
        assert [t for t in on_server if "alice" in t] == [f"{tag} {n} alice" for n in (1, 3, 4)]
        assert [t for t in on_server if "bob" in t] == [f"{tag} {n} bob" for n in (2, 5, 6)]
        assert on_server[:2] == [f"{tag} 1 alice", f"{tag} 2 bob"]
        assert on_server[-1] == f"{tag} 6 bob"
        # No WebSocket ever got through (each page load tried and gave up).
        assert len(blocked) >= 2 * 2 * 2 and all("/ws/" in url for url in blocked)
        assert errors == []
    finally:
        for page in pages:
            page.context.close()
