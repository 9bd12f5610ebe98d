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
FROTHER = "Milk frother"  # $15.00; nobody watches it in the demo data


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
    expect(alice.locator("#buy-result")).to_have_text(f"Bought 2 × {ITEM} for $70.00. My purchases")
    # alice already watches it: no offer to watch, and the toggle says so.
    expect(alice.locator("#watch")).to_have_attribute("aria-pressed", "true")
    expect(alice.locator("#notify-offer")).to_be_hidden()

    # Both pages show the new stock live; bob, a watcher, gets a notification and a toast.
    expect(bob_quantity).to_have_text(str(start - 2))
    expect(alice_quantity).to_have_text(str(start - 2))
    expect(bob.locator("#bell-count")).to_have_text(str(bob_unread + 1))
    toast = bob.locator("#toasts .toast").last
    expect(toast).to_contain_text(f"{ITEM}: {start - 2} left")
    # The toast's title leads to the item.
    expect(toast.get_by_role("link", name=f"{ITEM}: {start - 2} left")).to_have_attribute(
        "href", f"/shop/item/{item_id}/"
    )
    assert bob.evaluate("window.__notReloaded") is True
    # alice bought, so she is not notified.
    expect(alice.locator("#bell-count")).to_have_attribute("data-count", str(alice_unread))
    expect(alice.locator("#toasts .toast")).to_have_count(0)

    # More than the stock: said at once, nothing bought; the error goes when the input changes.
    alice.fill("#buy-quantity", "999999")
    alice.get_by_role("button", name="Buy", exact=True).click()
    result = alice.locator("#buy-result")
    expect(result).to_have_text(f"Only {start - 2} left.")
    expect(result).to_have_class(re.compile(r"\berror\b"))
    expect(alice.locator("#buy-quantity")).to_have_attribute("aria-invalid", "true")
    assert alice.request.get(f"/api/items/{item_id}/").json()["quantity"] == start - 2
    expect(alice_quantity).to_have_text(str(start - 2))
    expect(bob_quantity).to_have_text(str(start - 2))
    alice.locator("#buy-quantity").press_sequentially("0")  # an edit, as typed
    expect(result).to_have_text("")
    expect(result).not_to_have_class(re.compile(r"\berror\b"))

    # bob's inbox lists the notification, unread.
    bob.goto("/notifications/")
    rows = bob.locator("#notifications li.notification")
    newest = rows.first
    expect(newest).to_contain_text(f"{ITEM}: {start - 2} left")
    expect(newest).to_have_class(re.compile(r"\bunread\b"))
    expect(newest.get_by_role("link", name=f"{ITEM}: {start - 2} left")).to_have_attribute(
        "href", f"/shop/item/{item_id}/"
    )
    expect(bob.locator("#bell-count")).to_have_text(str(bob_unread + 1))

    # A new one appears at the top live.
    alice.fill("#buy-quantity", "1")
    alice.get_by_role("button", name="Buy", exact=True).click()
    expect(alice.locator("#buy-result")).to_have_text(f"Bought 1 × {ITEM} for $35.00. My purchases")
    expect(newest).to_contain_text(f"{ITEM}: {start - 3} left")
    expect(newest).to_have_class(re.compile(r"\bunread\b"))
    # The live row links to the item as the rendered ones do.
    expect(newest.get_by_role("link", name=f"{ITEM}: {start - 3} left")).to_have_attribute(
        "href", f"/shop/item/{item_id}/"
    )
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


def set_stock(server: Server, staff_token: str, item_id: int, quantity: int) -> None:
    """Staff sets the stock over the API, as another client would."""
    response = httpx.patch(
        f"{server.http}/api/items/{item_id}/",
        json={"quantity": quantity},
        headers={"Authorization": f"Bearer {staff_token}"},
    )
    assert response.status_code == 200, response.text


def no_sideways_scroll(page: Page) -> None:
    """The page is no wider than the window (no horizontal scroll bar)."""
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{page.url} is {overflow} px too wide"


