"""The room page's message list and composer in headless Chromium: older messages load as one
scrolls up without moving the view, "Jump to latest" counts what arrived meanwhile, one
author's consecutive messages are grouped, days are separated, Enter sends and Shift+Enter
breaks the line, and typing is signalled again at the first keystroke after a send.

Rooms and messages are made through the HTTP API (one server and one browser for the module);
message times are moved back through ``manage.py shell`` for the day separators."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import log_in, wait_live
from tests.conftest import token_for
from tests.server import Server

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[Callable[[str], httpx.Client]]:
    """``api(username)``: an HTTP client signed in as that user (bearer token)."""
    clients: dict[str, httpx.Client] = {}

    def client(username: str) -> httpx.Client:
        if username not in clients:
            clients[username] = httpx.Client(
                base_url=server.http,
                headers={"Authorization": f"Bearer {token_for(server, username)}"},
            )
        return clients[username]

    yield client
    for c in clients.values():
        c.close()


def new_room(api: httpx.Client, prefix: str) -> int:
    response = api.post("/api/rooms/", json={"name": f"{prefix}-{uuid.uuid4().hex[:8]}"})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def say(api: httpx.Client, room: int, text: str) -> dict[str, object]:
    response = api.post(f"/api/rooms/{room}/messages/", json={"text": text})
    assert response.status_code == 201, response.text
    return dict(response.json())


def open_room(page: Page, room: int) -> None:
    page.goto(f"/chat/room/{room}/")
    wait_live(page)


def texts(page: Page) -> list[str]:
    return page.locator("#messages li.message:not(.local) .text").all_text_contents()


def offsets(page: Page) -> list[int]:
    return [
        int(o)
        for o in page.eval_on_selector_all(
            "#messages li.message:not(.local)", "els => els.map(e => e.dataset.offset)"
        )
    ]


def top_of(page: Page, text: str) -> float:
    """Where the message with exactly this text is, in px from the top of the pane's view."""
    return float(
        page.evaluate(
            """(text) => {
                const pane = document.getElementById("messages");
                const li = [...pane.querySelectorAll("li.message")]
                    .find((el) => el.querySelector(".text").textContent === text);
                return li.getBoundingClientRect().top - pane.getBoundingClientRect().top;
            }""",
            text,
        )
    )


def scroll_to_top(page: Page, text: str) -> float:
    """Scroll the pane to its top; return ``top_of(text)`` measured at once, before the
    older messages this starts loading can arrive."""
    page.evaluate("document.getElementById('messages').scrollTop = 0")
    return top_of(page, text)


def test_scrolling_up_loads_older_messages_in_order_without_moving_the_view(
    new_page: Callable[[], Page], api: Callable[[str], httpx.Client]
) -> None:
    alice = api("alice")
    room = new_room(alice, "history")
    sent = [f"m{n:03d}" for n in range(1, 131)]
    for text in sent:
        say(alice, room, text)
    page = new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    log_in(page, "alice")
    open_room(page, room)

    # The page opens at the bottom with the newest 50.
    messages = page.locator("#messages li.message")
    expect(messages).to_have_count(50)
    assert texts(page) == sent[-50:]
    expect(page.locator("#jump-latest")).to_be_hidden()
    expect(page.locator("#history-start")).to_be_hidden()

    # To the top: the next 50 older ones come above, and m081 stays where it was on screen.
    before = scroll_to_top(page, "m081")
    expect(messages).to_have_count(100)
    assert abs(top_of(page, "m081") - before) <= 1
    assert texts(page) == sent[-100:]
    # Away from the bottom: the way back is offered.
    expect(page.locator("#jump-latest")).to_be_visible()

    # Again: the last 30, then the start of the room.
    before = scroll_to_top(page, "m031")
    expect(messages).to_have_count(130)
    assert abs(top_of(page, "m031") - before) <= 1
    expect(page.locator("#history-start")).to_have_text("This is the start of the room.")
    expect(page.locator("#load-older")).to_be_hidden()

    # All of them, once each, in order.
    assert texts(page) == sent
    shown = offsets(page)
    assert shown == sorted(set(shown))
    assert errors == []


