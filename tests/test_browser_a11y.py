"""Accessibility and phone layout of every page, in headless Chromium: axe-core finds no
violation, and no page is wider than a 390 px phone screen.

Every page signed out and signed in (alice), at 1280×800 and at 390×844: axe-core
(node_modules/axe-core, ``npm ci`` at the repository's root) runs all its default rules
(WCAG 2 A and AA, and best practices: landmarks, headings, scrollable regions, contrast) and
must report nothing; at 390 px, ``document.documentElement.scrollWidth`` must be at most 390.
The data the pages show is set up first, so the styles that only some data has are checked
too: a sold-out item, alice's own messages, unread notifications, offline members.

/admin/ is Django's and exempt. 403 and 500 cannot be provoked on a healthy server: their
templates, rendered here as Django renders them, are loaded into a page of the server (so
their stylesheet and script load from it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from django.template import loader
from playwright.sync_api import Page, ViewportSize, expect

from tests import services
from tests.browser import log_in
from tests.conftest import token_for
from tests.server import ROOT, Server, run_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext

pytestmark = pytest.mark.browser

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
SOLD_OUT = "Limited print"
WATCHED = "Moka pot"  # alice watches it in the demo data


@dataclass(frozen=True)
class Ids:
    room: int
    item: int
    sold_out: int


@pytest.fixture(scope="module")
def a11y_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of this module's own: the test sells an item out and sends messages."""
    services.need(AXE.exists(), f"axe-core not installed ({AXE}): run `npm ci` at the repo root")
    with run_server(tmp_path_factory.mktemp("a11y")) as running:
        yield running


@pytest.fixture(scope="module")
def ids(a11y_server: Server) -> Ids:
    """Data for every style: alice's and bob's messages in the lobby, an item sold out, a
    purchase of alice's, and bob's purchases of an item alice watches (unread notifications
    for her)."""
    headers = {"Authorization": f"Bearer {token_for(a11y_server, 'alice')}"}
    with httpx.Client(base_url=a11y_server.http, headers=headers) as api:
        rooms = api.get("/api/rooms/").json()
        lobby = next(r for r in rooms if r["name"] == "lobby")
        for text in ("Good morning!", "Anyone up for coffee?"):
            sent = api.post(f"/api/rooms/{lobby['id']}/messages/", json={"text": text})
            assert sent.status_code == 201, sent.text
        items = api.get("/api/items/").json()
        item = next(i for i in items if i["name"] == WATCHED)
        sold_out = next(i for i in items if i["name"] == SOLD_OUT)
        patched = api.patch(f"/api/items/{sold_out['id']}/", json={"quantity": 0})
        assert patched.status_code == 200, patched.text
        # A row in alice's purchases.
        bought = api.post(f"/api/items/{item['id']}/purchase/", json={"quantity": 1})
        assert bought.status_code == 201, bought.text
    # bob's purchases notify alice, who watches the item: unread notifications for her.
    headers = {"Authorization": f"Bearer {token_for(a11y_server, 'bob')}"}
    with httpx.Client(base_url=a11y_server.http, headers=headers) as api:
        sent = api.post(f"/api/rooms/{lobby['id']}/messages/", json={"text": "Morning, alice."})
        assert sent.status_code == 201, sent.text
        for _ in range(2):
            bought = api.post(f"/api/items/{item['id']}/purchase/", json={"quantity": 1})
            assert bought.status_code == 201, bought.text
    return Ids(room=lobby["id"], item=item["id"], sold_out=sold_out["id"])


@pytest.fixture(scope="module")
def contexts(browser: Browser, a11y_server: Server) -> Iterator[Callable[..., Page]]:
    """Pages in contexts of a viewport, signed out or in; the CSP is bypassed so that axe
    can be injected as an inline script."""
    opened: list[BrowserContext] = []

    def make(viewport: ViewportSize, user: str | None) -> Page:
        context = browser.new_context(base_url=a11y_server.http, viewport=viewport, bypass_csp=True)
        context.set_default_timeout(10_000)
        opened.append(context)
        page = context.new_page()
        if user:
            log_in(page, user)
        return page

    yield make
    for context in opened:
        context.close()


