// An item page: the live quantity, the buy form and the watch toggle.
// The quantity changes only from `shop.stock` events (highest `version` wins), never from an
// HTTP answer, so it cannot go back to an older value. The same events cap the quantity
// input (`max`) and disable buying at 0, and enable it again when stock comes back.

import { getClient } from "../realtime/shared.js";
import { showStock } from "./shop.js";

const itemId = JSON.parse(document.getElementById("item-id").textContent);
const card = document.querySelector(".item-detail");
const itemName = card.querySelector("h1").textContent.trim();
const quantity = document.getElementById("quantity");
const price = document.getElementById("price");
const form = document.getElementById("buy");
const amount = document.getElementById("buy-quantity");
const buyButton = document.getElementById("buy-submit");
const result = document.getElementById("buy-result");
const watchButton = document.getElementById("watch");
const watchState = document.getElementById("watch-state");
const notifyOffer = document.getElementById("notify-offer");
const notifyButton = document.getElementById("notify-me");

/** Money in the page's locale, e.g. 3998 → "$39.98" on an `en` page. */
const money = new Intl.NumberFormat(document.documentElement.lang || undefined, {
  style: "currency",
  currency: price?.dataset.currency || "USD",
});

/** The stock as the newest `shop.stock` event (or the rendered page) says. */
let stock = Number(quantity.textContent);
/** A purchase is on its way: the button stays disabled until it is answered. */
let buying = false;

function applyStock() {
  if (!form) return;
  const soldOut = stock <= 0;
  amount.max = String(Math.max(stock, 0));
  amount.disabled = soldOut;
  buyButton.disabled = soldOut || buying;
}

getClient().subscribe(`shop:item:${itemId}`, (frame) => {
  if (frame.event === "shop.stock" && frame.data.item === itemId) {
    if (showStock(quantity, frame.data, card)) {
      stock = frame.data.quantity;
      applyStock();
    }
  }
});

// --- HTTP -----------------------------------------------------------------------------------

function csrfToken() {
  const cookie = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="));
  if (cookie) return decodeURIComponent(cookie.slice("csrftoken=".length));
  return document.querySelector("input[name=csrfmiddlewaretoken]")?.value ?? "";
}

/** Send a request to the API; resolve with `{status, body}` (body null when not JSON). */
async function api(method, url, payload) {
  const headers = { Accept: "application/json", "X-CSRFToken": csrfToken() };
  const init = { method, headers, credentials: "same-origin" };
  if (payload !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(payload);
  }
  const response = await fetch(url, init);
  const body = await response.json().catch(() => null);
  return { status: response.status, body };
}

/** A sentence for a failed answer: DRF's `detail`, or the first field error. */
function problem(status, body) {
  if (body?.detail) return body.detail;
  if (body && typeof body === "object") {
    const first = Object.values(body).flat()[0];
    if (typeof first === "string") return first;
  }
  return `Something went wrong (HTTP ${status}).`;
}

/** Show `text` (and any extra nodes after it) below the form. */
function showResult(text, isError, ...extra) {
  result.replaceChildren(text, ...extra);
  result.classList.toggle("error", isError);
}

/** Show a problem with the quantity typed: the input is marked invalid until it changes. */
function showQuantityError(text) {
  showResult(text, true);
  amount.setAttribute("aria-invalid", "true");
}

// An error is about what was typed: it goes as soon as the quantity changes.
amount?.addEventListener("input", () => {
  amount.removeAttribute("aria-invalid");
  if (result.classList.contains("error")) showResult("", false);
});

// --- buying ---------------------------------------------------------------------------------

function purchasesLink() {
  const link = document.createElement("a");
  link.href = "/shop/purchases/";
  link.textContent = "My purchases";
  return link;
}

form?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const wanted = Number(amount.value);
  if (!Number.isInteger(wanted) || wanted < 1) {
    showQuantityError("Enter a whole number of at least 1.");
    return;
  }
  if (wanted > stock) {
    showQuantityError(`Only ${stock} left.`);
    return;
  }
  buying = true;
  applyStock();
  showResult("", false);
  try {
    const { status, body } = await api("POST", `/api/items/${itemId}/purchase/`, {
      quantity: wanted,
    });
    if (status === 201) {
      const total = body.total_cents ?? body.quantity * Number(price.dataset.priceCents);
      showResult(
        `Bought ${body.quantity} × ${itemName} for ${money.format(total / 100)}. `,
        false,
        purchasesLink(),
      );
      // Buying does not watch the item; offer it, since the stock just went down.
      if (notifyOffer) notifyOffer.hidden = isWatching();
    } else if (status === 409 || status === 400) {
      showQuantityError(problem(status, body));
    } else {
      showResult(problem(status, body), true);
    }
  } catch {
    showResult("Could not reach the server; nothing was bought.", true);
  } finally {
    buying = false;
    applyStock();
  }
});

// --- watching -------------------------------------------------------------------------------

function isWatching() {
  return watchButton?.getAttribute("aria-pressed") === "true";
}

function showWatching(watching) {
  if (!watchButton) return;
  watchButton.setAttribute("aria-pressed", String(watching));
  watchState.textContent = watching
    ? "Watching: you get a notification when its stock changes."
    : "Not watching.";
  if (watching && notifyOffer) notifyOffer.hidden = true;
}

/** Watch or stop watching; resolves true when the server agreed. */
async function setWatching(watching) {
  try {
    const { status, body } = await api(watching ? "POST" : "DELETE", `/api/items/${itemId}/watch/`);
    if (status === 200) {
      showWatching(Boolean(body.is_watching));
      return true;
    }
    showResult(problem(status, body), true);
  } catch {
    showResult("Could not reach the server; try again.", true);
  }
  return false;
}

watchButton?.addEventListener("click", async () => {
  watchButton.disabled = true;
  try {
    await setWatching(!isWatching());
  } finally {
    watchButton.disabled = false;
  }
});

notifyButton?.addEventListener("click", async () => {
  notifyButton.disabled = true;
  try {
    // The offer disappears once watching; keep the focus on the page's watch toggle.
    if (await setWatching(true)) watchButton.focus();
  } finally {
    notifyButton.disabled = false;
  }
});
