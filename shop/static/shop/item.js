// An item page: the live quantity, the buy form and the watch toggle.
// The quantity changes only from `shop.stock` events (highest `version` wins), never from an
// HTTP answer, so it cannot go back to an older value.

import { getClient } from "../realtime/shared.js";
import { showStock } from "./shop.js";

const itemId = JSON.parse(document.getElementById("item-id").textContent);
const card = document.querySelector(".item-detail");
const quantity = document.getElementById("quantity");
const form = document.getElementById("buy");
const amount = document.getElementById("buy-quantity");
const buyButton = document.getElementById("buy-submit");
const result = document.getElementById("buy-result");
const watchButton = document.getElementById("watch");

getClient().subscribe(`shop:item:${itemId}`, (frame) => {
  if (frame.event === "shop.stock" && frame.data.item === itemId) {
    showStock(quantity, frame.data, card);
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

function showResult(text, isError) {
  result.textContent = text;
  result.classList.toggle("error", isError);
}

// --- buying ---------------------------------------------------------------------------------

function showWatching(watching) {
  if (!watchButton) return;
  watchButton.setAttribute("aria-pressed", String(watching));
  watchButton.textContent = watching ? "Watching" : "Watch";
}

form?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const wanted = Number(amount.value);
  if (!Number.isInteger(wanted) || wanted < 1) {
    showResult("Enter a whole number of at least 1.", true);
    return;
  }
  buyButton.disabled = true;
  showResult("", false);
  try {
    const { status, body } = await api("POST", `/api/items/${itemId}/purchase/`, {
      quantity: wanted,
    });
    if (status === 201) {
      showResult(`Bought ${body.quantity}.`, false);
      // A buyer becomes a watcher of the item.
      showWatching(true);
    } else {
      showResult(problem(status, body), true);
    }
  } catch {
    showResult("Could not reach the server; nothing was bought.", true);
  } finally {
    buyButton.disabled = false;
  }
});

// --- watching -------------------------------------------------------------------------------

watchButton?.addEventListener("click", async () => {
  const watching = watchButton.getAttribute("aria-pressed") === "true";
  watchButton.disabled = true;
  try {
    const { status, body } = await api(watching ? "DELETE" : "POST", `/api/items/${itemId}/watch/`);
    if (status === 200) showWatching(Boolean(body.is_watching));
    else showResult(problem(status, body), true);
  } catch {
    showResult("Could not reach the server; try again.", true);
  } finally {
    watchButton.disabled = false;
  }
});