def test_jump_to_latest_counts_new_messages_and_leaves_the_view_alone(
    new_page: Callable[[], Page], api: Callable[[str], httpx.Client]
) -> None:
    alice, bob = api("alice"), api("bob")
    room = new_room(alice, "jump")
    for n in range(40):
        say(alice, room, f"filler {n}")
    page = new_page()
    log_in(page, "alice")
    open_room(page, room)
    jump = page.locator("#jump-latest")
    expect(jump).to_be_hidden()

    page.evaluate("document.getElementById('messages').scrollTop = 200")
    expect(jump).to_be_visible()
    expect(jump).to_have_text("Jump to latest")  # nothing new yet
    anchor = top_of(page, "filler 10")
    say(bob, room, "news 1")
    say(bob, room, "news 2")
    expect(page.locator("#messages li.message").last).to_contain_text("news 2")
    expect(jump).to_have_text("Jump to latest 2 new")
    assert abs(top_of(page, "filler 10") - anchor) <= 1  # the reader was not moved

    jump.click()
    expect(jump).to_be_hidden()
    at_bottom = page.evaluate(
        "(() => { const s = document.getElementById('messages');"
        " return s.scrollHeight - s.scrollTop - s.clientHeight < 2; })()"
    )
    assert at_bottom
    # At the bottom, a new message is followed and not counted.
    say(bob, room, "news 3")
    expect(page.locator("#messages li.message").last).to_contain_text("news 3")
    expect(jump).to_be_hidden()


def test_grouping_and_day_separators(
    new_page: Callable[[], Page], api: Callable[[str], httpx.Client], server: Server
) -> None:
    alice, bob = api("alice"), api("bob")
    room = new_room(alice, "days")
    # (author, text, local day relative to today, local time "HH:MM")
    plan = [
        (bob, "two days ago", -2, "09:00"),
        (bob, "still two days ago", -2, "09:02"),
        (alice, "yesterday morning", -1, "08:00"),
        (alice, "yesterday, a minute later", -1, "08:01"),
        (alice, "yesterday, an hour later", -1, "09:01"),
        (bob, "today", 0, "00:05"),
        (alice, "alice today", 0, "00:06"),
        (alice, "alice again", 0, "00:07"),
    ]
    ids = [int(str(say(client, room, text)["id"])) for client, text, _, _ in plan]

    page = new_page()
    log_in(page, "alice")
    # The browser's local times for the plan, as UTC instants the database can store.
    instants = page.evaluate(
        """(plan) => plan.map(([days, hm]) => {
            const now = new Date();
            const [h, m] = hm.split(":").map(Number);
            return new Date(now.getFullYear(), now.getMonth(), now.getDate() + days, h, m)
                .toISOString();
        })""",
        [[days, hm] for _, _, days, hm in plan],
    )
    moves = json.dumps(dict(zip(ids, instants, strict=True)))
    server.manage(
        "shell",
        "-c",
        "import json; from datetime import datetime; from chat.models import Message\n"
        f"for pk, at in json.loads({moves!r}).items():\n"
        "    Message.objects.filter(pk=int(pk)).update("
        "created_at=datetime.fromisoformat(at.replace('Z', '+00:00')))",
    )
    open_room(page, room)

    two_days_ago = page.evaluate(
        """() => { const n = new Date();
            return new Intl.DateTimeFormat(undefined,
                {weekday: "long", year: "numeric", month: "long", day: "numeric"})
              .format(new Date(n.getFullYear(), n.getMonth(), n.getDate() - 2, 12)); }"""
    )
    items = page.locator("#message-list > li")
    # What one sees, top to bottom: a line per day, names only where the author changes or
    # a message comes more than 5 minutes after the one before.
    seen = items.evaluate_all(
        """(els) => els.map((el) => {
            if (!el.classList.contains("message")) return "--- " + el.textContent + " ---";
            const author = el.querySelector(".author");
            const named = author.getBoundingClientRect().width > 1;
            const text = el.querySelector(".text").textContent;
            return (named ? author.textContent + ": " : "  ") + text;
        })"""
    )
    assert seen == [
        f"--- {two_days_ago} ---",
        "--- New messages ---",  # alice has read none of bob's
        "bob: two days ago",
        "  still two days ago",
        "--- Yesterday ---",
        "alice: yesterday morning",
        "  yesterday, a minute later",
        "alice: yesterday, an hour later",
        "--- Today ---",
        "bob: today",
        "alice: alice today",
        "  alice again",
    ]
    # The times are local, in the browser's own format, with the full date as a tooltip.
    first_time = page.locator("#message-list li.message time").first
    expected = page.evaluate(
        """(iso) => new Intl.DateTimeFormat(undefined, {hour: "numeric", minute: "2-digit"})
            .format(new Date(iso))""",
        instants[0],
    )
    expect(first_time).to_have_text(expected)
    expect(first_time).to_have_attribute("title", re.compile(two_days_ago.split(",")[0]))