def wait_ready(page: Page, path: str) -> None:
    """Wait for what a page's script adds, so that axe checks the page as people see it."""
    if path.startswith("/chat/room/"):
        expect(page.locator("#connection-state")).to_have_attribute("data-state", "open")
        expect(page.locator("#members")).to_have_class(re.compile(r"\bpresence-known\b"))
    elif path == "/dashboard/":
        expect(page.locator("#c-rooms")).not_to_have_text("–")
    elif path == "/notifications/":
        expect(page.locator(".notification").first).to_be_visible()
    elif path == "/test/":
        expect(page.locator("#app")).to_have_text(re.compile(r'^\{"value": ?\d+\}$'))


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Run every default axe-core rule on the page; its violations."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        """async () => {
          const result = await axe.run(document, {resultTypes: ["violations"]});
          return result.violations.map((v) => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map((n) => ({target: n.target, summary: n.failureSummary})),
          }));
        }"""
    )
    return list(result)


def check_page(page: Page, label: str, problems: list[str], *, phone: bool) -> None:
    for violation in axe_violations(page):
        for node in violation["nodes"]:
            problems.append(
                f"{label}: {violation['id']} ({violation['impact']}) {violation['help']}\n"
                f"    target: {json.dumps(node['target'])}\n"
                f"    {(node['summary'] or '').replace(chr(10), chr(10) + '    ')}"
            )
    if phone:
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > PHONE["width"]:
            wide = page.evaluate(
                """(limit) => [...document.querySelectorAll("body *")]
                    .filter((e) => e.getBoundingClientRect().right > limit)
                    .slice(0, 5).map((e) => e.tagName.toLowerCase() + "." + e.className)""",
                PHONE["width"],
            )
            problems.append(f"{label}: {width} px wide at 390 px; wider: {wide}")


def error_page_html(name: str) -> str:
    """``403.html`` or ``500.html`` as Django's error views render them (signed out)."""
    if name == "403.html":
        return loader.get_template(name).render({"exception": "Not yours to change."})
    return loader.get_template(name).render()


def signed_out_paths(ids: Ids) -> list[str]:
    return [
        "/accounts/login/",
        "/shop/",
        f"/shop/item/{ids.item}/",
        f"/shop/item/{ids.sold_out}/",
        "/test/",
        "/api/",
        "/no/such/page/",
    ]


def signed_in_paths(ids: Ids) -> list[str]:
    return [
        "/",
        f"/chat/room/{ids.room}/",
        "/shop/",
        f"/shop/item/{ids.item}/",
        f"/shop/item/{ids.sold_out}/",
        "/shop/purchases/",
        "/notifications/",
        "/dashboard/",
        "/test/",
        "/api/",
        "/chat/room/999999/",
        "/chat/a-room-nobody-made-yet/",
        "/settings/mail/",
    ]


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_every_page_passes_axe_and_fits_a_phone(
    contexts: Callable[..., Page], ids: Ids, viewport: ViewportSize
) -> None:
    phone = viewport == PHONE
    problems: list[str] = []
    checked = 0
    for user, paths in ((None, signed_out_paths(ids)), ("alice", signed_in_paths(ids))):
        page = contexts(viewport, user)
        for path in paths:
            response = page.goto(path)
            assert response is not None
            expected = 404 if path in ("/no/such/page/", "/chat/room/999999/") else 200
            assert response.status == expected, f"{path}: {response.status}"
            assert response.url.endswith(path), f"{path} redirected to {response.url}"
            if expected == 200:
                wait_ready(page, path)
            check_page(page, f"{user or 'signed out'} {path}", problems, phone=phone)
            checked += 1
        if user is None:
            for name in ("403.html", "500.html"):
                page.goto("/no/such/page/")
                page.set_content(error_page_html(name))
                expect(page.locator("#error-home")).to_have_attribute("href", "/")
                check_page(page, name, problems, phone=phone)
                checked += 1
    assert checked == 22
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


