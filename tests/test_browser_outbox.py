"""The browser side of "exactly once": the client's outbox and a connection state that tells
the truth (realtime/static/realtime/client.js, shared.js, chat/static/chat/room.js).

Every test drives headless Chromium against a real server. Faults are made with Playwright's
network emulation (``set_offline``) and ``route_web_socket``, which sits between the page and
the server and can hold, drop or cut frames; every wait is on a DOM state or a page
condition, never a sleep. The measured times are printed (``pytest -s``).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from tests.browser import log_in, wait_live
from tests.conftest import token_for
from tests.server import Server
from tests.test_browser_chat import open_new_room

pytestmark = pytest.mark.browser

WS_URL = re.compile(r"/ws/$")


@dataclass
class Room:
    """A fresh public room, open in ``pages`` (the first page created it)."""

    id: int
    href: str
    pages: list[Page]
    errors: list[str]  # uncaught exceptions in any of the pages


def open_room(
    new_page: Callable[[], Page],
    users: tuple[str, ...],
    route: Callable[[WebSocketRoute], None] | None = None,
) -> Room:
    """Sign ``users`` in, each in a page of their own; the first creates a room, the others
    open it; return when every page is live. ``route`` handles every socket of the first
    page (installed before its first socket opens)."""
    pages = [new_page() for _ in users]
    errors: list[str] = []
    for page in pages:
        page.on("pageerror", lambda error: errors.append(str(error)))
    if route is not None:
        pages[0].route_web_socket(WS_URL, route)
    for page, user in zip(pages, users, strict=True):
        log_in(page, user)
    open_new_room(pages[0], f"outbox-{uuid.uuid4().hex[:8]}")
    href = pages[0].url
    for page in pages[1:]:
        page.goto(href)
    for page in pages:
        wait_live(page)
    room_id = int(pages[0].locator("#room-id").text_content() or "")
    return Room(id=room_id, href=href, pages=pages, errors=errors)


def until(page: Page, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a condition on what the test's WebSocket route recorded: route handlers run
    while the test calls into Playwright, so this keeps calling it (50 ms steps)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        page.wait_for_timeout(50)


def stored(page: Page, text: str):
    """The stored (not local) message items whose text is exactly ``text``."""
    return page.locator(
        "#messages li.message:not(.local) .text", has_text=re.compile(f"^{re.escape(text)}$")
    )


def local(page: Page, text: str, state: str = "local"):
    """The page's own items of ``text`` still on their way (``pending``, ``failed``…)."""
    return page.locator(
        f"#messages li.message.{state} .text", has_text=re.compile(f"^{re.escape(text)}$")
    )


