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


def hold_offline(page: Page) -> dict[str, bool]:
    """Route every socket of ``page`` through a switch: while ``switch["on"]`` is true, new
    sockets are refused (1013), so the test can hold the page offline."""
    switch = {"on": False}

    def route(ws: WebSocketRoute) -> None:
        if switch["on"]:
            ws.close(code=1013, reason="try again later")
        else:
            ws.connect_to_server()

    page.route_web_socket(re.compile(r"/ws/$"), route)
    return switch


def test_reconnect_recovers_missed_messages_exactly_once(
    new_page: Callable[[], Page], server: Server
) -> None:
    bob = new_page()
    offline = hold_offline(bob)
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


def _api(server: Server, username: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.http,
        headers={"Authorization": f"Bearer {token_for(server, username)}"},
    )


def _message(page: Page, text: str):
    """The stored message item whose text is exactly ``text``."""
    return page.locator("#messages li.message:not(.local)").filter(
        has=page.locator(".text", has_text=re.compile(f"^{re.escape(text)}$"))
    )


def test_edit_delete_and_react_live_and_after_a_reload(
    new_page: Callable[[], Page], server: Server
) -> None:
    alice, bob = new_page(), new_page()
    errors: list[str] = []
    for page in (alice, bob):
        page.on("pageerror", lambda error: errors.append(str(error)))
    log_in(alice, "alice")
    log_in(bob, "bob")
    open_new_room(alice, f"changes-{uuid.uuid4().hex[:8]}")
    bob.goto(alice.url)
    for page in (alice, bob):
        wait_live(page)
    send(bob, "teh typo")
    send(bob, "delete me")
    send(alice, "alice's own")
    expect(alice.locator("#messages li.message:not(.local)")).to_have_count(3)

    # Edit: Escape cancels, Enter saves; both pages show the new text and "(edited)".
    mine = _message(bob, "teh typo")
    mine.hover()
    mine.get_by_role("button", name="Edit").click()
    editor = bob.get_by_role("textbox", name="Edit message")
    editor.fill("never saved")
    editor.press("Escape")
    expect(editor).to_have_count(0)
    expect(mine.locator(".text")).to_have_text("teh typo")
    mine.get_by_role("button", name="Edit").click()
    editor.fill("the typo, fixed")
    editor.press("Enter")
    for page in (alice, bob):
        fixed = _message(page, "the typo, fixed")
        expect(fixed).to_have_count(1)
        expect(fixed.locator(".edited")).to_have_text("(edited)")
    # Only one's own messages are editable; bob cannot delete alice's, alice (staff) can his.
    expect(_message(bob, "alice's own").get_by_role("button", name="Edit")).to_have_count(0)
    expect(_message(bob, "alice's own").get_by_role("button", name="Delete")).to_have_count(0)
    expect(_message(alice, "delete me").get_by_role("button", name="Delete")).to_have_count(1)

    # React: alice picks 👍 on bob's message; bob adds his; alice takes hers back.
    target = _message(alice, "the typo, fixed")
    target.hover()
    target.get_by_role("button", name="Add a reaction").click()
    alice.get_by_role("button", name="React with 👍").click()
    bob_chip = _message(bob, "the typo, fixed").locator("button.reaction")
    expect(bob_chip).to_have_text("👍 1")
    expect(bob_chip).to_have_attribute("aria-pressed", "false")
    alice_chip = target.locator("button.reaction")
    expect(alice_chip).to_have_attribute("aria-pressed", "true")  # mine: highlighted
    bob_chip.click()
    expect(alice_chip).to_have_text("👍 2")
    expect(bob_chip).to_have_attribute("aria-pressed", "true")
    alice_chip.click()
    expect(bob_chip).to_have_text("👍 1")
    expect(alice_chip).to_have_attribute("aria-pressed", "false")

    # Delete asks first; then a tombstone everywhere, with no buttons left.
    questions: list[str] = []

    def accept(dialog: Dialog) -> None:
        questions.append(dialog.message)
        dialog.accept()

    bob.once("dialog", accept)
    gone = _message(bob, "delete me")
    gone.hover()
    gone.get_by_role("button", name="Delete").click()
    for page in (alice, bob):
        tomb = page.locator("#messages li.message.deleted")
        expect(tomb).to_have_count(1)
        expect(tomb.locator(".text")).to_have_text("message deleted")
        expect(tomb.get_by_role("button")).to_have_count(0)
        expect(page.locator("#messages", has_text="delete me")).to_have_count(0)
    assert questions and questions[0].startswith("Delete this message?")

    # After a reload the page shows the same state, rendered by the server.
    alice.reload()
    wait_live(alice)
    expect(alice.locator("#messages li.message .text")).to_have_text(
        ["the typo, fixed", "message deleted", "alice's own"]
    )
    expect(_message(alice, "the typo, fixed").locator(".edited")).to_have_text("(edited)")
    chip = _message(alice, "the typo, fixed").locator("button.reaction")
    expect(chip).to_have_text("👍 1")
    expect(chip).to_have_attribute("aria-pressed", "false")
    assert errors == []


