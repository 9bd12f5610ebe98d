// The header bell, on every page for signed-in users: the unread count, and a toast for each
// new notification. It subscribes to the user's own stream, `user:<id>`, over the page's
// shared socket. Text from the server is written with textContent only.
//
// Other modules (the inbox page) listen to the same stream through `subscribeInbox`, so
// the stream is subscribed once, with the same `since`, whoever asks first.

import { getClient } from "../realtime/shared.js";

const TOAST_MS = 5000;
const MAX_TOASTS = 3;

const userIdElement = document.getElementById("current-user-id");
const userId = userIdElement ? JSON.parse(userIdElement.textContent) : null;
const count = document.getElementById("bell-count");
const toasts = document.getElementById("toasts");

/**
 * Where to resume the inbox stream: the inbox page embeds the stream offset of the newest
 * notification it rendered, so one created between rendering and subscribing is replayed.
 * Elsewhere there is no starting point; the client then resumes from the first live event.
 */
function since() {
  const el = document.getElementById("notifications-last-offset");
  const value = el ? JSON.parse(el.textContent) : null;
  return Number.isInteger(value) && value >= 0 ? value : undefined;
}

/**
 * Listen to the signed-in user's inbox stream.
 *
 * @param {(frame: object) => void} listener called with each event frame of `user:<id>`.
 * @returns {() => void} removes the listener.
 */
export function subscribeInbox(listener) {
  if (userId === null) return () => {};
  return getClient().subscribe(`user:${userId}`, listener, {
    since: since(),
    onError(error) {
      console.warn(`notifications: ${error.code}: ${error.detail}`);
    },
  });
}

/**
 * A notification's `url` if it is a path on this site (`/shop/item/3/`), else null: only
 * same-site paths become links, never `javascript:` or another host.
 *
 * @param {unknown} url
 * @returns {string | null}
 */
export function linkTarget(url) {
  return typeof url === "string" && url.startsWith("/") && !url.startsWith("//") ? url : null;
}

function setUnread(unread) {
  if (!count || !Number.isInteger(unread)) return;
  count.textContent = String(unread);
  count.dataset.count = String(unread);
}

function showToast(notification) {
  if (!toasts) return;
  const toast = document.createElement("div");
  toast.className = "toast";
  toast.setAttribute("role", "status");
  const url = linkTarget(notification.url);
  const title = document.createElement(url ? "a" : "strong");
  title.className = "toast-title";
  if (url) title.href = url;
  title.textContent = notification.title ?? "";
  toast.append(title);
  if (notification.body) {
    const body = document.createElement("p");
    body.className = "toast-body";
    body.textContent = notification.body;
    toast.append(body);
  }
  const dismiss = () => toast.remove();
  toast.addEventListener("click", dismiss);
  setTimeout(dismiss, TOAST_MS);
  toasts.append(toast);
  // A burst (say, a replay after a reconnect) shows only the newest few.
  while (toasts.children.length > MAX_TOASTS) toasts.firstElementChild.remove();
}

subscribeInbox((frame) => {
  switch (frame.event) {
    case "notification.unread":
      setUnread(frame.data.unread);
      break;
    case "notification.created":
      // Live events carry the new count; replayed ones do not (the snapshot counted them).
      setUnread(frame.data.unread);
      showToast(frame.data);
      break;
    default:
      break;
  }
});