def stored_on_server(server: Server, room_id: int, user: str) -> list[dict]:
    """The room's messages as the API lists them (newest first)."""
    response = httpx.get(
        f"{server.http}/api/rooms/{room_id}/messages/",
        headers={"Authorization": f"Bearer {token_for(server, user)}"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return body["results"] if isinstance(body, dict) else body


def type_and_enter(page: Page, text: str) -> None:
    box = page.locator("#composer-text")
    box.press_sequentially(text)
    box.press("Enter")


@dataclass
class Relay:
    """A ``route_web_socket`` handler that passes frames between page and server and can
    hold the page's ``chat.send`` frames or cut the socket once the server has acknowledged
    one (everything the server says in between is lost with it). It records what crossed."""

    hold_sends: bool = False
    cut_after_send_ack: bool = False
    send_to_room: int | None = None
    held: list[tuple[WebSocketRoute, str]] = field(default_factory=list)
    sent: list[dict] = field(default_factory=list)
    acks: list[dict] = field(default_factory=list)

    def __call__(self, ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        cutting = {"on": False}

        def from_page(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") == "chat.send":
                self.sent.append(frame)
                if self.cut_after_send_ack:
                    self.cut_after_send_ack = False
                    cutting["on"] = True
                if self.hold_sends:
                    self.held.append((server, str(message)))
                    return
                if self.send_to_room is not None:
                    message = json.dumps({**frame, "room": self.send_to_room})
            server.send(message)

        def from_server(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") == "ack" and frame.get("for") == "chat.send":
                self.acks.append(frame)
                if cutting["on"]:
                    # The server has stored it; the page never hears so.
                    ws.close(code=4000, reason="cut by the test")
                    return
            if not cutting["on"]:
                ws.send(message)

        ws.on_message(from_page)
        server.on_message(from_server)

    def release(self) -> None:
        """Pass on the held frames, in order, and stop holding."""
        self.hold_sends = False
        held, self.held = self.held, []
        for server, message in held:
            server.send(message)


@pytest.fixture
def relay() -> Iterator[Relay]:
    yield Relay()


def test_enter_clears_at_once_and_fast_messages_stay_apart(
    new_page: Callable[[], Page], relay: Relay
) -> None:
    """Enter empties the composer before any answer (sends are held here), text typed right
    after is the next message only, and both show once, in order, for both people."""
    room = open_room(new_page, ("alice", "bob"), route=relay)
    alice, bob = room.pages
    relay.hold_sends = True

    box = alice.locator("#composer-text")
    type_and_enter(alice, "AAA-first")
    # Cleared by the key press itself: the send is held, so no ack can have cleared it.
    assert box.input_value() == ""
    box.press_sequentially("BBB-second")
    expect(box).to_have_value("BBB-second")
    expect(local(alice, "AAA-first", "pending")).to_have_count(1)
    expect(alice.locator("#messages li.pending .status").first).to_have_text("sending…")
    box.press("Enter")
    assert box.input_value() == ""
    expect(alice.locator("#messages li.message.pending")).to_have_count(2)
    until(alice, lambda: len(relay.sent) == 2)
    assert [f["text"] for f in relay.sent] == ["AAA-first", "BBB-second"]

    relay.release()
    for page in (alice, bob):
        expect(page.locator("#messages li.message:not(.local) .text")).to_have_text(
            ["AAA-first", "BBB-second"]
        )
    expect(alice.locator("#messages li.local")).to_have_count(0)
    assert box.input_value() == ""
    # Shift+Enter sends nothing: it starts a new line of the same message.
    box.press_sequentially("not yet")
    box.press("Shift+Enter")
    expect(box).to_have_value("not yet\n")
    assert len(relay.sent) == 2
    assert room.errors == []


@pytest.mark.serial  # timer bounds within a second: run alone (./test)
def test_offline_shows_truth_and_delivers_once_when_back(
    new_page: Callable[[], Page], server: Server
) -> None:
    room = open_room(new_page, ("alice", "bob"))
    alice, bob = room.pages
    badge = alice.locator("#connection-state")

    started = time.monotonic()
    alice.context.set_offline(True)
    expect(badge).not_to_have_attribute("data-state", "open", timeout=16_000)
    left_live = time.monotonic() - started
    assert left_live < 16
    expect(badge).to_have_text("offline")
    expect(alice.locator("#composer-status")).to_contain_text("Not connected")
    expect(alice.locator("#composer-send")).to_be_enabled()

    text = f"typed offline {uuid.uuid4().hex[:6]}"
    type_and_enter(alice, text)
    expect(alice.locator("#composer-text")).to_have_value("")
    expect(local(alice, text, "pending")).to_have_count(1)
    expect(stored(bob, text)).to_have_count(0)

    started = time.monotonic()
    alice.context.set_offline(False)
    wait_live(alice)
    back_live = time.monotonic() - started
    assert back_live < 5
    expect(badge).to_have_text("live")
    expect(alice.locator("#composer-status")).to_be_hidden()
    for page in (alice, bob):
        expect(stored(page, text)).to_have_count(1)
    expect(alice.locator("#messages li.local")).to_have_count(0)
    assert [m["text"] for m in stored_on_server(server, room.id, "alice")].count(text) == 1
    print(f"\noffline: badge left live after {left_live:.2f} s, live {back_live:.2f} s after")
    assert room.errors == []


def test_many_messages_typed_offline_arrive_once_in_order(
    new_page: Callable[[], Page], server: Server
) -> None:
    """50 messages queued offline go out paced under the server's rate limit (none dropped
    as `rate_limited`, which would reorder them), each once, in the order typed."""
    room = open_room(new_page, ("alice", "bob"))
    alice, bob = room.pages
    alice.context.set_offline(True)
    expect(alice.locator("#connection-state")).to_have_attribute("data-state", "offline")
    texts = [f"burst {i:02d}" for i in range(50)]
    alice.evaluate(
        """(texts) => {
            const input = document.getElementById("composer-text");
            const form = document.getElementById("composer");
            for (const text of texts) {
                input.value = text;
                form.requestSubmit();
            }
        }""",
        texts,
    )
    expect(alice.locator("#messages li.message.pending")).to_have_count(50)
    alice.context.set_offline(False)
    for page in (alice, bob):
        expect(page.locator("#messages li.message:not(.local) .text")).to_have_text(
            texts, timeout=15_000
        )
    expect(alice.locator("#messages li.local")).to_have_count(0)
    on_server = [m["text"] for m in stored_on_server(server, room.id, "alice")]
    assert list(reversed(on_server)) == texts
    assert room.errors == []


def test_socket_cut_after_the_server_stored_a_send_shows_it_once(
    new_page: Callable[[], Page], server: Server, relay: Relay
) -> None:
    """The ack is lost with the socket: the client resends with the same client_id after the
    reconnect, the server answers `duplicate`, and the message shows once everywhere."""
    room = open_room(new_page, ("alice", "bob"), route=relay)
    alice, bob = room.pages

    relay.cut_after_send_ack = True
    text = f"cut mid-send {uuid.uuid4().hex[:6]}"
    type_and_enter(alice, text)
    for page in (alice, bob):
        expect(stored(page, text)).to_have_count(1)
    wait_live(alice)
    expect(alice.locator("#messages li.local")).to_have_count(0)

    until(alice, lambda: len(relay.acks) == 2)
    client_ids = {f["client_id"] for f in relay.sent if f["text"] == text}
    assert len(client_ids) == 1
    assert len([f for f in relay.sent if f["text"] == text]) == 2  # sent, resent
    assert [a["duplicate"] for a in relay.acks] == [False, True]
    assert relay.acks[0]["offset"] == relay.acks[1]["offset"]
    rows = [m for m in stored_on_server(server, room.id, "alice") if m["text"] == text]
    assert len(rows) == 1 and rows[0]["client_id"] in client_ids
    # Nothing turns up late.
    alice.evaluate("window.__townsquareClient.socket.close()")
    wait_live(alice)
    expect(stored(alice, text)).to_have_count(1)
    assert room.errors == []


def test_a_pending_message_survives_a_reload_and_is_sent_once(
    new_page: Callable[[], Page], server: Server, relay: Relay
) -> None:
    room = open_room(new_page, ("alice",), route=relay)
    (alice,) = room.pages
    relay.hold_sends = True  # the frames leave the page but never reach the server

    text = f"across a reload {uuid.uuid4().hex[:6]}"
    type_and_enter(alice, text)
    expect(local(alice, text, "pending")).to_have_count(1)
    saved = alice.evaluate("Object.values(sessionStorage).join()")
    assert text in saved

    alice.reload()
    wait_live(alice)
    # Shown again as pending, and written again on the new socket (still held).
    expect(local(alice, text, "pending")).to_have_count(1)
    expect(stored(alice, text)).to_have_count(0)
    until(alice, lambda: len(relay.sent) == 2)
    assert len({f["client_id"] for f in relay.sent if f["text"] == text}) == 1
    assert [f["text"] for f in relay.sent] == [text, text]

    relay.hold_sends = False
    relay.held.clear()  # these writes are lost; the next socket writes it again
    alice.evaluate("window.__townsquareClient.socket.close()")
    expect(stored(alice, text)).to_have_count(1)
    expect(alice.locator("#messages li.local")).to_have_count(0)
    assert [m["text"] for m in stored_on_server(server, room.id, "alice")].count(text) == 1
    assert alice.evaluate("Object.values(sessionStorage).join()").find(text) == -1
    assert room.errors == []


def test_a_refused_message_fails_with_retry_and_discard(
    new_page: Callable[[], Page], server: Server, relay: Relay
) -> None:
    """A final error (here `not_found`: the relay points the send at a room that does not
    exist) marks the message failed at once; Retry sends it again (now to the right room),
    once; Discard drops it for good."""
    room = open_room(new_page, ("alice",), route=relay)
    (alice,) = room.pages
    relay.send_to_room = 999_999_999
    type_and_enter(alice, "retried")
    type_and_enter(alice, "discarded")
    failed = alice.locator("#messages li.message.failed")
    expect(failed).to_have_count(2)
    expect(failed.first.locator(".status")).to_contain_text("Not sent · Retry · Discard")
    assert len(relay.sent) == 2  # failed at the first answer: not retried by itself

    relay.send_to_room = None
    failed.filter(has_text="retried").get_by_role("button", name="Retry").click()
    expect(stored(alice, "retried")).to_have_count(1)
    failed.filter(has_text="discarded").get_by_role("button", name="Discard").click()
    expect(alice.locator("#messages li.local")).to_have_count(0)
    # Discarded is gone for good: not restored by a reload, never sent.
    alice.reload()
    wait_live(alice)
    expect(stored(alice, "retried")).to_have_count(1)
    expect(alice.locator("#messages li.local")).to_have_count(0)
    texts = [m["text"] for m in stored_on_server(server, room.id, "alice")]
    assert texts == ["retried"]
    assert [f["text"] for f in relay.sent] == ["retried", "discarded", "retried"]
    assert room.errors == []


@pytest.mark.serial  # timer bounds within a second: run alone (./test)
def test_a_tab_coming_back_probes_its_socket(new_page: Callable[[], Page]) -> None:
    """A tab made visible again pings at once and gives up an open socket that does not
    answer within 5 s (instead of waiting for the 15 s of the ping timer)."""
    silent = {"on": False}

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        ws.on_message(lambda m: None if silent["on"] else server.send(m))
        server.on_message(lambda m: None if silent["on"] else ws.send(m))

    room = open_room(new_page, ("alice",), route=route)
    (alice,) = room.pages
    alice.evaluate(
        """() => {
            window.__states = [];
            window.__townsquareClient.onState((s) => window.__states.push([s, Date.now()]));
        }"""
    )
    silent["on"] = True
    # Frames already on their way could still arrive: start once a ping has gone unanswered
    # for a second (its pong would take milliseconds), well before the 10 s that end it.
    alice.wait_for_function(
        """() => {
            const since = window.__townsquareClient._unansweredSince;
            return since !== null && Date.now() - since > 1000;
        }""",
        timeout=8_000,
    )
    # Headless pages are always visible: the event alone is what the client reacts to.
    shown_at = alice.evaluate(
        "() => { document.dispatchEvent(new Event('visibilitychange')); return Date.now(); }"
    )
    alice.wait_for_function("() => window.__states.length > 0", timeout=8_000)
    state, left_at = alice.evaluate("window.__states[0]")
    assert state == "reconnecting"
    took = (left_at - shown_at) / 1000
    assert 4.5 < took < 6, took
    silent["on"] = False
    alice.evaluate("window.__townsquareClient.socket?.close()")
    wait_live(alice)


def test_retry_now_reconnects_at_once(new_page: Callable[[], Page]) -> None:
    room = open_room(new_page, ("alice",))
    (alice,) = room.pages
    badge = alice.locator("#connection-state")
    # A backoff of about a minute: the worst case, made certain.
    alice.evaluate(
        """() => {
            const client = window.__townsquareClient;
            client.baseDelay = client.maxDelay = 60000;
            Math.random = () => 0.999;
            client.socket.close();
        }"""
    )
    expect(badge).to_have_text(re.compile(r"^reconnecting in (59|60) s$"))
    expect(badge).to_have_text(re.compile(r"^reconnecting in 5[78] s$"), timeout=3_000)
    retry = alice.get_by_role("button", name="Retry now")
    expect(retry).to_be_visible()

    started = time.monotonic()
    retry.click()
    expect(badge).to_have_attribute("data-state", "open", timeout=2_000)
    took = time.monotonic() - started
    expect(badge).to_have_text("live")
    expect(retry).to_be_hidden()
    print(f"\nretry now: live {took:.2f} s after the click")


@pytest.mark.serial  # timer bounds within a second: run alone (./test)
def test_a_silent_socket_is_found_dead_within_15_s(new_page: Callable[[], Page]) -> None:
    """Frames stop both ways but the socket is not closed (a dead link): the client gives it
    up within 15 s of the last frame, and reconnects by itself."""
    silent = {"on": False}

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        ws.on_message(lambda m: None if silent["on"] else server.send(m))
        server.on_message(lambda m: None if silent["on"] else ws.send(m))

    room = open_room(new_page, ("alice",), route=route)
    (alice,) = room.pages
    # The next socket opens at once (through the same silent route), so the badge is off
    # "live" only for a moment: record the client's states in the page instead.
    alice.evaluate(
        """() => {
            window.__states = [];
            window.__townsquareClient.onState((s) => window.__states.push([s, Date.now()]));
        }"""
    )
    silent["on"] = True
    silent_at = alice.evaluate("Date.now()")
    alice.wait_for_function("() => window.__states.length > 0", timeout=16_000)
    state, left_at = alice.evaluate("window.__states[0]")
    assert state == "reconnecting"
    took = (left_at - silent_at) / 1000
    # A ping unanswered for 10 s, the first sent at most 5 s into the silence.
    assert 9.5 < took < 15.5, took
    silent["on"] = False
    alice.evaluate("window.__townsquareClient.socket?.close()")
    wait_live(alice)
    print(f"\nsilent socket: given up after {took:.2f} s")


@pytest.mark.serial  # timer bounds within a second: run alone (./test)
def test_a_server_back_is_reached_within_5_s(new_page: Callable[[], Page], server: Server) -> None:
    """The server is unreachable long enough for the backoff to reach its cap (the client is
    pointed at a room the server refuses at the handshake, 403); once it is reachable, the
    next attempt is at most 4 s away, and the socket live within 5 s."""
    room = open_room(new_page, ("alice",))
    (alice,) = room.pages
    alice.evaluate(
        """() => {
            const client = window.__townsquareClient;
            client.realUrl = client.url;
            client.url = client.url + "chat/room/999999999/";
            // Unreachable by the SSE fallback too (a 404 there).
            client.realSseUrl = client.sseUrl;
            client.sseUrl = client.sseUrl + "999999999/nowhere/";
            Math.random = () => 0.999;  // the longest delay every time
            client.socket.close();
        }"""
    )
    # Attempts at +0.5, +1, +2, +4 s: the next delay is the cap.
    alice.wait_for_function("() => window.__townsquareClient._attempt >= 5", timeout=15_000)
    started = time.monotonic()
    alice.evaluate(
        """() => {
            const client = window.__townsquareClient;
            client.url = client.realUrl;
            client.sseUrl = client.realSseUrl;
        }"""
    )
    expect(alice.locator("#connection-state")).to_have_attribute(
        "data-state", "open", timeout=6_000
    )
    took = time.monotonic() - started
    assert took < 5, took
    print(f"\nserver back: live {took:.2f} s after it was reachable (worst case)")
