"""End to end in headless Chromium, across two worker processes sharing PostgreSQL and Redis:
who is online in a room, who is typing, and live stock, each seen on the other worker."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Error, Page, expect

from tests.browser import log_in, wait_live
from tests.conftest import token_for
from tests.pg import scratch_postgres, scratch_redis
from tests.server import Server, run_server

pytestmark = pytest.mark.browser

ITEM = "Moka pot"
# Presence entries of a vanished worker expire after this; a normal close is announced at once.
PRESENCE_TTL_SECONDS = 3
ONLINE = re.compile(r"\bonline\b")


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """Two ``manage.py serve`` processes on one scratch database and one Redis prefix.

    Both use the same work directory, so backend B serves the static files A collected.
    """
    with scratch_postgres() as database_url, scratch_redis() as (redis_url, prefix):

        def serve(*, prepare: bool) -> AbstractContextManager[Server]:
            return run_server(
                tmp_path,
                prepare=prepare,
                DATABASE_URL=database_url,
                REDIS_URL=redis_url,
                REDIS_PREFIX=prefix,
                RT_PRESENCE_TTL_SECONDS=str(PRESENCE_TTL_SECONDS),
            )

        with serve(prepare=True) as a, serve(prepare=False) as b:
            yield a, b


def watch_for_errors(page: Page, errors: list[str]) -> None:
    """Collect uncaught exceptions and console errors (CSP violations are reported there)."""

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"{page.url}: {message.text}")

    def on_page_error(error: Error) -> None:
        errors.append(f"{page.url}: {error}")

    page.on("console", on_console)
    page.on("pageerror", on_page_error)


def open_room(page: Page, name: str) -> int:
    """From the room list, open the room called ``name``; return its id once live."""
    page.locator("ul.rooms a", has_text=re.compile(f"^{name}$")).click()
    expect(page.locator("h1")).to_have_text(name)
    wait_live(page)
    return int(json.loads(page.locator("#room-id").text_content() or ""))


def test_presence_typing_and_stock_across_two_workers(
    browser: Browser, backends: tuple[Server, Server]
) -> None:
    a, b = backends
    errors: list[str] = []
    contexts: list[BrowserContext] = []

    def page_on(server: Server) -> Page:
        context = browser.new_context(base_url=server.http)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        watch_for_errors(page, errors)
        return page

    try:
        alice, bob = page_on(a), page_on(b)
        log_in(alice, "alice")
        log_in(bob, "bob")
        room_id = open_room(alice, "lobby")
        assert open_room(bob, "lobby") == room_id

        # Each sees the other online, and themselves; nobody has joined the lobby yet, so
        # both are listed as online visitors.
        for page, me, other in ((alice, "alice", "bob"), (bob, "bob", "alice")):
            expect(page.locator("#members li.online", has_text=other)).to_have_count(1)
            expect(page.locator("#members li.online.me", has_text=me)).to_have_count(1)
            expect(page.locator("#online-count")).to_have_text("· 2 online")

        # bob joins the room (API on his backend): alice sees a member, still online.
        bob_api = httpx.Client(
            base_url=b.http, headers={"Authorization": f"Bearer {token_for(b, 'bob')}"}
        )
        with bob_api:
            assert bob_api.post(f"/api/rooms/{room_id}/join/").status_code == 200
            bob_row = alice.locator("#members li", has_text="bob")
            expect(bob_row).to_have_class(re.compile(r"\bmember\b.*\bonline\b"))
            expect(alice.locator("#member-count")).to_have_text("1")

            # bob types: alice sees it; bob never sees himself typing.
            bob.locator("#composer-text").press_sequentially("hi ali")
            expect(alice.locator("#typing")).to_have_text("bob is typing…")
            expect(bob.locator("#typing")).to_have_text("")

            # bob sends: alice gets the message and, in the same update, the line clears
            # (well before the 4 s a typing hint lasts).
            bob.locator("#composer-text").fill("hi alice, from the other worker")
            bob.get_by_role("button", name="Send").click()
            expect(bob.locator("#composer-text")).to_have_value("")
            last = alice.locator("#messages li.message").last
            expect(last).to_contain_text("hi alice, from the other worker")
            expect(last.locator(".author")).to_have_text("bob")
            assert alice.locator("#typing").text_content() == ""

            # Stock: alice watches the shop on backend A while bob buys on backend B.
            shop = alice.context.new_page()
            watch_for_errors(shop, errors)
            shop.goto("/shop/")
            card = shop.locator(
                "#items li.item", has=shop.get_by_role("link", name=ITEM, exact=True)
            )
            item_id = int(card.get_attribute("data-item-id") or "")
            quantity = card.locator(".quantity")
            start = int(quantity.text_content() or "")
            wait_live(shop)
            bought = bob_api.post(f"/api/items/{item_id}/purchase/", json={"quantity": 1})
            assert bought.status_code == 201, bought.text
            assert bought.json()["remaining"] == start - 1
            expect(quantity).to_have_text(str(start - 1))

        # bob closes his page: alice sees him offline, still listed as a member.
        bob.close()
        expect(bob_row).not_to_have_class(ONLINE, timeout=(PRESENCE_TTL_SECONDS + 2) * 1000)
        expect(bob_row).to_have_count(1)
        expect(alice.locator("#online-count")).to_have_text("· 1 online")
        expect(alice.locator("#members li.online", has_text="alice")).to_have_count(1)

        assert errors == []
    finally:
        for context in contexts:
            context.close()
