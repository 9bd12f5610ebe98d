"""End to end in headless Chromium: two people chat live, safely, across a dropped socket."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import (
    Dialog,
    Error,
    Page,
    WebSocketRoute,
    expect,
)

from tests.browser import log_in, wait_live
from tests.conftest import token_for
from tests.server import Server

pytestmark = pytest.mark.browser

XSS = "<img src=x onerror=alert(1)>"
# Long enough for a few reconnect backoff steps (full jitter, base 0.5 s).
RECONNECT_TIMEOUT_MS = 15_000


def room_href(page: Page, name: str) -> str:
    """The link to a room on the room list (the page must show the list)."""
    href = page.locator("ul.rooms a", has_text=re.compile(f"^{name}$")).get_attribute("href")
    assert href and re.fullmatch(r"/chat/room/\d+/", href), href
    return href


def open_new_room(page: Page, name: str) -> None:
    """Seed 003's flow: type a new room's name on the room list (chat/static/chat/rooms.js
    sends the browser to ``/chat/<name>/``), confirm once, end in the room."""
    page.goto("/")
    page.fill("#room-name", name)
    page.get_by_role("button", name="Open").click()
    expect(page).to_have_url(re.compile(f"/chat/{name}/$"))
    expect(page.locator("h1")).to_have_text(f"Room {name} does not exist yet")
    page.get_by_role("button", name=f"Create room {name}").click()
    expect(page.locator("h1")).to_have_text(name)
    expect(page).to_have_url(re.compile(f"/chat/{name}/$"))


def send(page: Page, text: str) -> None:
    page.fill("#composer-text", text)
    page.get_by_role("button", name="Send").click()
    # Cleared on Enter (the message waits in the outbox until acked).
    expect(page.locator("#composer-text")).to_have_value("")


def test_two_people_chat_live(new_page: Callable[[], Page]) -> None:
    alice, bob, carol = new_page(), new_page(), new_page()
    dialogs: list[str] = []
    errors: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    def on_page_error(error: Error) -> None:
        errors.append(str(error))

    for page in (alice, bob):
        page.on("dialog", on_dialog)
        page.on("pageerror", on_page_error)

    log_in(alice, "alice")
    log_in(bob, "bob")
    lobby = room_href(alice, "lobby")
    staff = room_href(alice, "staff")
    for page in (alice, bob):
        page.goto(lobby)
        expect(page.locator("h1")).to_have_text("lobby")
        wait_live(page)

    tag = uuid.uuid4().hex[:8]
    bob_messages = bob.locator("#messages li.message")
    alice_messages = alice.locator("#messages li.message")

    send(alice, f"hello bob {tag}")
    expect(bob_messages.last).to_contain_text(f"hello bob {tag}")
    expect(bob_messages.last.locator(".author")).to_have_text("alice")

    send(bob, f"hi alice {tag}")
    expect(alice_messages.last).to_contain_text(f"hi alice {tag}")
    expect(alice_messages.last.locator(".author")).to_have_text("bob")

    send(alice, XSS)
    expect(bob_messages.last.locator(".text")).to_have_text(XSS)
    expect(alice_messages.last.locator(".text")).to_have_text(XSS)
    expect(bob.locator("#messages img")).to_have_count(0)
    expect(alice.locator("#messages img")).to_have_count(0)

    # The history rendered by the server is escaped too.
    bob.reload()
    wait_live(bob)
    expect(bob_messages.last.locator(".text")).to_have_text(XSS)
    expect(bob.locator("#messages img")).to_have_count(0)
    assert bob.locator("#messages li.message", has_text=f"hello bob {tag}").count() == 1

    assert dialogs == []
    assert errors == []

    # A private room is closed to non-members: the unknown room's 404, nothing of it shown.
    log_in(carol, "carol")
    response = carol.goto(staff)
    assert response is not None and response.status == 404
    assert "alice" not in carol.content()


def test_reconnect_recovers_missed_messages_exactly_once(
    new_page: Callable[[], Page], server: Server
) -> None:
    bob = new_page()
    # Every socket of bob's page goes through here, so the test can hold him offline.
    offline = {"on": False}

    def route(ws: WebSocketRoute) -> None:
        if offline["on"]:
            ws.close(code=1013, reason="try again later")
        else:
            ws.connect_to_server()

    bob.route_web_socket(re.compile(r"/ws/$"), route)
    log_in(bob, "bob")
    room_name = f"reconnect-{uuid.uuid4().hex[:8]}"
    open_new_room(bob, room_name)
    wait_live(bob)
    room_id = int(bob.locator("#room-id").text_content() or "")

    api = httpx.Client(
        base_url=server.http, headers={"Authorization": f"Bearer {token_for(server, 'alice')}"}
    )

    def alice_says(text: str) -> None:
        response = api.post(f"/api/rooms/{room_id}/messages/", json={"text": text})
        assert response.status_code == 201, response.text

    with api:
        alice_says("before the drop")
        expect(bob.locator("#messages li.message")).to_have_count(1)

        # Membership changes arrive live too.
        assert api.post(f"/api/rooms/{room_id}/join/").status_code == 200
        expect(bob.locator("#members li", has_text="alice")).to_have_count(1)

        # Drop the socket and keep bob offline while alice writes.
        offline["on"] = True
        bob.evaluate("window.__townsquareClient.socket.close()")
        expect(bob.locator("#connection-state")).to_have_attribute("data-state", "reconnecting")
        missed = ["while away 1", "while away 2", "while away 3"]
        for text in missed:
            alice_says(text)
        assert api.post(f"/api/rooms/{room_id}/leave/").status_code == 200
        expect(bob.locator("#messages li.message")).to_have_count(1)

        # Back online: the client resubscribes with `since` and the server replays the gap.
        # Its next attempt may be a few backoff steps away (random, up to 0.5 s × 2^n).
        offline["on"] = False
        for text in missed:
            expect(bob.locator("#messages li.message", has_text=text)).to_have_count(
                1, timeout=RECONNECT_TIMEOUT_MS
            )
        wait_live(bob)
        # The member snapshot on resubscribe shows alice has left.
        expect(bob.locator("#members li", has_text="alice")).to_have_count(0)

        alice_says("after the return")
        expect(bob.locator("#messages li.message").last).to_contain_text("after the return")

    # Every message exactly once, in order.
    texts = bob.locator("#messages li.message .text").all_text_contents()
    assert texts == ["before the drop", *missed, "after the return"]
    offsets = [
        int(o)
        for o in bob.eval_on_selector_all(
            "#messages li.message", "els => els.map(e => e.dataset.offset)"
        )
    ]
    assert offsets == sorted(set(offsets))


def test_a_new_room_name_takes_one_confirm_click(new_page: Callable[[], Page]) -> None:
    carol, dave = new_page(), new_page()
    log_in(carol, "carol")
    name = f"new-{uuid.uuid4().hex[:8]}"
    open_new_room(carol, name)
    wait_live(carol)
    send(carol, "first in the new room")
    # The next visitor who types that name is in the room at once: nothing to confirm.
    log_in(dave, "dave")
    dave.fill("#room-name", name)
    dave.get_by_role("button", name="Open").click()
    expect(dave.locator("h1")).to_have_text(name)
    expect(dave.locator("#messages li.message .text")).to_have_text(["first in the new room"])
