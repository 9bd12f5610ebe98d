// The composer of a room page: a textarea that grows with its text (up to a cap, then it
// scrolls), Enter sends, Shift+Enter breaks the line; my messages on their way shown from the
// client's outbox ("sending…", or "Not sent · Retry · Discard"); the typing signal.
//
// Exactly once: the composer empties at once and the message shows as pending; the client's
// outbox sends it (again after every reconnect, with the same client_id, which the server
// stores once) until the server answers. Nothing waits for the network here, so text typed
// right after Enter is never mixed with, or cleared along with, the message before it.

import { setTime } from "../townsquare/time.js";
import { span } from "./timeline.js";

/** Least time between two `typing` frames from this page, in ms, while one keeps typing. */
const TYPING_SEND_MS = 2500;
/** The server's least interval between two `typing` of one socket (TYPING_MIN_INTERVAL,
 * 2 s), with a margin for network jitter. */
const SERVER_TYPING_MS = 2100;

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

function newClientId() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  // crypto.randomUUID exists only in secure contexts (https, localhost).
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export class Composer {
  /**
   * @param {object} parts
   * @param {import("../realtime/client.js").RealtimeClient} parts.client
   * @param {import("./timeline.js").Timeline} parts.timeline
   * @param {import("./pane.js").MessagePane} parts.pane
   * @param {HTMLFormElement} parts.form
   * @param {HTMLTextAreaElement} parts.input
   * @param {number} parts.roomId
   * @param {string} parts.stream
   * @param {() => boolean} parts.live   whether the room's stream is subscribed (typing)
   */
  constructor({ client, timeline, pane, form, input, roomId, stream, live }) {
    Object.assign(this, { client, timeline, pane, form, input, roomId, stream, live });
    this.ended = false;
    /** client_id → the <li> of a message of mine not yet in the list as stored: pending (in
     * the outbox), failed, or acknowledged but its `chat.message` event not yet here. The
     * event replaces it (matched by client_id), so a message never shows twice whatever
     * order the ack and the event come in. These items stay below the stored messages. */
    this.local = new Map();
    this.lastTypingSent = -Infinity;
    this.typingRetry = null;

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    // Enter sends; Shift+Enter is a new line; Enter that ends an IME composition is neither.
    input.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || event.isComposing || event.shiftKey) return;
      event.preventDefault();
      form.requestSubmit();
    });
    input.addEventListener("input", () => {
      this.fit();
      this.typing();
    });
    this.fit();
  }

  /** Grow the textarea with its text; past its CSS max-height it scrolls. */
  fit() {
    const box = this.input;
    box.style.height = "auto";
    box.style.height = `${box.scrollHeight + box.offsetHeight - box.clientHeight}px`;
  }

  submit() {
    const text = this.input.value;
    if (this.ended || !text.trim()) return;
    this.input.value = "";
    this.fit();
    const clientId = newClientId();
    this.client.sendReliably(
      "chat.send",
      { room: this.roomId, text, client_id: clientId },
      { id: clientId },
    );
    // The next keystroke starts a new message: others hear about it at once.
    this.lastTypingSent = -Infinity;
    clearTimeout(this.typingRetry);
    this.input.focus();
  }

  /** Tell the room this user is typing: on input, at most once per TYPING_SEND_MS (and at
   * the first keystroke after a send), never for an empty composer, and only while the
   * room's stream is live on an open socket. The server drops a `typing` within its own
   * interval of the last one this socket sent (ack `sent: false`): then it is sent again
   * once that interval is over, if the composer still has text. */
  typing() {
    if (!this.live() || this.ended || this.client.state !== "open" || !this.input.value.trim()) {
      return;
    }
    const now = performance.now();
    if (now - this.lastTypingSent < TYPING_SEND_MS) return;
    this.lastTypingSent = now;
    clearTimeout(this.typingRetry);
    this.client
      .send("typing", { stream: this.stream })
      .then((ack) => {
        if (ack.sent !== false) {
          this.acceptedAt = now;
          return;
        }
        // Dropped by the server's per-socket interval (2 s): try once more after it.
        const wait = Math.max(0, SERVER_TYPING_MS - (performance.now() - (this.acceptedAt ?? 0)));
        this.typingRetry = setTimeout(() => {
          this.lastTypingSent = -Infinity;
          this.typing();
        }, wait);
      })
      .catch(() => {}); // a hint: an error or a dropped socket changes nothing
  }

  /** The room was taken away: nothing more can be sent. */
  end() {
    this.ended = true;
    this.input.disabled = true;
    this.form.querySelector("button[type=submit]").disabled = true;
  }

  // --- my messages on their way -------------------------------------------------------------

  /** The item of a message of mine from the outbox: the same markup as a stored message,
   * plus a status line ("sending…", or "Not sent · Retry · Discard"). */
  showLocal(entry) {
    let li = this.local.get(entry.id);
    if (!li) {
      const wasAtBottom = this.pane.nearBottom();
      li = document.createElement("li");
      li.dataset.clientId = entry.id;
      if (this.timeline.me.id !== null) li.dataset.authorId = String(this.timeline.me.id);
      const time = document.createElement("time");
      setTime(time, new Date());
      li.append(
        span("author", this.timeline.me.username),
        " ",
        time,
        " ",
        span("text", entry.payload.text),
        span("status", ""),
      );
      this.local.set(entry.id, li);
      this.timeline.list.append(li);
      this.pane.arrived(li, { mine: true, wasAtBottom });
    }
    const failed = entry.state === "failed";
    li.className = `message mine local ${failed ? "failed" : "pending"}`;
    const status = li.querySelector(".status");
    if (failed) {
      status.replaceChildren(
        "Not sent · ",
        controlButton("Retry", () => this.client.retry(entry.id)),
        " · ",
        controlButton("Discard", () => this.client.discard(entry.id)),
        span("reason", ` (${failureText(entry.error)})`),
      );
    } else {
      status.replaceChildren("sending…");
    }
    this.timeline.layout();
  }

  /** The server has the message: drop the item if the stored one is shown already, else
   * keep it, plain, until its `chat.message` event replaces it. */
  acked(entry) {
    const li = this.local.get(entry.id);
    if (!li) return;
    if (entry.ack && this.timeline.seen.has(entry.ack.offset)) {
      this.removeLocal(entry.id);
      return;
    }
    li.className = "message mine local sent";
    li.querySelector(".status")?.remove();
  }

  removeLocal(clientId) {
    const li = this.local.get(clientId);
    if (!li) return;
    li.remove();
    this.local.delete(clientId);
  }

  /** An outbox change (RealtimeClient.onOutbox). */
  outbox(entry) {
    if (entry.type !== "chat.send" || entry.payload.room !== this.roomId) return;
    switch (entry.state) {
      case "pending":
      case "failed":
        this.showLocal(entry);
        break;
      case "acked":
        this.acked(entry);
        break;
      default: // discarded
        this.removeLocal(entry.id);
        break;
    }
  }

  /** My messages still in the outbox (left pending by the page before a reload): shown
   * again as pending or failed, unless the history shows them stored already. */
  restore() {
    for (const entry of this.client.outboxEntries()) {
      const stored = entry.id
        ? this.timeline.list.querySelector(`li.mine[data-client-id="${CSS.escape(entry.id)}"]`)
        : null;
      if (stored && entry.type === "chat.send" && entry.payload.room === this.roomId) {
        this.client.settle(entry.id);
      } else {
        this.outbox(entry);
      }
    }
    this.client.onOutbox((entry) => this.outbox(entry));
  }
}