def test_room_list_unread_counts_live_cleared_by_reading_elsewhere(
    new_page: Callable[[], Page], server: Server
) -> None:
    with _api(server, "alice") as alice:
        name = f"unread-{uuid.uuid4().hex[:8]}"
        response = alice.post("/api/rooms/", json={"name": name})
        assert response.status_code == 201, response.text
        room = int(response.json()["id"])
        with _api(server, "bob") as bob_api:
            assert bob_api.post(f"/api/rooms/{room}/join/").status_code == 200
        alice.post(f"/api/rooms/{room}/messages/", json={"text": "read before"})

        # Bob reads the room once, then keeps the room list open.
        reader, rooms = new_page(), new_page()
        log_in(reader, "bob")
        reader.goto(f"/chat/room/{room}/")
        wait_live(reader)
        expect(reader.locator("#messages li.message")).to_have_count(1)
        with _api(server, "bob") as bob_api:
            # The page sends its read cursor once the bottom is in view.
            for _ in range(100):
                listed = bob_api.get("/api/rooms/", params={"page_size": 500}).json()
                if next(r["unread"] for r in listed if r["id"] == room) == 0:
                    break
                reader.wait_for_timeout(50)
            else:
                raise AssertionError("the room page did not mark the room read")
        log_in(rooms, "bob")
        reader.goto("/")
        item = rooms.locator("#your-rooms li", has=rooms.locator("a", has_text=name))
        wait_live(rooms)
        expect(item.locator(".unread-count")).to_be_hidden()
        expect(item.locator(".preview")).to_contain_text("alice: read before")

        # Two new messages: counted live, with the newest as the preview, in the tab title.
        for text in ("new one", "new two"):
            response = alice.post(f"/api/rooms/{room}/messages/", json={"text": text})
            assert response.status_code == 201
        expect(item.locator(".unread-count")).to_have_text("2 unread")
        expect(item.locator(".preview")).to_contain_text("alice: new two")
        expect(rooms).to_have_title(re.compile(r"^\(2\) "))

        # Bob opens the room on another page: it starts at the first unread message, under
        # a "New messages" line; reading it there clears the count here.
        reader.goto(f"/chat/room/{room}/")
        wait_live(reader)
        divider = reader.locator("#unread-divider")
        expect(divider).to_have_text("New messages")
        following = divider.locator("xpath=following-sibling::li[contains(@class,'message')][1]")
        expect(following.locator(".text")).to_have_text("new one")
        expect(divider).to_be_in_viewport()
        expect(item.locator(".unread-count")).to_be_hidden()
        expect(rooms).not_to_have_title(re.compile(r"^\("))


def test_changes_missed_while_offline_are_replayed_in_order(
    new_page: Callable[[], Page], server: Server
) -> None:
    bob = new_page()
    offline = hold_offline(bob)
    log_in(bob, "bob")
    open_new_room(bob, f"replay-{uuid.uuid4().hex[:8]}")
    wait_live(bob)
    room = int(bob.locator("#room-id").text_content() or "")
    with _api(server, "alice") as alice:
        base = f"/api/rooms/{room}/messages/"
        ids = [alice.post(base, json={"text": t}).json()["id"] for t in ("one", "two", "three")]
        expect(bob.locator("#messages li.message")).to_have_count(3)

        offline["on"] = True
        bob.evaluate("window.__townsquareClient.socket.close()")
        expect(bob.locator("#connection-state")).to_have_attribute("data-state", "reconnecting")
        # Edited twice, reacted to, one deleted after an edit: the last state must win.
        assert alice.patch(f"{base}{ids[0]}/", json={"text": "one, v2"}).status_code == 200
        assert alice.patch(f"{base}{ids[0]}/", json={"text": "one, v3"}).status_code == 200
        for emoji in ("🎉", "👍"):
            response = alice.post(f"{base}{ids[0]}/reactions/", json={"emoji": emoji, "on": True})
            assert response.status_code == 200, response.text
        assert alice.patch(f"{base}{ids[1]}/", json={"text": "two, edited"}).status_code == 200
        assert alice.delete(f"{base}{ids[1]}/").status_code == 204
        offline["on"] = False

    expect(bob.locator("#messages li.message .text")).to_have_text(
        ["one, v3", "message deleted", "three"], timeout=RECONNECT_TIMEOUT_MS
    )
    first = bob.locator("#messages li.message").first
    expect(first.locator(".edited")).to_have_text("(edited)")
    expect(first.locator("button.reaction")).to_have_text(["🎉 1", "👍 1"])
    expect(bob.locator("#messages li.message.deleted .edited")).to_have_count(0)
