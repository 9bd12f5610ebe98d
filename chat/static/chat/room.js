// The room page: live messages, members, presence (who is online, who is typing) over the
// shared RealtimeClient, and the composer.
// Data comes from json_script blocks in chat/room.html (the CSP allows no inline code).
// Every user-supplied string is written with textContent, never as HTML.

import { getClient } from "../realtime/shared.js";

const readJSON = (id) => JSON.parse(document.getElementById(id).textContent);

const roomId = readJSON("room-id");
const stream = readJSON("room-stream");
const lastOffset = readJSON("last-offset");
const me = readJSON("current-user");
// base.html embeds the signed-in user's id; the room page is for signed-in users only.
const myId = document.getElementById("current-user-id") ? readJSON("current-user-id") : null;

/** How long "bob is typing…" stays after bob's last `presence.typing`, in ms. */
const TYPING_SHOWN_MS = 4000;
/** Least time between two `typing` frames from this page, in ms. The server drops extras
 * within 2 s per socket; the margin keeps network jitter from getting one dropped. */
const TYPING_SEND_MS = 2500;

const messages = document.getElementById("messages");
const members = document.getElementById("members");
const memberCount = document.getElementById("member-count");
const onlineCount = document.getElementById("online-count");
const typingLine = document.getElementById("typing");
const notice = document.getElementById("room-notice");
const composer = document.getElementById("composer");
const input = document.getElementById("composer-text");
const sendButton = document.getElementById("composer-send");
const errorBox = document.getElementById("composer-error");

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

/** Offsets of the messages on the page, to skip any that arrive again. */
const seen = new Set(
  [...messages.querySelectorAll("li.message")].map((li) => Number(li.dataset.offset)),
);

/** client_id → text of messages sent whose ack was lost with the connection. */
const unconfirmed = new Map();

// --- rendering ------------------------------------------------------------------------------

function showTime(el) {
  const when = new Date(el.dateTime);
  if (!Number.isNaN(when.getTime())) {
    el.textContent = timeFormat.format(when);
    el.title = when.toLocaleString();
  }
}

function span(className, text) {
  const el = document.createElement("span");
  el.className = className;
  el.textContent = text;
  return el;
}

/** The same markup as the server-rendered history in chat/room.html. */
function messageElement(data) {
  const li = document.createElement("li");
  li.className = data.author.username === me ? "message mine" : "message";
  li.dataset.offset = String(data.offset);
  li.dataset.id = String(data.id);
  const time = document.createElement("time");
  time.dateTime = data.created_at;
  showTime(time);
  li.append(span("author", data.author.username), " ", time, " ", span("text", data.text));
  return li;
}

function nearBottom() {
  return messages.scrollHeight - messages.scrollTop - messages.clientHeight < 120;
}

function scrollToNewest() {
  messages.scrollTop = messages.scrollHeight;
}

function addMessage(data) {
  if (seen.has(data.offset)) return;
  seen.add(data.offset);
  const follow = nearBottom() || data.author.username === me;
  // Events come in offset order; walk back just in case one does not.
  let before = messages.lastElementChild;
  while (before && Number(before.dataset.offset) > data.offset) {
    before = before.previousElementSibling;
  }
  const li = messageElement(data);
  if (before) before.after(li);
  else messages.prepend(li);
  if (follow) scrollToNewest();

  if (unconfirmed.has(data.client_id)) {
    // A send whose ack was lost did reach the server after all.
    if (input.value === unconfirmed.get(data.client_id)) input.value = "";
    unconfirmed.delete(data.client_id);
    if (unconfirmed.size === 0) showError("");
  }
}

// --- members and presence -------------------------------------------------------------------
//
// The list shows the room's members and, in public rooms, anyone else who is in the room
// right now. Members come from `chat.members` (and its join/leave updates), who is online
// from `presence.*`. While presence is not known (before the first snapshot, or while the
// socket is down) nobody is shown as online or dimmed.

