// The room page: live messages and members over the shared RealtimeClient, and the composer.
// Data comes from json_script blocks in chat/room.html (the CSP allows no inline code).
// Every user-supplied string is written with textContent, never as HTML.

import { getClient } from "../realtime/shared.js";

const readJSON = (id) => JSON.parse(document.getElementById(id).textContent);

const roomId = readJSON("room-id");
const stream = readJSON("room-stream");
const lastOffset = readJSON("last-offset");
const me = readJSON("current-user");

const messages = document.getElementById("messages");
const members = document.getElementById("members");
const memberCount = document.getElementById("member-count");
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

function memberElement(user) {
  const li = document.createElement("li");
  li.dataset.userId = String(user.id);
  li.textContent = user.username;
  if (user.username === me) li.className = "me";
  return li;
}

function updateMemberCount() {
  memberCount.textContent = String(members.children.length);
}

function setMembers(list) {
  members.replaceChildren(...list.map(memberElement));
  updateMemberCount();
}

function addMember(user) {
  if (members.querySelector(`li[data-user-id="${Number(user.id)}"]`)) return;
  const li = memberElement(user);
  const after = [...members.children].find((el) => el.textContent > user.username);
  members.insertBefore(li, after ?? null);
  updateMemberCount();
}

function removeMember(user) {
  members.querySelector(`li[data-user-id="${Number(user.id)}"]`)?.remove();
  updateMemberCount();
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
    default:
      break;
  }
}

// The page's one socket, shared with the bell; it also drives the header badge.
const client = getClient();

client.onState((state) => {
  if (state === "closed" && client.closeCode !== 1000) {
    showError("The connection was closed by the server. Reload the page to sign in again.");
  }
});
client.subscribe(stream, onEvent, {
  since: lastOffset,
  onAck(ack) {
    // More was missed than the server replays: the page is stale, so load it afresh.
    if (ack.truncated) location.reload();
  },
  onError(error) {
    showError(`This room is no longer available: ${error.detail}`);
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
  if (sending || !text.trim()) return;
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
    sendButton.disabled = false;
    input.focus();
  }
});

// --- first paint ----------------------------------------------------------------------------

messages.querySelectorAll("time").forEach(showTime);
scrollToNewest();
