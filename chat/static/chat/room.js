// The room page: the message list (timeline.js) in its scrolling pane (pane.js), the composer
// (composer.js), edit / delete / reactions (actions.js), members and presence (people.js),
// all over the page's shared RealtimeClient, and the read cursor (`chat.read`).
// Data comes from json_script blocks in chat/room.html (the CSP allows no inline code).

import { getClient } from "../realtime/shared.js";
import { messageActions } from "./actions.js";
import { Composer } from "./composer.js";
import { MessagePane } from "./pane.js";
import { memberDrawer, People } from "./people.js";
import { Timeline } from "./timeline.js";

const readJSON = (id) => JSON.parse(document.getElementById(id).textContent);
const byId = (id) => document.getElementById(id);

const roomId = readJSON("room-id");
const stream = readJSON("room-stream");
const lastOffset = readJSON("last-offset");
/** {older_url, can_moderate, first_unread, last_read} (chat/views.py). */
const page = readJSON("room-page");
const me = {
  username: readJSON("current-user"),
  // base.html embeds the signed-in user's id; the room page is for signed-in users only.
  id: byId("current-user-id") ? readJSON("current-user-id") : null,
};

/** Least time between two `chat.read` frames, in ms. */
const READ_EVERY_MS = 1000;

const errorBox = byId("composer-error");
const composerStatus = byId("composer-status");
const notice = byId("room-notice");

function showError(text) {
  errorBox.textContent = text;
  errorBox.hidden = !text;
}

// The page's one socket, shared with the bell; it also drives the header badge.
const client = getClient();

const timeline = new Timeline(byId("message-list"), me, { canModerate: page.can_moderate });
timeline.firstUnread = page.first_unread ?? null;
timeline.layout();
const pane = new MessagePane({
  scroller: byId("messages"),
  timeline,
  jump: byId("jump-latest"),
  jumpCount: byId("jump-count"),
  older: byId("load-older"),
  start: byId("history-start"),
  olderUrl: page.older_url,
});
const people = new People({
  list: byId("members"),
  memberCount: byId("member-count"),
  onlineCount: byId("online-count"),
  typingLine: byId("typing"),
  me,
});
memberDrawer({ panel: byId("members-panel"), open: byId("members-open"), close: byId("members-close") });

/** The room's stream is subscribed on the current socket (its ack arrived). */
let subscribed = false;
/** The server ended the subscription (`unsubscribed`) or refused it: the page is read-only. */
let ended = false;

const composer = new Composer({
  client,
  timeline,
  pane,
  form: byId("composer"),
  input: byId("composer-text"),
  roomId,
  stream,
  live: () => subscribed,
});
messageActions({ client, timeline, showError });

// --- reading: the read cursor and the tab title ------------------------------------------------

/** The newest offset delivered on the room's stream (messages and changes). */
let newestOffset = lastOffset;
/** What the server has as my read cursor (as far as this page knows). */
let lastRead = page.last_read ?? 0;
let readTimer = null;
let lastReadSentAt = -Infinity;
/** Messages of others that arrived while the tab was hidden or the bottom out of view. */
let unreadHere = 0;
const baseTitle = document.title;

function showTitle() {
  document.title = unreadHere > 0 ? `(${unreadHere}) ${baseTitle}` : baseTitle;
}

/** Send `chat.read` with the newest offset when the tab is visible and the bottom in view,
 * at most once per READ_EVERY_MS. */
function markRead() {
  if (document.visibilityState !== "visible" || !pane.nearBottom()) return;
  unreadHere = 0;
  showTitle();
  if (!subscribed || ended || newestOffset <= lastRead || readTimer !== null) return;
  const wait = lastReadSentAt + READ_EVERY_MS - performance.now();
  readTimer = setTimeout(
    () => {
      readTimer = null;
      if (!subscribed || newestOffset <= lastRead) return;
      lastReadSentAt = performance.now();
      const offset = newestOffset;
      client
        .send("chat.read", { room: roomId, offset })
        .then((ack) => {
          lastRead = Math.max(lastRead, ack.last_read ?? offset);
        })
        .catch(() => {}); // tried again at the next scroll, message or visibility change
    },
    Math.max(0, wait),
  );
}

