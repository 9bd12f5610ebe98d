// The dashboard: every counter and the per-second chart, live from the `dashboard` stream
// (a snapshot on subscribe, then at most a few `dashboard.update` frames a second), over
// the page's shared socket. Staff also get the feed switch (POST /api/feed/).
// No inline styles: numbers go in with textContent, the chart is SVG geometry attributes,
// the "changed" flash is a CSS class.

import { getClient } from "../realtime/shared.js";
import { setTime } from "../townsquare/time.js";

// The chart's plot area in viewBox units; dashboard.html draws the grid for the same box.
const PLOT = { left: 40, right: 592, top: 10, bottom: 136 };
/** The smallest top of the y scale, so a quiet minute does not look like a storm. */
const MIN_SCALE = 5;
/** How long a card keeps its `changed` class, in ms (the CSS animation's length). */
const FLASH_MS = 1200;

const byId = (id) => document.getElementById(id);
// One fixed locale: "1,234" everywhere, whatever the browser's language.
const numberFormat = new Intl.NumberFormat("en-US");
const flashTimers = new WeakMap();

/** Flash `card`: (re)start its `changed` class, then remove it. */
function flash(card) {
  if (!card) return;
  clearTimeout(flashTimers.get(card));
  card.classList.remove("changed");
  void card.offsetWidth; // restart the animation when it is still running
  card.classList.add("changed");
  flashTimers.set(
    card,
    setTimeout(() => card.classList.remove("changed"), FLASH_MS),
  );
}

/** Show `value` in `#id`; flash its card when a number that was shown changes. */
function setNumber(id, value) {
  const el = byId(id);
  if (!el || !Number.isFinite(value)) return;
  const text = numberFormat.format(value);
  if (el.textContent === text) return;
  const hadNumber = el.dataset.value !== undefined;
  el.dataset.value = String(value);
  el.textContent = text;
  if (hadNumber) flash(el.closest(".counter"));
}

/** The per-worker socket counts: `<li data-worker="id">id: n</li>`, in id order. */
function showWorkers(workers) {
  const list = byId("c-workers");
  if (!list || !workers || typeof workers !== "object") return;
  const ids = Object.keys(workers).sort();
  const existing = new Map([...list.children].map((li) => [li.dataset.worker, li]));
  for (const [id, li] of existing) if (!ids.includes(id)) li.remove();
  for (const id of ids) {
    let li = existing.get(id);
    if (!li) {
      li = document.createElement("li");
      li.dataset.worker = id;
    }
    li.textContent = `${id}: ${workers[id]}`;
    list.append(li); // appending an existing child moves it: keeps the id order
  }
}

/** `{on, records}` of the feed: the card, the state word and the staff toggle. */
function showFeed(feed) {
  if (!feed) return;
  setNumber("c-feed-records", feed.records);
  const on = Boolean(feed.on);
  const state = byId("feed-state");
  if (state) {
    state.textContent = on ? "on" : "off";
    state.dataset.on = String(on);
  }
  const toggle = byId("feed-toggle");
  if (toggle) {
    toggle.setAttribute("aria-pressed", String(on));
    toggle.textContent = on ? "Turn off" : "Turn on";
    if (!toggle.dataset.busy) toggle.disabled = false;
  }
}

/** A nice round top for the y axis: 5, 10, 20, 25, 50, 100, 200, 250, 500, … */
function niceScale(max) {
  if (max <= MIN_SCALE) return MIN_SCALE;
  const magnitude = 10 ** Math.floor(Math.log10(max));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * magnitude >= max) return step * magnitude;
  }
  return 10 * magnitude;
}

/** `points` for one series: x = second index across the plot, y = value over `scale`. */
function points(values, scale) {
  const width = PLOT.right - PLOT.left;
  const height = PLOT.bottom - PLOT.top;
  const last = Math.max(values.length - 1, 1);
  return values
    .map((value, i) => {
      const v = Number.isFinite(value) ? Math.max(0, value) : 0;
      const x = PLOT.left + (i * width) / last;
      const y = PLOT.bottom - (Math.min(v, scale) * height) / scale;
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    })
    .join(" ");
}

function formatScale(n) {
  return Number.isInteger(n) ? numberFormat.format(n) : String(n);
}

/** Redraw the chart from `series: {start, seconds, messages, events}`. */
function drawChart(series) {
  if (!series) return;
  const messages = Array.isArray(series.messages) ? series.messages : [];
  const events = Array.isArray(series.events) ? series.events : [];
  let max = 0;
  for (const v of messages) if (v > max) max = v;
  for (const v of events) if (v > max) max = v;
  const scale = niceScale(max);
  byId("chart-messages")?.setAttribute("points", points(messages, scale));
  byId("chart-events")?.setAttribute("points", points(events, scale));
  const top = byId("chart-max");
  if (top) top.textContent = formatScale(scale);
  const mid = byId("chart-mid");
  if (mid) mid.textContent = formatScale(scale / 2);
}

/** Fill the page from one `dashboard.update` snapshot. */
function show(data) {
  setNumber("c-sockets", data.sockets?.total);
  showWorkers(data.sockets?.workers);
  setNumber("c-users-online", data.users_online);
  setNumber("c-rooms", data.rooms);
  setNumber("c-messages-hour", data.messages?.last_hour);
  setNumber("c-messages-minute", data.messages?.last_minute);
  setNumber("c-items-in-stock", data.items_in_stock);
  const units = byId("c-units-in-stock");
  if (units && Number.isFinite(data.units_in_stock)) {
    units.textContent = numberFormat.format(data.units_in_stock);
  }
  setNumber("c-purchases-minute", data.purchases_last_minute);
  showFeed(data.feed);
  drawChart(data.series);
  const updated = byId("c-updated");
  if (updated && Number.isFinite(data.at)) {
    setTime(updated, new Date(data.at * 1000));
  }
}

// --- the feed switch (staff) ------------------------------------------------------------

function csrfToken() {
  const cookie = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="));
  if (cookie) return decodeURIComponent(cookie.slice("csrftoken=".length));
  return document.querySelector("input[name=csrfmiddlewaretoken]")?.value ?? "";
}

async function flipFeed(toggle) {
  const error = byId("feed-error");
  const on = toggle.getAttribute("aria-pressed") !== "true";
  toggle.disabled = true;
  toggle.dataset.busy = "1";
  if (error) error.hidden = true;
  try {
    const response = await fetch("/api/feed/", {
      method: "POST",
      credentials: "same-origin",
      headers: {
        Accept: "application/json",
        "Content-Type": "application/json",
        "X-CSRFToken": csrfToken(),
      },
      body: JSON.stringify({ on }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.detail ?? `The server said ${response.status}.`);
    delete toggle.dataset.busy;
    showFeed(body);
  } catch (err) {
    if (error) {
      error.textContent = `Could not switch the feed: ${err.message ?? err}`;
      error.hidden = false;
    }
  } finally {
    delete toggle.dataset.busy;
    toggle.disabled = false;
  }
}

// --- wiring -------------------------------------------------------------------------------

if (byId("chart")) {
  getClient().subscribe(
    "dashboard",
    (frame) => {
      if (frame.event === "dashboard.update" && frame.data) show(frame.data);
    },
    {
      onError: (error) => {
        const updated = byId("c-updated");
        if (updated) updated.textContent = `unavailable (${error.detail ?? error.code})`;
      },
    },
  );
  const toggle = byId("feed-toggle");
  toggle?.addEventListener("click", () => flipFeed(toggle));
}
