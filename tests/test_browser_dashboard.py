"""End to end in headless Chromium: the live dashboard, the feed switch and seed 000's page."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from playwright.sync_api import ConsoleMessage, Error, Locator, Page, expect

from tests.browser import log_in, wait_live
from tests.conftest import token_for
from tests.server import Server

pytestmark = pytest.mark.browser

NUMBER = re.compile(r"^\d[\d,]*$")
POSITIVE = re.compile(r"^[1-9][\d,]*$")
SEED_VALUE = re.compile(r'^\{"value": ?(\d+)\}$')
# The feed adds a record every 2 s by default: two new values well within this.
FEED_TIMEOUT_MS = 10_000
# Bob's messages land in the chart's last seconds; look this many points back for them.
RECENT_POINTS = 30


def watch_for_errors(page: Page, errors: list[str]) -> None:
    """Collect uncaught exceptions and console errors (CSP violations are reported there)."""

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    def on_page_error(error: Error) -> None:
        errors.append(str(error))

    page.on("console", on_console)
    page.on("pageerror", on_page_error)


def number(locator: Locator) -> int:
    """A counter's value, once the first snapshot has filled it in."""
    expect(locator).to_have_text(NUMBER)
    return int((locator.text_content() or "").replace(",", ""))


def open_dashboard(page: Page) -> None:
    page.goto("/dashboard/")
    expect(page.locator("h1")).to_have_text("Dashboard")
    expect(page.get_by_role("link", name="Dashboard")).to_have_attribute("aria-current", "page")
    wait_live(page)


def recent_point_above(baseline: str) -> re.Pattern[str]:
    """`points` whose last RECENT_POINTS points include one off the zero line `baseline`."""
    off_baseline = rf"\d+(?:\.\d+)?,(?!{re.escape(baseline)}(?: |$))\d+(?:\.\d+)?"
    rest = rf"(?: \d+(?:\.\d+)?,\d+(?:\.\d+)?){{0,{RECENT_POINTS - 1}}}"
    return re.compile(off_baseline + rest + "$")


def recent_total(page: Page) -> float:
    """Messages in the chart's last RECENT_POINTS seconds, read back from the polyline."""
    baseline = float(page.locator("#chart-baseline").get_attribute("y1") or "")
    top = float(page.locator("#chart-top").get_attribute("y1") or "")
    scale = float((page.locator("#chart-max").text_content() or "").replace(",", ""))
    points = (page.locator("#chart-messages").get_attribute("points") or "").split()
    ys = [float(point.split(",")[1]) for point in points[-RECENT_POINTS:]]
    return sum((baseline - y) / (baseline - top) * scale for y in ys)


@contextmanager
def feed_left_off(server: Server) -> Iterator[None]:
    """Switch the feed off at the end, whatever happened: the server is shared."""
    try:
        yield
    finally:
        response = httpx.post(
            f"{server.http}/api/feed/",
            json={"on": False},
            headers={"Authorization": f"Bearer {token_for(server, 'alice')}"},
        )
        assert response.status_code == 200, response.text


