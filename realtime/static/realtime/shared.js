/**
 * The page's one RealtimeClient, shared by every module on the page (the bell, the chat
 * room, the shop…), so a page opens a single socket however many features it has.
 *
 * The first `getClient()` creates the client, connects it and makes the header's
 * `#connection-state` badge (and its `#connection-retry` button) follow its state; later
 * calls return the same client. ES modules are evaluated once per URL, so every importer
 * gets this one instance.
 *
 * The client's outbox is kept in sessionStorage per signed-in user (`townsquare.outbox.<id>`),
 * so actions still pending when the page is left or reloaded are sent by the next page of
 * the same tab.
 *
 * @module realtime/shared
 */

import { RealtimeClient } from "./client.js";

/** How often the badge's "reconnecting in N s" countdown is refreshed, in ms. Below a second
 * so the shown number never lags a full second behind. */
const COUNTDOWN_TICK_MS = 250;

/** @type {RealtimeClient | null} */
let client = null;

/** The signed-in user's id (base.html's `current-user-id` json_script), or null. */
function currentUserId() {
  const el = document.getElementById("current-user-id");
  if (!el) return null;
  try {
    return JSON.parse(el.textContent);
  } catch {
    return null;
  }
}

/**
 * What the badge says: `[data-state, text, retry button shown]`. The browser being offline
 * wins over the client's own state unless the socket is open.
 */
function describe(state, now) {
  if (state === "open") return ["open", "live", false];
  if (state === "closed") return ["closed", "disconnected", false];
  if (navigator.onLine === false) return ["offline", "offline", false];
  if (state === "connecting") return ["connecting", "connecting…", false];
  const due = client.nextAttemptAt;
  // An attempt under way: nothing to retry yet.
  if (due === null || client.socket !== null) return ["reconnecting", "reconnecting…", false];
  const seconds = Math.max(0, Math.ceil((due - now) / 1000));
  return ["reconnecting", `reconnecting in ${seconds} s`, true];
}

function followState(badge, retry) {
  let ticker = null;
  const render = () => {
    const [state, text, showRetry] = describe(client.state, Date.now());
    if (badge.dataset.state !== state) badge.dataset.state = state;
    if (badge.textContent !== text) badge.textContent = text;
    if (retry) retry.hidden = !showRetry;
    // Tick only while there is a countdown to show.
    const counting = state === "reconnecting";
    if (counting && ticker === null) ticker = setInterval(render, COUNTDOWN_TICK_MS);
    if (!counting && ticker !== null) {
      clearInterval(ticker);
      ticker = null;
    }
  };
  client.onState(render);
  window.addEventListener("online", render);
  window.addEventListener("offline", render);
  if (retry) retry.addEventListener("click", () => client.retryNow());
  render();
}

/**
 * The page's shared client, connected.
 *
 * @returns {RealtimeClient}
 */
export function getClient() {
  if (client) return client;
  const userId = currentUserId();
  client = new RealtimeClient({
    storageKey: userId === null ? null : `townsquare.outbox.${userId}`,
  });
  // A handle for tests and for poking around in the console.
  window.__townsquareClient = client;
  client.connect();
  const badge = document.getElementById("connection-state");
  if (badge) {
    badge.hidden = false;
    followState(badge, document.getElementById("connection-retry"));
  }
  return client;
}