pane.atBottom = markRead;
document.addEventListener("visibilitychange", markRead);

// --- events -------------------------------------------------------------------------------

/** Changes to messages not on the page, kept while older messages are loading: the page
 * that comes back may be older than them. */
const orphans = [];

function applyChange(frame) {
  const { data } = frame;
  const shown =
    frame.event === "chat.message_edited"
      ? timeline.edited(data)
      : frame.event === "chat.message_deleted"
        ? timeline.deleted(data)
        : timeline.reactions(data);
  if (!shown && pane.loading) orphans.push(frame);
}
pane.afterPrepend = () => orphans.splice(0).forEach(applyChange);

function addMessage(data) {
  const mine = timeline.isMine(data.author);
  if (data.client_id && mine) {
    // My message is stored: its pending item goes, and the outbox need not send it again.
    composer.removeLocal(data.client_id);
    client.settle(data.client_id);
  }
  const wasAtBottom = pane.nearBottom();
  const li = timeline.insert(data);
  if (!li) return;
  pane.arrived(li, { mine, wasAtBottom });
  if (!mine && !data.deleted && (document.visibilityState !== "visible" || !pane.nearBottom())) {
    unreadHere += 1;
    showTitle();
  }
  markRead();
}

function onEvent(frame) {
  if (Number.isInteger(frame.offset)) newestOffset = Math.max(newestOffset, frame.offset);
  const { data } = frame;
  switch (frame.event) {
    case "chat.message":
      addMessage(data);
      // Their message is here: they are done typing it.
      people.stopTyping(data.author.id);
      break;
    case "chat.message_edited":
    case "chat.message_deleted":
    case "chat.reactions":
      applyChange(frame);
      markRead();
      break;
    case "chat.members":
      people.setMembers(data.members);
      break;
    case "chat.member_joined":
      people.addMember(data.user);
      break;
    case "chat.member_left":
      people.removeMember(data.user);
      break;
    case "presence.state":
      people.setOnline(data.users);
      break;
    case "presence.join":
      people.joined(data.user);
      break;
    case "presence.leave":
      people.left(data.user);
      break;
    case "presence.typing":
      people.startTyping(data.user);
      break;
    default:
      break;
  }
}

// --- the connection -------------------------------------------------------------------------

/** Say so when messages sent now will wait for the connection: Send is never silently grey.
 * (Not during the first attempt of a page load: that is over in a moment.) */
function showConnection(state) {
  const waiting = !ended && state === "reconnecting";
  composerStatus.textContent = waiting
    ? "Not connected right now: messages you send wait here and go out when the connection is back."
    : "";
  composerStatus.hidden = !waiting;
}

/** The server took the room away (e.g. removed from a private room): say so, stop writing.
 * RealtimeClient has dropped the stream already, so a reconnect does not subscribe again. */
function endRoom(detail) {
  ended = true;
  subscribed = false;
  notice.textContent = detail || "You can no longer follow this room.";
  notice.hidden = false;
  composer.end();
  showError("");
  showConnection(client.state);
  people.forget();
}

client.onState((state) => {
  if (state !== "open") {
    // Until the next snapshot, who is online (and typing) is unknown.
    subscribed = false;
    people.forget();
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
    markRead();
  },
  // Either way the client has dropped the stream: nothing more arrives, nothing can be sent.
  onError(error) {
    if (error.code === "unsubscribed") endRoom(error.detail);
    else endRoom(`This room is no longer available: ${error.detail}`);
  },
});

// --- first paint ----------------------------------------------------------------------------

composer.restore();
showConnection(client.state);
const divider = byId("unread-divider");
if (divider) pane.scrollToItem(divider);
else pane.scrollToNewest();