def test_counters_and_chart_follow_new_messages_live(
    new_page: Callable[[], Page], server: Server
) -> None:
    alice, bob = new_page(), new_page()
    errors: list[str] = []
    watch_for_errors(alice, errors)
    log_in(alice, "alice")
    open_dashboard(alice)

    # Alice's own socket counts, on some worker, and she is online.
    expect(alice.locator("#c-sockets")).to_have_text(POSITIVE)
    expect(alice.locator("#c-users-online")).to_have_text(POSITIVE)
    expect(alice.locator("#c-workers li[data-worker]").first).to_have_text(
        re.compile(r"^.+: [1-9]\d*$")
    )
    expect(alice.locator("#c-updated")).to_have_attribute("datetime", re.compile(r"^\d{4}-"))
    for counter in ("#c-rooms", "#c-items-in-stock", "#c-units-in-stock", "#c-feed-records"):
        expect(alice.locator(counter)).to_have_text(NUMBER)
    expect(alice.locator("#feed-state")).to_have_text(re.compile(r"^(on|off)$"))

    start = number(alice.locator("#c-messages-hour"))
    chart = alice.locator("#chart-messages")
    expect(chart).to_have_attribute("points", re.compile(r"^(\S+,\S+ ){299}\S+,\S+$"))
    points_before = chart.get_attribute("points") or ""
    baseline = f"{float(alice.locator('#chart-baseline').get_attribute('y1') or ''):.1f}"
    alice.evaluate("window.__notReloaded = true")

    # bob, in his own context, writes three messages to the lobby through the HTTP API.
    bearer = {"Authorization": f"Bearer {token_for(server, 'bob')}"}
    rooms = bob.request.get("/api/rooms/", headers=bearer)
    assert rooms.ok, rooms.text()
    lobby = next(room["id"] for room in rooms.json() if room["name"] == "lobby")
    for n in range(3):
        sent = bob.request.post(
            f"/api/rooms/{lobby}/messages/", data={"text": f"dashboard {n}"}, headers=bearer
        )
        assert sent.status == 201, sent.text()

    # alice's page follows without a reload: the counter and the chart's last seconds.
    expect(alice.locator("#c-messages-hour")).to_have_text(f"{start + 3:,}")
    expect(alice.locator("#c-messages-minute")).to_have_text(POSITIVE)
    expect(chart).not_to_have_attribute("points", points_before)
    expect(chart).to_have_attribute("points", recent_point_above(baseline))
    # One snapshot fills the counters and the chart: bob's three are in its last seconds.
    assert recent_total(alice) >= 3 - 0.1
    expect(alice.locator("#chart-events")).to_have_attribute(
        "points", re.compile(r"^(\S+,\S+ ){299}\S+,\S+$")
    )
    assert alice.evaluate("window.__notReloaded") is True
    assert errors == []


def test_staff_switch_the_feed_and_seed_page_counts_live(
    new_page: Callable[[], Page], server: Server
) -> None:
    alice, visitor = new_page(), new_page()
    errors: list[str] = []
    for page in (alice, visitor):
        watch_for_errors(page, errors)

    with feed_left_off(server):
        log_in(alice, "alice")
        open_dashboard(alice)
        state = alice.locator("#feed-state")
        toggle = alice.locator("#feed-toggle")
        expect(state).to_have_text("off")
        expect(toggle).to_have_attribute("aria-pressed", "false")

        # Seed 000's page, anonymous: the raw text of the latest ws/test/ message.
        visitor.goto("/test/")
        app = visitor.locator("h1#app")
        expect(app).to_have_text(SEED_VALUE)

        toggle.click()
        expect(state).to_have_text("on")
        expect(toggle).to_have_attribute("aria-pressed", "true")

        values: list[int] = []
        for _ in range(2):
            # Any value at first, then one other than the last seen.
            shown = rf"(?!{values[-1]}\}})\d+" if values else r"\d+"
            expect(app).to_have_text(
                re.compile(rf'^\{{"value": ?{shown}\}}$'), timeout=FEED_TIMEOUT_MS
            )
            match = SEED_VALUE.match(app.text_content() or "")
            assert match, app.text_content()
            values.append(int(match[1]))
        assert values[1] > values[0], values
        # The dashboard counts the same records.
        expect(alice.locator("#c-feed-records")).not_to_have_text("0")

        toggle.click()
        expect(state).to_have_text("off")
        expect(toggle).to_have_attribute("aria-pressed", "false")

    # Nobody signed in: the page has no Dashboard link, and /dashboard/ asks to sign in.
    expect(visitor.get_by_role("link", name="Dashboard")).to_have_count(0)
    visitor.goto("/dashboard/")
    expect(visitor).to_have_url(re.compile(r"/accounts/login/\?next=/dashboard/$"))
    assert errors == []
