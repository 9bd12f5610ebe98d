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
const composerStatus = document.getElementById("composer-status");

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

/** Offsets of the messages on the page, to skip any that arrive again. */
const seen = new Set(
  [...messages.querySelectorAll("li.message")].map((li) => Number(li.dataset.offset)),
);

/** client_id → the <li> of a message of mine not yet in the list as stored: pending (in the
 * client's outbox), failed, or acknowledged but its `chat.message` event not yet here. The
 * event replaces it (matched by client_id), so a message never shows twice whatever order
 * the ack and the event come in. These items stay below the stored messages. */
const localMessages = new Map();

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
  li.dataset.clientId = data.client_id ?? "";
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

const isMine = (author) => (myId !== null ? author.id === myId : author.username === me);

function addMessage(data) {
  if (data.client_id && isMine(data.author)) {
    // My message is stored: its pending item goes, and the outbox need not send it again.
    removeLocal(data.client_id);
    client.settle(data.client_id);
  }
  if (seen.has(data.offset)) return;
  seen.add(data.offset);
  const follow = nearBottom() || data.author.username === me;
  // Events come in offset order; walk back just in case one does not. Local (pending)
  // items stay at the end, below every stored message.
  let before = messages.lastElementChild;
  while (
    before &&
    (before.classList.contains("local") || Number(before.dataset.offset) > data.offset)
  ) {
    before = before.previousElementSibling;
  }
  const li = messageElement(data);
  if (before) before.after(li);
  else messages.prepend(li);
  if (follow) scrollToNewest();
}

// --- my messages on their way -----------------------------------------------------------------

/** Why a message was not sent, in a few words. */
function failureText(error) {
  switch (error?.code) {
    case "not_connected":
      return "no connection to the server";
    case "disconnected":
    case "timeout":
      return "the server did not answer";
    case undefined:
      return "something went wrong";
    default:
      return error.detail || error.code;
  }
}

function controlButton(label, onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "link-button";
  button.textContent = label;
  button.addEventListener("click", onClick);
  return button;
}

/** The item of a message of mine from the outbox: the same markup as a stored message, plus
 * a status line ("sending…", or "Not sent · Retry · Discard"). */
function showLocal(entry) {
  let li = localMessages.get(entry.id);
  if (!li) {
    li = document.createElement("li");
    li.dataset.clientId = entry.id;
    const time = document.createElement("time");
    time.dateTime = new Date().toISOString();
    showTime(time);
    li.append(span("author", me), " ", time, " ", span("text", entry.payload.text));
    li.append(span("status", ""));
    localMessages.set(entry.id, li);
    messages.append(li);
    scrollToNewest();
  }
  const failed = entry.state === "failed";
  li.className = `message mine local ${failed ? "failed" : "pending"}`;
  const status = li.querySelector(".status");
  if (failed) {
    const reason = failureText(entry.error);
    status.replaceChildren(
      "Not sent · ",
      controlButton("Retry", () => client.retry(entry.id)),
      " · ",
      controlButton("Discard", () => client.discard(entry.id)),
      span("reason", ` (${reason})`),
    );
  } else {
    status.replaceChildren("sending…");
  }
}

/** The server has the message: drop the item if the stored one is shown already, else keep
 * it, plain, until its `chat.message` event replaces it. */
function localAcked(entry) {
  const li = localMessages.get(entry.id);
  if (!li) return;
  if (entry.ack && seen.has(entry.ack.offset)) {
    removeLocal(entry.id);
    return;
  }
  li.className = "message mine local sent";
  li.querySelector(".status")?.remove();
}

function removeLocal(clientId) {
  const li = localMessages.get(clientId);
  if (!li) return;
  li.remove();
  localMessages.delete(clientId);
}

function onOutbox(entry) {
  if (entry.type !== "chat.send" || entry.payload.room !== roomId) return;
  switch (entry.state) {
    case "pending":
    case "failed":
      showLocal(entry);
      break;
    case "acked":
      localAcked(entry);
      break;
    default: // discarded
      removeLocal(entry.id);
      break;
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

/** Say so when messages sent now will wait for the connection: Send is never silently grey.
 * (Not during the first attempt of a page load: that is over in a moment.) */
function showConnection(state) {
  const waiting = !ended && state === "reconnecting";
  composerStatus.textContent = waiting
    ? "Not connected right now: messages you send wait here and go out when the connection is back."
    : "";
  composerStatus.hidden = !waiting;
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
  showConnection(client.state);
  forgetPresence();
}

client.onState((state) => {
  if (state !== "open") {
    // Until the next snapshot, who is online (and typing) is unknown.
    subscribed = false;
    if (online !== null || typers.size > 0) forgetPresence();
  } else if (!ended) {
    showError(""); // whatever went wrong before, the socket is live again
  }
  if (state === "closed" && client.closeCode !== 1000) {
    showError("The connection was closed by the server. Reload the page to sign in again.");
  }
  showConnection(state);
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

// The composer empties at once and the message shows as pending; the client's outbox sends
// it (again after every reconnect, with the same client_id, which the server stores once)
// until the server answers. Nothing waits for the network here, so text typed right after
// Enter is never mixed with, or cleared along with, the message before it.
composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value;
  if (ended || !text.trim()) return;
  input.value = "";
  const clientId = newClientId();
  client.sendReliably("chat.send", { room: roomId, text, client_id: clientId }, { id: clientId });
  input.focus();
});

// Enter sends; Shift+Enter never does (in a multi-line composer it is a new line), nor does
// Enter that ends an IME composition.
input.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || event.isComposing) return;
  if (event.shiftKey) {
    if (input.tagName !== "TEXTAREA") event.preventDefault(); // no implicit submission
    return;
  }
  event.preventDefault();
  composer.requestSubmit();
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
// My messages still in the outbox (left pending by the page before a reload): shown again as
// pending or failed, unless the history shows them stored already.
for (const entry of client.outboxEntries()) {
  const stored = entry.id
    ? messages.querySelector(`li.mine[data-client-id="${CSS.escape(entry.id)}"]`)
    : null;
  if (stored && entry.type === "chat.send" && entry.payload.room === roomId) {
    client.settle(entry.id);
  } else {
    onOutbox(entry);
  }
}
client.onOutbox(onOutbox);
showConnection(client.state);
scrollToNewest();