def test_enter_sends_shift_enter_breaks_the_line_and_typing_restarts_after_a_send(
    new_page: Callable[[], Page], api: Callable[[str], httpx.Client]
) -> None:
    room = new_room(api("alice"), "composer")
    alice, bob = new_page(), new_page()
    log_in(alice, "alice")
    log_in(bob, "bob")
    frames: list[dict[str, object]] = []
    bob.on(
        "websocket",
        lambda ws: ws.on("framesent", lambda payload: frames.append(json.loads(payload))),
    )
    open_room(alice, room)
    open_room(bob, room)
    box = bob.locator("#composer-text")

    one_line = box.evaluate("el => el.offsetHeight")
    box.press_sequentially("line one")
    box.press("Shift+Enter")
    box.press_sequentially("line two")
    expect(box).to_have_value("line one\nline two")
    assert box.evaluate("el => el.offsetHeight") > one_line  # it grew
    expect(alice.locator("#typing")).to_have_text("bob is typing…")
    box.press("Enter")
    expect(box).to_have_value("")
    expect(alice.locator("#messages li.message .text")).to_have_text(["line one\nline two"])
    assert box.evaluate("el => el.offsetHeight") == one_line  # back to one line
    # Their message is here: they are no longer shown typing.
    expect(alice.locator("#typing")).to_have_text("")

    # The first keystroke after the send says "typing" again, straight away.
    sends = [i for i, f in enumerate(frames) if f.get("type") == "chat.send"]
    box.press("h")

    def typing_after_send() -> bool:
        return any(f.get("type") == "typing" for f in frames[sends[-1] + 1 :])

    for _ in range(40):  # frame events reach the test while it calls Playwright
        if typing_after_send():
            break
        bob.wait_for_timeout(50)
    assert typing_after_send(), [f.get("type") for f in frames]
    expect(alice.locator("#typing")).to_have_text("bob is typing…", timeout=4_000)

    # A long message: the box stops growing at its cap and scrolls.
    box.fill("\n".join(f"row {n}" for n in range(30)))
    box.dispatch_event("input")
    height, scroll, client = box.evaluate(
        "el => [el.offsetHeight, el.scrollHeight, el.clientHeight]"
    )
    assert height <= 170 and scroll > client


def test_phone_width_fits_and_members_open_as_a_drawer(
    browser: Browser, server: Server, api: Callable[[str], httpx.Client]
) -> None:
    room = new_room(api("alice"), "phone")
    assert api("alice").post(f"/api/rooms/{room}/join/").status_code == 200
    say(api("alice"), room, "a long line " + "without-any-break-" * 12)
    context = browser.new_context(base_url=server.http, viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        log_in(page, "alice")
        open_room(page, room)
        # Nothing wider than the screen: no sideways scrolling.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        members = page.get_by_role("complementary", name=re.compile("^Members"))
        expect(members).to_be_hidden()
        opener = page.get_by_role("button", name=re.compile("^Members"))
        expect(opener).to_have_attribute("aria-expanded", "false")

        opener.click()
        expect(members).to_be_visible()
        expect(members.locator("#members li", has_text="alice")).to_have_count(1)
        expect(opener).to_have_attribute("aria-expanded", "true")
        close = page.get_by_role("button", name="Close the member list")
        expect(close).to_be_focused()
        page.keyboard.press("Escape")
        expect(members).to_be_hidden()
        expect(opener).to_be_focused()

        opener.click()
        close.click()
        expect(members).to_be_hidden()
        expect(opener).to_be_focused()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        # The room list too, with its previews.
        page.goto("/")
        expect(page.locator("#your-rooms .preview").first).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()
