"""End to end in headless Chromium: live stock on the shop pages, the bell, toasts, the inbox."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import (
    ConsoleMessage,
    Error,
    Page,
    expect,
)

from tests.browser import log_in, wait_live
from tests.conftest import token_for
from tests.server import Server

pytestmark = pytest.mark.browser

ITEM = "Moka pot"  # alice and bob watch it in the demo data
BOUGHT = 3  # units this test buys in all: 2 on the item page, then 1 more


def unread_count(page: Page) -> int:
    """The bell's count, once the inbox snapshot has set it."""
    bell = page.locator("#bell-count")
    expect(bell).to_have_attribute("data-count", re.compile(r"^\d+$"))
    return int(bell.get_attribute("data-count") or "")


def ensure_stock(server: Server, name: str, at_least: int) -> None:
    """Top the item up (alice is staff) when earlier tests left too few to buy."""
    items = httpx.get(f"{server.http}/api/items/").json()
    item = next(i for i in items if i["name"] == name)
    if item["quantity"] < at_least:
        response = httpx.patch(
            f"{server.http}/api/items/{item['id']}/",
            json={"quantity": 10},
            headers={"Authorization": f"Bearer {token_for(server, 'alice')}"},
        )
        assert response.status_code == 200, response.text


def watch_for_errors(page: Page, errors: list[str]) -> None:
    """Collect uncaught exceptions and console errors (CSP violations are reported there).

    Chromium logs every failed response too; the 409 of an oversized purchase is expected.
    """

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and "status of 409" not in message.text:
            errors.append(message.text)

    def on_page_error(error: Error) -> None:
        errors.append(str(error))

    page.on("console", on_console)
    page.on("pageerror", on_page_error)


def test_stock_bell_toast_and_inbox_live(new_page: Callable[[], Page], server: Server) -> None:
    ensure_stock(server, ITEM, BOUGHT)
    alice, bob = new_page(), new_page()
    errors: list[str] = []
    for page in (alice, bob):
        watch_for_errors(page, errors)
    log_in(alice, "alice")
    log_in(bob, "bob")

    # bob looks at the shop list.
    bob.goto("/shop/")
    card = bob.locator("#items li.item", has=bob.get_by_role("link", name=ITEM, exact=True))
    item_id = int(card.get_attribute("data-item-id") or "")
    bob_quantity = card.locator(".quantity")
    start = int(bob_quantity.text_content() or "")
    assert start >= BOUGHT
    wait_live(bob)
    bob_unread = unread_count(bob)
    bob.evaluate("window.__notReloaded = true")

    # alice buys 2 on the item page.
    alice.goto(f"/shop/item/{item_id}/")
    expect(alice.locator("h1")).to_have_text(ITEM)
    alice_quantity = alice.locator("#quantity")
    expect(alice_quantity).to_have_text(str(start))
    wait_live(alice)
    alice_unread = unread_count(alice)
    alice.fill("#buy-quantity", "2")
    alice.get_by_role("button", name="Buy", exact=True).click()
    expect(alice.locator("#buy-result")).to_have_text("Bought 2.")
    expect(alice.locator("#watch")).to_have_text("Watching")

    # Both pages show the new stock live; bob, a watcher, gets a notification and a toast.
    expect(bob_quantity).to_have_text(str(start - 2))
    expect(alice_quantity).to_have_text(str(start - 2))
    expect(bob.locator("#bell-count")).to_have_text(str(bob_unread + 1))
    expect(bob.locator("#toasts .toast").last).to_contain_text(f"{ITEM}: {start - 2} left")
    assert bob.evaluate("window.__notReloaded") is True
    # alice bought, so she is not notified.
    expect(alice.locator("#bell-count")).to_have_attribute("data-count", str(alice_unread))
    expect(alice.locator("#toasts .toast")).to_have_count(0)

    # More than the stock: 409, its detail shown, and nothing changes.
    alice.fill("#buy-quantity", "999999")
    alice.get_by_role("button", name="Buy", exact=True).click()
    result = alice.locator("#buy-result")
    expect(result).to_have_text(f"Not enough stock: 999999 requested, {start - 2} available.")
    expect(result).to_have_class(re.compile(r"\berror\b"))
    assert alice.request.get(f"/api/items/{item_id}/").json()["quantity"] == start - 2
    expect(alice_quantity).to_have_text(str(start - 2))
    expect(bob_quantity).to_have_text(str(start - 2))

    # bob's inbox lists the notification, unread.
    bob.goto("/notifications/")
    rows = bob.locator("#notifications li.notification")
    newest = rows.first
    expect(newest).to_contain_text(f"{ITEM}: {start - 2} left")
    expect(newest).to_have_class(re.compile(r"\bunread\b"))
    expect(bob.locator("#bell-count")).to_have_text(str(bob_unread + 1))

    # A new one appears at the top live.
    alice.fill("#buy-quantity", "1")
    alice.get_by_role("button", name="Buy", exact=True).click()
    expect(alice.locator("#buy-result")).to_have_text("Bought 1.")
    expect(newest).to_contain_text(f"{ITEM}: {start - 3} left")
    expect(newest).to_have_class(re.compile(r"\bunread\b"))
    expect(bob.locator("#bell-count")).to_have_text(str(bob_unread + 2))

    # Mark one read, then all.
    newest.get_by_role("button", name="Mark read").click()
    expect(newest).not_to_have_class(re.compile(r"\bunread\b"))
    expect(bob.locator("#bell-count")).to_have_text(str(bob_unread + 1))
    bob.get_by_role("button", name="Mark all read").click()
    expect(bob.locator("#bell-count")).to_have_text("0")
    expect(bob.locator("#bell-count")).to_have_attribute("data-count", "0")
    expect(bob.locator("#notifications li.unread")).to_have_count(0)

    assert errors == []


def test_anonymous_visitor_sees_live_stock_and_a_sign_in_link(
    new_page: Callable[[], Page], server: Server
) -> None:
    visitor = new_page()
    errors: list[str] = []
    watch_for_errors(visitor, errors)
    visitor.goto("/shop/")
    expect(visitor.locator("#bell")).to_have_count(0)
    visitor.get_by_role("link", name=ITEM, exact=True).click()
    wait_live(visitor)
    expect(visitor.locator("#buy")).to_have_count(0)
    sign_in = visitor.get_by_role("link", name="Sign in to buy")
    expect(sign_in).to_have_attribute(
        "href", re.compile(r"^/accounts/login/\?next=/shop/item/\d+/$")
    )
    assert errors == []
