// The room list: the "open a room by name" form, and for each joined room its unread count
// and newest message, live. The tab title shows the total unread ("(3) Rooms · Townsquare").
//
// Counts start from the server's (chat/views.py). New messages are not pushed per user (the
// hot path stays per room): the page subscribes to the rooms it lists and
// counts their `chat.message` events (not mine, not deleted), from the offset each was
// rendered at. When my read cursor moves
// anywhere (another tab, another device), `chat.unread {room, unread}` on my `user:<id>`
// stream sets the count to the server's.

import { subscribeInbox } from "../notifications/bell.js";
import { getClient } from "../realtime/shared.js";
import { setTime } from "../townsquare/time.js";

const form = document.getElementById("open-room");
const nameInput = document.getElementById("room-name");

// /chat/<name>/ opens the room of that name; for a new name it asks, and its button creates
// the room (a POST with the CSRF token).
form.addEventListener("submit", (event) => {
  event.preventDefault();
  const name = nameInput.value.trim();
  if (!name) return;
  if (name.includes("/")) {
    nameInput.setCustomValidity("A room name cannot contain “/”.");
    nameInput.reportValidity();
    return;
  }
  location.assign(`/chat/${encodeURIComponent(name)}/`);
});
nameInput.addEventListener("input", () => nameInput.setCustomValidity(""));

// The header badge tells whether live updates can reach this browser (the shared client
// drives it; the bell uses the same socket).
const client = getClient();

const myIdEl = document.getElementById("current-user-id");
const myId = myIdEl ? JSON.parse(myIdEl.textContent) : null;
const baseTitle = document.title;

/** room id → its <li> on the list. */
const rooms = new Map(
  [...document.querySelectorAll("#your-rooms li[data-room-id]")].map((li) => [
    Number(li.dataset.roomId),
    li,
  ]),
);

function showTitle() {
  let total = 0;
  for (const li of rooms.values()) total += Number(li.dataset.unread) || 0;
  document.title = total > 0 ? `(${total}) ${baseTitle}` : baseTitle;
}

function setUnread(li, count) {
  const n = Math.max(0, count);
  li.dataset.unread = String(n);
  li.classList.toggle("has-unread", n > 0);
  const badge = li.querySelector(".unread-count");
  badge.firstChild.textContent = String(n);
  badge.hidden = n === 0;
  showTitle();
}

function span(className, text) {
  const el = document.createElement("span");
  el.className = className;
  el.textContent = text;
  return el;
}

/** The newest message line, as chat/room_list.html renders it. */
function showPreview(li, data) {
  const preview = li.querySelector(".preview");
  const time = document.createElement("time");
  time.dataset.format = "datetime";
  setTime(time, data.created_at);
  const text = data.deleted
    ? span("preview-text tombstone", "message deleted")
    : span("preview-text", data.text);
  preview.replaceChildren(span("preview-author", data.author.username), ": ", text, " ", time);
  preview.dataset.id = String(data.id);
  preview.hidden = false;
}

/** Follow a room from the offset the page was rendered at: nothing sent meanwhile is
 * missed, and after a reconnect the client replays what came while it was away. */
function follow(roomId, li) {
  const since = Number(li.dataset.lastOffset);
  const options = Number.isInteger(since) && since >= 0 ? { since } : {};
  client.subscribe(li.dataset.stream, (frame) => {
    const { data } = frame;
    if (frame.event === "chat.message") {
      showPreview(li, data);
      if (data.author.id !== myId && !data.deleted) {
        setUnread(li, Number(li.dataset.unread) + 1);
      }
    } else if (frame.event === "chat.message_deleted") {
      const preview = li.querySelector(".preview");
      if (preview.dataset.id === String(data.id)) {
        preview.querySelector(".preview-text").replaceWith(
          span("preview-text tombstone", "message deleted"),
        );
      }
    } else if (frame.event === "chat.message_edited") {
      const preview = li.querySelector(".preview");
      if (preview.dataset.id === String(data.id)) {
        preview.querySelector(".preview-text").textContent = data.text;
      }
    }
  }, options);
}

for (const [roomId, li] of rooms) follow(roomId, li);

// My read cursor moved somewhere: the server's count wins.
subscribeInbox((frame) => {
  if (frame.event !== "chat.unread") return;
  const li = rooms.get(frame.data.room);
  if (li) setUnread(li, frame.data.unread);
});

showTitle();