/** id → {id, username}: the room's members, as rendered by the server at first. */
const roomMembers = new Map(
  [...members.querySelectorAll("li[data-user-id]")].map((li) => {
    const id = Number(li.dataset.userId);
    return [id, { id, username: li.dataset.username ?? li.textContent }];
  }),
);

/** @type {Map<number, {id: number, username: string}> | null} who is online; null: unknown. */
let online = null;

const byUsername = (a, b) => (a.username < b.username ? -1 : a.username > b.username ? 1 : 0);

function personElement(user) {
  const li = document.createElement("li");
  const isMember = roomMembers.has(user.id);
  const isOnline = online !== null && online.has(user.id);
  li.dataset.userId = String(user.id);
  li.dataset.username = user.username;
  li.textContent = user.username;
  li.classList.add(isMember ? "member" : "guest");
  if (myId !== null ? user.id === myId : user.username === me) li.classList.add("me");
  if (isOnline) li.classList.add("online");
  if (online !== null) {
    li.title = isOnline ? (isMember ? "online" : "online, not a member") : "offline";
  }
  return li;
}

function renderPeople() {
  const people = new Map(roomMembers);
  if (online !== null) {
    for (const [id, user] of online) if (!people.has(id)) people.set(id, user);
  }
  members.replaceChildren(...[...people.values()].sort(byUsername).map(personElement));
  members.classList.toggle("presence-known", online !== null);
  memberCount.textContent = String(roomMembers.size);
  onlineCount.hidden = online === null;
  onlineCount.textContent = online === null ? "" : `· ${online.size} online`;
}

function setMembers(list) {
  roomMembers.clear();
  for (const user of list) roomMembers.set(user.id, user);
  renderPeople();
}

function addMember(user) {
  roomMembers.set(user.id, user);
  renderPeople();
}

function removeMember(user) {
  roomMembers.delete(user.id);
  renderPeople();
}

function setOnline(users) {
  online = new Map(users.map((user) => [user.id, user]));
  renderPeople();
}

function userJoined(user) {
  if (online === null) return; // the snapshot that follows every subscribe will say
  online.set(user.id, user);
  renderPeople();
}

function userLeft(user) {
  stopTyping(user.id);
  if (online === null) return;
  online.delete(user.id);
  renderPeople();
}

/** Presence is not known (socket down, stream ended): no dots, nobody typing. */
function forgetPresence() {
  online = null;
  renderPeople();
  clearTyping();
}

// --- typing ---------------------------------------------------------------------------------

/** id → {username, timer}: who is typing, in the order they started. */
const typers = new Map();

function typingText(names) {
  switch (names.length) {
    case 0:
      return "";
    case 1:
      return `${names[0]} is typing…`;
    case 2:
      return `${names[0]} and ${names[1]} are typing…`;
    case 3:
      return `${names[0]}, ${names[1]} and ${names[2]} are typing…`;
    default:
      return `${names[0]}, ${names[1]} and ${names.length - 2} others are typing…`;
  }
}

function renderTyping() {
  const text = typingText([...typers.values()].map((entry) => entry.username));
  typingLine.textContent = text;
  typingLine.classList.toggle("active", text !== "");
}

function startTyping(user) {
  if (user.id === myId) return; // another tab of mine
  const entry = typers.get(user.id);
  if (entry) clearTimeout(entry.timer);
  const timer = setTimeout(() => stopTyping(user.id), TYPING_SHOWN_MS);
  typers.set(user.id, { username: user.username, timer });
  renderTyping();
}

function stopTyping(userId) {
  const entry = typers.get(userId);
  if (!entry) return;
  clearTimeout(entry.timer);
  typers.delete(userId);
  renderTyping();
}

function clearTyping() {
  for (const entry of typers.values()) clearTimeout(entry.timer);
  typers.clear();
  renderTyping();
}

function showError(text) {
  errorBox.textContent = text;
  errorBox.hidden = !text;
}

// --- the connection -------------------------------------------------------------------------

