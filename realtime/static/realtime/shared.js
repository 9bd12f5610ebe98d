/**
 * The page's one RealtimeClient, shared by every module on the page (the bell, the chat
 * room, the shop…), so a page opens a single socket however many features it has.
 *
 * The first `getClient()` creates the client, connects it and makes the header's
 * `#connection-state` badge follow its state; later calls return the same client.
 * ES modules are evaluated once per URL, so every importer gets this one instance.
 *
 * @module realtime/shared
 */

import { RealtimeClient } from "./client.js";

const STATE_TEXT = {
  connecting: "connecting…",
  open: "live",
  reconnecting: "reconnecting…",
  closed: "offline",
};

/** @type {RealtimeClient | null} */
let client = null;

function showState(badge, state) {
  badge.dataset.state = state;
  badge.textContent = STATE_TEXT[state] ?? state;
}

/**
 * The page's shared client, connected.
 *
 * @returns {RealtimeClient}
 */
export function getClient() {
  if (client) return client;
  client = new RealtimeClient();
  // A handle for tests and for poking around in the console.
  window.__townsquareClient = client;
  const badge = document.getElementById("connection-state");
  if (badge) {
    badge.hidden = false;
    client.onState((state) => showState(badge, state));
  }
  client.connect();
  return client;
}