def test_buying_follows_live_stock_and_the_purchase_is_listed(
    new_page: Callable[[], Page], server: Server
) -> None:
    """dave (no watches) on a phone-sized page: Buy and the quantity's max follow stock events
    from other clients; the confirmation gives the total; "My purchases" lists it."""
    frother = next(i for i in httpx.get(f"{server.http}/api/items/").json() if i["name"] == FROTHER)
    item_id = frother["id"]
    staff = token_for(server, "alice")
    set_stock(server, staff, item_id, 3)
    dave = new_page()
    dave.set_viewport_size({"width": 390, "height": 844})
    errors: list[str] = []
    watch_for_errors(dave, errors)
    log_in(dave, "dave")
    dave.goto(f"/shop/item/{item_id}/")
    wait_live(dave)
    amount = dave.get_by_label("Quantity")
    buy = dave.get_by_role("button", name="Buy", exact=True)
    expect(amount).to_have_attribute("max", "3")
    expect(dave.get_by_role("button", name="Watch this item", exact=True)).to_have_attribute(
        "aria-pressed", "false"
    )
    no_sideways_scroll(dave)

    # Another client buys one: the cap follows.
    bought = httpx.post(
        f"{server.http}/api/items/{item_id}/purchase/",
        json={"quantity": 1},
        headers={"Authorization": f"Bearer {token_for(server, 'bob')}"},
    )
    assert bought.status_code == 201, bought.text
    expect(dave.locator("#quantity")).to_have_text("2")
    expect(amount).to_have_attribute("max", "2")

    # Asking for more than is left: an error, gone as soon as the quantity is edited.
    amount.fill("3")
    buy.click()
    result = dave.locator("#buy-result")
    expect(result).to_have_text("Only 2 left.")
    amount.fill("2")
    expect(result).to_have_text("")

    # Buying the last two: the confirmation with the total, then sold out live.
    buy.click()
    expect(result).to_have_text(f"Bought 2 × {FROTHER} for $30.00. My purchases")
    expect(dave.locator("#quantity")).to_have_text("0")
    expect(buy).to_be_disabled()
    expect(amount).to_be_disabled()
    expect(amount).to_have_attribute("max", "0")
    expect(dave.locator(".item-detail")).to_contain_text("sold out")
    no_sideways_scroll(dave)

    # dave did not become a watcher; the page offers it, and takes it.
    offer = dave.get_by_role("button", name="Notify me when it's back in stock")
    expect(offer).to_be_visible()
    offer.click()
    expect(offer).to_be_hidden()
    expect(dave.get_by_role("button", name="Watch this item", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(dave.locator("#watch-state")).to_have_text(
        "Watching: you get a notification when its stock changes."
    )
    # The toggle turns it off and on again.
    toggle = dave.get_by_role("button", name="Watch this item", exact=True)
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "false")
    expect(dave.locator("#watch-state")).to_have_text("Not watching.")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")

    # Restocked by staff: Buy comes back with the new cap.
    set_stock(server, staff, item_id, 5)
    expect(buy).to_be_enabled()
    expect(amount).to_be_enabled()
    expect(amount).to_have_attribute("max", "5")

    # "My purchases": the newest first, with its item link, quantity, total and time.
    result.get_by_role("link", name="My purchases").click()
    expect(dave.get_by_role("heading", name="My purchases")).to_be_visible()
    first = dave.locator("#purchases tbody tr").first
    expect(first.locator("td")).to_have_text([FROTHER, "2", "$30.00", re.compile(r"\S")])
    expect(first.get_by_role("link", name=FROTHER)).to_have_attribute(
        "href", f"/shop/item/{item_id}/"
    )
    expect(first.locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))
    no_sideways_scroll(dave)

    # The list shows sold out live too.
    dave.goto("/shop/")
    wait_live(dave)
    card = dave.locator("#items li.item", has=dave.get_by_role("link", name=FROTHER, exact=True))
    expect(card).not_to_have_class(re.compile(r"\bout\b"))
    set_stock(server, staff, item_id, 0)
    expect(card).to_have_class(re.compile(r"\bout\b"))
    expect(card).to_contain_text("0 in stock · sold out")
    set_stock(server, staff, item_id, 4)
    expect(card).not_to_have_class(re.compile(r"\bout\b"))
    expect(card.locator(".quantity")).to_have_text("4")
    no_sideways_scroll(dave)
    assert errors == []