function onEvent(frame) {
  const { data } = frame;
  switch (frame.event) {
    case "chat.message":
      addMessage(data);
      // Their message is here: they are done typing it.
      stopTyping(data.author.id);
      break;
    case "chat.members":
      setMembers(data.members);
      break;
    case "chat.member_joined":
      addMember(data.user);
      break;
    case "chat.member_left":
      removeMember(data.user);
      break;
    case "presence.state":
      setOnline(data.users);
      break;
    case "presence.join":
      userJoined(data.user);
      break;
    case "presence.leave":
      userLeft(data.user);
      break;
    case "presence.typing":
      startTyping(data.user);
      break;
    default:
      break;
  }
}

// The page's one socket, shared with the bell; it also drives the header badge.
const client = getClient();

/** The room's stream is subscribed on the current socket (its ack arrived). */
let subscribed = false;
/** The server ended the subscription (`unsubscribed`) or refused it: the page is read-only. */
let ended = false;

/** The server took the room away (e.g. removed from a private room): say so, stop writing.
 * RealtimeClient has dropped the stream already, so a reconnect does not subscribe again. */
function endRoom(detail) {
  ended = true;
  subscribed = false;
  notice.textContent = detail || "You can no longer follow this room.";
  notice.hidden = false;
  input.disabled = true;
  sendButton.disabled = true;
  showError("");
  forgetPresence();
}

client.onState((state) => {
  if (state !== "open") {
    // Until the next snapshot, who is online (and typing) is unknown.
    subscribed = false;
    if (online !== null || typers.size > 0) forgetPresence();
  }
  if (state === "closed" && client.closeCode !== 1000) {
    showError("The connection was closed by the server. Reload the page to sign in again.");
  }
});
client.subscribe(stream, onEvent, {
  since: lastOffset,
  onAck(ack) {
    // More was missed than the server replays: the page is stale, so load it afresh.
    if (ack.truncated) location.reload();
    subscribed = true;
  },
  // Either way the client has dropped the stream: nothing more arrives, nothing can be sent.
  onError(error) {
    if (error.code === "unsubscribed") endRoom(error.detail);
    else endRoom(`This room is no longer available: ${error.detail}`);
  },
});

// --- the composer ---------------------------------------------------------------------------

function newClientId() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  // crypto.randomUUID exists only in secure contexts (https, localhost).
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function describe(error) {
  switch (error?.code) {
    case "not_connected":
      return "Not connected right now, so nothing was sent. Try again once the badge says live.";
    case "disconnected":
      return "The connection dropped before the server answered; the message may not have been sent.";
    case undefined:
      return "Something went wrong; the message was not sent.";
    default:
      return error.detail || error.code;
  }
}

let sending = false;

composer.addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = input.value;
  if (sending || ended || !text.trim()) return;
  sending = true;
  sendButton.disabled = true;
  showError("");
  const clientId = newClientId();
  try {
    await client.send("chat.send", { room: roomId, text, client_id: clientId });
    if (input.value === text) input.value = "";
  } catch (error) {
    if (error?.code === "disconnected") unconfirmed.set(clientId, text);
    showError(describe(error));
  } finally {
    sending = false;
    sendButton.disabled = ended;
    if (!ended) input.focus();
  }
});

// Tell the room this user is typing: on input, at most once per TYPING_SEND_MS, never for
// an empty composer, and only while the room's stream is live on an open socket.
let lastTypingSent = -Infinity;

input.addEventListener("input", () => {
  if (!subscribed || ended || client.state !== "open" || !input.value.trim()) return;
  const now = performance.now();
  if (now - lastTypingSent < TYPING_SEND_MS) return;
  lastTypingSent = now;
  // A hint: an error or a dropped socket changes nothing.
  client.send("typing", { stream }).catch(() => {});
});

// --- first paint ----------------------------------------------------------------------------

messages.querySelectorAll("time").forEach(showTime);
scrollToNewest();