def test_phone_menu_folds_the_links_behind_a_button(contexts: Callable[..., Page]) -> None:
    page = contexts(PHONE, "alice")
    page.goto("/shop/")
    button = page.get_by_role("button", name="Menu")
    nav = page.get_by_role("navigation", name="Main")
    expect(button).to_be_visible()
    expect(button).to_have_attribute("aria-expanded", "false")
    expect(button).to_have_attribute("aria-controls", "site-menu")
    expect(nav).to_be_hidden()
    expect(page.get_by_role("button", name="Log out")).to_be_hidden()

    button.click()
    expect(button).to_have_attribute("aria-expanded", "true")
    expect(nav.get_by_role("link", name="Shop")).to_have_attribute("aria-current", "page")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    problems: list[str] = []
    check_page(page, "phone menu open", problems, phone=True)
    assert not problems, "\n".join(problems)
    # Escape folds it and gives the focus back to the button.
    page.keyboard.press("Escape")
    expect(button).to_have_attribute("aria-expanded", "false")
    expect(nav).to_be_hidden()
    expect(button).to_be_focused()

    button.click()
    nav.get_by_role("link", name="Rooms").click()
    expect(page).to_have_url(re.compile(r"://[^/]+/$"))


def test_desktop_shows_the_links_without_a_menu_button(contexts: Callable[..., Page]) -> None:
    page = contexts(DESKTOP, "alice")
    page.goto("/notifications/")
    expect(page.get_by_role("button", name="Menu")).to_be_hidden()
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link")).to_have_text(
        ["Rooms", "Shop", "Notifications", "Dashboard", "API"]
    )
    expect(nav.get_by_role("link", name="Notifications")).to_have_attribute("aria-current", "page")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def test_phone_without_scripts_shows_the_links(browser: Browser, a11y_server: Server) -> None:
    context = browser.new_context(
        base_url=a11y_server.http, viewport=PHONE, java_script_enabled=False
    )
    try:
        page = context.new_page()
        page.goto("/shop/")
        expect(page.locator("#menu-button")).to_be_hidden()
        expect(page.get_by_role("navigation", name="Main").get_by_role("link")).to_have_count(4)
        expect(page.get_by_role("link", name="Sign in")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    finally:
        context.close()


def test_dashboard_chart_labels_readable_on_a_phone(contexts: Callable[..., Page]) -> None:
    page = contexts(PHONE, "alice")
    page.goto("/dashboard/")
    expect(page.locator("#c-rooms")).not_to_have_text("–")
    labels = page.locator("#chart .label")
    expect(labels).to_have_count(6)
    shown = page.locator("#chart .label:not(.label-minor)")
    expect(shown).to_have_text([re.compile(r"^\d[\d,.]*$"), "0", "-5 min", "now"])
    for i in range(shown.count()):
        box = shown.nth(i).bounding_box()
        assert box is not None and box["height"] >= 10, (shown.nth(i).text_content(), box)
    for minor in page.locator("#chart .label-minor").all():
        expect(minor).to_be_hidden()


def test_api_reference_is_served_from_this_origin(browser: Browser, a11y_server: Server) -> None:
    # With the site's CSP on (no inline script or style, nothing from elsewhere), Swagger UI
    # renders the schema from files of this server only.
    context = browser.new_context(base_url=a11y_server.http, viewport=DESKTOP)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        failed: list[str] = []
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.on(
            "response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None
        )
        page.goto("/api/docs/")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("Townsquare API")
        expect(page.locator(".opblock-tag-section").first).to_be_visible()
        expect(page.get_by_role("heading", name="Idempotency keys")).to_be_visible()
        assert len(requests) >= 6, requests  # page, 2 CSS, 2 bundles, start-up, schema
        assert all(url.startswith(a11y_server.http + "/") for url in requests), requests
        assert f"{a11y_server.http}/api/schema/" in requests
        assert not failed, failed
        assert not errors, errors
    finally:
        context.close()


def test_axe_finds_what_it_should(contexts: Callable[..., Page]) -> None:
    # The check itself works: a low-contrast text and an unlabelled scroll box are reported.
    page = contexts(DESKTOP, None)
    page.goto("/api/")
    page.evaluate(
        """() => {
          const p = document.createElement("p");
          p.id = "faint"; p.textContent = "faint"; p.style.color = "#bbb";
          document.querySelector("main").append(p);
        }"""
    )
    problems: list[str] = []
    check_page(page, "probe", problems, phone=False)
    assert any("color-contrast" in p and "#faint" in p for p in problems), problems
