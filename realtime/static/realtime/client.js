/**
 * Townsquare real-time client: one WebSocket to `/ws/`, many streams over it; where
 * WebSockets do not get through, the same frames over Server-Sent Events (`/sse/`).
 *
 * An ES module with no dependencies and no build step. The wire protocol is documented in
 * realtime/protocol.py (and docs/protocol.md); every frame is one JSON object per text
 * message (over SSE: per `data:` record from the server, per POST from the client).
 *
 * Client → server frames sent by this module:
 *   {"type": "subscribe", "stream": string, "since"?: int, "ref": int}
 *   {"type": "unsubscribe", "stream": string, "ref": int}
 *   {"type": "ping", "ref": int}
 *   actions, e.g. {"type": "chat.send", "room": int, "text": string, "client_id": string, "ref": int}
 *
 * Server → client frames it understands:
 *   {"type": "event", "stream": string, "offset"?: int, "event": string, "data": object}
 *   {"type": "ack", "ref": int, "for": string, ...fields}
 *   {"type": "error", "code": string, "detail": string, "ref"?: int, "stream"?: string}
 *   {"type": "pong", "ref"?: int, "time": number}   (server time, Unix seconds)
 *
 * @module realtime/client
 */

/**
 * @typedef {"connecting" | "open" | "reconnecting" | "closed"} ConnectionState
 *   `connecting`: the first connection attempt is under way. `open`: the socket is open and
 *   streams are (re)subscribed. `reconnecting`: the socket dropped (or was found dead, or the
 *   browser went offline); waiting for or making the next attempt (see `nextAttemptAt`).
 *   `closed`: final; no more attempts (after `close()`, or the server closed with 4001
 *   unauthenticated, 4002 signed out or 4003 forbidden — see `closeCode`).
 */

/**
 * @typedef {object} EventFrame
 * @property {"event"} type
 * @property {string} stream  the stream name, e.g. `chat:room:42`
 * @property {number} [offset] the event's sequence number on a durable stream
 * @property {string} event   the event name, e.g. `chat.message`
 * @property {*} data         the event's payload
 */

/**
 * @typedef {object} AckFrame
 * @property {"ack"} type
 * @property {number|string|null} ref  the `ref` of the frame it answers
 * @property {string} for              the `type` of the frame it answers
 * (plus fields that depend on `for`; a subscribe ack has `stream`, `durable`, `replayed`,
 * `truncated`; a `chat.send` ack has `client_id`, `id`, `offset`, `duplicate`)
 */

/**
 * @typedef {object} ErrorFrame
 * @property {"error"} type
 * @property {string} code    e.g. `invalid`, `forbidden`, `not_found`, `rate_limited`,
 *   `unavailable`, `unsubscribed`; this client adds `not_connected` (nothing was sent),
 *   `disconnected` (the socket closed before the answer came; the action may or may not
 *   have been carried out), `timeout` (no answer in time) and `discarded` (an outbox entry
 *   was given up by `discard()`)
 * @property {string} detail  a human-readable sentence
 * @property {number|string} [ref]
 * @property {string} [stream]
 */

/**
 * @typedef {object} OutboxEntry
 *   An action in the outbox (`sendReliably`), as listeners and `outboxEntries()` see it.
 * @property {string} id       the idempotency key (for `chat.send`, its `client_id`)
 * @property {string} type     the frame type, e.g. `chat.send`
 * @property {object} payload  the frame's other fields
 * @property {"pending" | "failed" | "acked" | "discarded"} state
 *   `pending`: queued or written, no answer yet; written again after every reconnect.
 *   `failed`: given up (a final error, or too many attempts); `retry()` or `discard()` it.
 *   `acked`: the server acknowledged it (or `settle()` was called); it has left the outbox.
 *   `discarded`: `discard()` removed it.
 * @property {ErrorFrame} [error] why it failed (state `failed`), or the last transient error
 * @property {AckFrame} [ack]     the server's ack (state `acked`, when one arrived)
 * @property {number} attempts    how many times it was written since queued (or retried)
 */

/**
 * Close codes after which reconnecting cannot help: 4001 unauthenticated, 4002 signed out
 * (the sign-in ended: logout, password change, account deactivated or deleted), 4003
 * forbidden.
 */
const FINAL_CLOSE_CODES = new Set([4001, 4002, 4003]);

/** Subscribe errors worth retrying on the same socket (the others end the subscription). */
const TRANSIENT_ERRORS = new Set(["unavailable", "rate_limited"]);

/** Outbox errors that keep an action queued: the server may take it on a later try. Any
 * other code (`invalid`, `forbidden`, `not_found`, `unauthenticated`, …) fails it at once. */
const TRANSIENT_ACTION_ERRORS = new Set([
  "unavailable",
  "rate_limited",
  "disconnected",
  "not_connected",
  "timeout",
]);

/** The connection counts as healthy (backoff resets) after staying open this long, in ms. */
const STABLE_AFTER_MS = 5000;

/** Outbox actions written but not yet answered, at most, on one socket. */
const OUTBOX_WINDOW = 16;

/** Outbox writes are paced by a token bucket (capacity, refill per second) well inside the
 * server's default frame limit (burst 40, 20 per second; docs/protocol.md, Limits), so a long
 * outbox sent after a reconnect is not dropped as `rate_limited` (an error without `ref`,
 * noticed only after `ackTimeout`, and out of order). */
const OUTBOX_BURST = 16;
const OUTBOX_PER_SECOND = 10;

/** `readyState` of an open WebSocket (and of an open `SseSocket`); a constant of its own, as
 * a page may replace or remove `WebSocket`. */
const OPEN = 1;
const CLOSED = 3;

/** How long a tab coming back to the foreground waits for any frame after its probe ping
 * before it calls an open socket dead, in ms. */
const PROBE_TIMEOUT_MS = 5000;

/** @returns {ErrorFrame} */
function localError(code, detail, ref) {
  const frame = { type: "error", code, detail };
  if (ref !== undefined) frame.ref = ref;
  return frame;
}

/** Call `fn(...args)`; report an exception without breaking the caller's loop. */
function safeCall(fn, ...args) {
  try {
    fn(...args);
  } catch (err) {
    if (typeof reportError === "function") reportError(err);
    else console.error(err);
  }
}

/** The default endpoint: `ws(s)://<page host>/ws/`, same origin, so the session cookie is sent. */
function defaultUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws/`;
}

/** The default SSE endpoint: `<page origin>/sse/`. */
function defaultSseUrl() {
  return `${location.origin}/sse/`;
}

/** The CSRF token for a session-signed POST: Django's `csrftoken` cookie, else the page's
 * `{% csrf_token %}` field or a `<meta name="csrf-token">`. */
function csrfToken() {
  const match = globalThis.document?.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  if (match) return decodeURIComponent(match[1]);
  const doc = globalThis.document;
  return (
    doc?.querySelector('input[name="csrfmiddlewaretoken"]')?.value ??
    doc?.querySelector('meta[name="csrf-token"]')?.content ??
    ""
  );
}

/**
 * The `/sse/` transport with a WebSocket's face (`readyState`, `send`, `close`, `onopen`,
 * `onmessage`, `onclose`), so `RealtimeClient` runs on it unchanged (docs/protocol.md,
 * "Server-Sent Events"). An `EventSource` carries the server's frames; `send` POSTs each
 * client frame, one after another so they arrive in order, to the URL the stream's
 * `connected` record names. The browser's own reconnect is not used: any failure closes
 * (code 1006) and `RealtimeClient` reconnects, subscribing again with `since`, as after a
 * WebSocket drop. The server's `event: close` record closes with its code.
 */
class SseSocket {
  /**
   * @param {string} url the `/sse/` URL.
   * @param {string | null} token a JWT (from a `bearer.<token>` protocol): `?token=` on
   *   the stream (an `EventSource` sends no headers), `Authorization` on the POSTs.
   */
  constructor(url, token) {
    this.readyState = 0;
    this.onopen = null;
    this.onmessage = null;
    this.onclose = null;
    this._token = token;
    this._postUrl = null;
    this._queue = Promise.resolve();
    const streamUrl = new URL(url, globalThis.location?.href);
    if (token) streamUrl.searchParams.set("token", token);
    this._source = new EventSource(streamUrl.href, { withCredentials: true });
    this._source.addEventListener("connected", (event) => {
      const hello = JSON.parse(event.data);
      this._postUrl = new URL(hello.post, streamUrl).href;
      this.readyState = OPEN;
      this.onopen?.();
    });
    this._source.onmessage = (event) => this.onmessage?.({ data: event.data });
    this._source.addEventListener("close", (event) => {
      let info = {};
      try {
        info = JSON.parse(event.data);
      } catch {
        // not ours; close as a failure
      }
      this._end(Number.isInteger(info.code) ? info.code : 1006, info.reason ?? "");
    });
    this._source.onerror = () => this._end(1006, "the event stream failed");
  }

  /** POST one frame after those already posted. A POST that fails, or is refused (even
   * after 5 tries over `429`), ends the connection: the client reconnects and sends again
   * what is unanswered (subscribes, the outbox), so no frame is lost without a trace. */
  send(text) {
    if (this.readyState !== OPEN) throw new Error("the event stream is not open");
    const headers = { "Content-Type": "application/json" };
    if (this._token) headers.Authorization = `Bearer ${this._token}`;
    else headers["X-CSRFToken"] = csrfToken();
    const post = async () => {
      for (let attempt = 0; attempt < 5 && this.readyState === OPEN; attempt += 1) {
        let response;
        try {
          response = await fetch(this._postUrl, {
            method: "POST",
            body: text,
            headers,
            credentials: "same-origin",
          });
        } catch {
          this._end(1006, "a POST failed");
          return;
        }
        if (response.status !== 429) {
          if (response.status === 401) this._end(4001, "the token was refused");
          else if (!response.ok) this._end(1006, `a POST was answered ${response.status}`);
          return;
        }
        // Frames wait on the server: wait as a socket's sender would, then again.
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
      if (this.readyState === OPEN) this._end(1006, "a POST was refused 429 five times");
    };
    this._queue = this._queue.then(post);
  }

  close(code = 1000, reason = "") {
    setTimeout(() => this._end(code, reason), 0);
    this._source.close();
    this.readyState = 2;
  }

  _end(code, reason) {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    this._source.close();
    this.onclose?.({ code, reason });
  }
}

/** The page's sessionStorage, or null where there is none (or it is blocked). */
function defaultStorage() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null; // a SecurityError where storage is disabled
  }
}

function randomId() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  // crypto.randomUUID exists only in secure contexts (https, localhost).
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * One WebSocket connection to Townsquare's `/ws/`, carrying any number of stream
 * subscriptions, that reconnects by itself and delivers actions exactly once.
 *
 * - Reconnects after every drop except close codes 4001, 4002 and 4003, waiting a random delay
 *   between 0 and min(`maxDelay`, `baseDelay` × 2^attempt) ms ("full jitter", as in AWS's
 *   "Exponential Backoff and Jitter"); the attempt counter resets once a connection has
 *   stayed open for 5 s. With the default cap of 4 s, a server that comes back is reached
 *   within 5 s (the delay plus a handshake). `nextAttemptAt` says when the next attempt is due; `retryNow()` makes it now.
 * - Follows the browser: on `offline` the socket is taken for dead at once (closed, state
 *   `reconnecting`); on `online`, and when the tab becomes visible with no socket, it
 *   reconnects at once; when the tab becomes visible with an open socket, it pings and
 *   calls the socket dead if nothing answers within 5 s.
 * - Sends `{"type":"ping"}` every `pingInterval` ms (5 s) while open; when nothing at all
 *   has arrived for `deadAfter` ms (15 s: a ping unanswered for 10 s), the socket is dead:
 *   it is closed and replaced.
 * - On every (re)connect it subscribes again to every stream. On durable streams it
 *   remembers the highest `offset` delivered and resubscribes with `since` = that offset,
 *   so the server replays what was missed; any event with an offset at or below the last
 *   one delivered is dropped, so a listener never sees an offset twice.
 * - Falls back to Server-Sent Events (`transport: "auto"`, the default): after
 *   `fallbackAfter` WebSocket attempts in a row that failed before carrying a frame (one
 *   that opens but answers nothing within `silentAfter` ms counts), it connects to `/sse/`
 *   instead, with the same frames, subscriptions and outbox; while there it tries a
 *   WebSocket every `wsRetryInterval` ms in the background and moves back once one answers.
 *   `transport` says which is in use.
 * - Keeps an outbox of actions sent with `sendReliably()`: each is written now if open and
 *   again after every reconnect (after the subscribes, in the order queued) until the server
 *   answers, so the server must treat a repeat as a no-op (e.g. `chat.send` with the same
 *   `client_id`, docs/protocol.md "Sending exactly once"). The outbox is kept in
 *   sessionStorage under `storageKey`, so pending actions survive a reload of the page.
 *
 * @example
 *   const client = new RealtimeClient();
 *   client.onState((state) => console.log(state));
 *   const stop = client.subscribe("chat:room:1", (frame) => console.log(frame.event, frame.data),
 *                                 { since: 120 });
 *   client.connect();
 *   client.onOutbox((entry) => console.log(entry.id, entry.state));
 *   client.sendReliably("chat.send", { room: 1, text: "hi", client_id: "c-1" }, { id: "c-1" });
 */
export class RealtimeClient {
  /**
   * Create a client; nothing connects until `connect()`.
   *
   * @param {object} [options]
   * @param {string} [options.url] WebSocket URL; default `ws(s)://<page host>/ws/`.
   * @param {string[]} [options.protocols] subprotocols to offer, e.g.
   *   `["townsquare", "bearer." + jwt]` to sign in with a token instead of the session.
   * @param {number} [options.baseDelay=500] reconnect backoff base, in milliseconds.
   * @param {number} [options.maxDelay=4000] reconnect backoff cap, in milliseconds.
   * @param {number} [options.pingInterval=5000] milliseconds between pings while open.
   * @param {number} [options.deadAfter=15000] an open socket on which nothing at all has
   *   arrived for this many milliseconds is dead.
   * @param {number} [options.ackTimeout=10000] an outbox action written on an open socket
   *   and not answered within this many milliseconds is written again (a `rate_limited`
   *   error carries no `ref`, so silence is the only sign of it).
   * @param {number} [options.maxAttempts=5] an outbox action written this many times
   *   without an answer fails.
   * @param {number} [options.maxPendingMs=60000] an outbox action still pending this many
   *   milliseconds after it was queued (or retried, or restored after a reload) fails.
   * @param {string | null} [options.storageKey=null] the sessionStorage key the outbox is
   *   kept under; null keeps it in memory only.
   * @param {Storage | null} [options.storage] where to keep it; default sessionStorage.
   * @param {"auto" | "websocket" | "sse"} [options.transport="auto"] `websocket` or `sse`
   *   only, or WebSockets with the SSE fallback.
   * @param {string} [options.sseUrl] the SSE endpoint; default `<page origin>/sse/`.
   * @param {number} [options.fallbackAfter=2] failed WebSocket attempts in a row before
   *   falling back to SSE.
   * @param {number} [options.silentAfter=4000] an open WebSocket that carried no frame
   *   (not even the pong to its first ping) after this many milliseconds failed.
   * @param {number} [options.wsRetryInterval=60000] while on SSE, milliseconds between
   *   background WebSocket tries.
   */
  constructor({
    url,
    protocols,
    baseDelay = 500,
    maxDelay = 4000,
    pingInterval = 5000,
    deadAfter = 15000,
    ackTimeout = 10000,
    maxAttempts = 5,
    maxPendingMs = 60000,
    storageKey = null,
    storage = defaultStorage(),
    transport = "auto",
    sseUrl,
    fallbackAfter = 2,
    silentAfter = 4000,
    wsRetryInterval = 60000,
  } = {}) {
    this.url = url ?? defaultUrl();
    this.sseUrl = sseUrl ?? defaultSseUrl();
    this.transportOption = transport;
    this.fallbackAfter = fallbackAfter;
    this.silentAfter = silentAfter;
    this.wsRetryInterval = wsRetryInterval;
    /** @type {"websocket" | "sse"} the transport of the current (or next) connection. */
    this.transport = transport === "sse" ? "sse" : "websocket";
    /** WebSocket attempts in a row that failed before carrying a frame. */
    this._wsFailures = 0;
    this._carried = false;
    this._silentTimer = null;
    this._wsProbe = null;
    this._wsProbeTimer = null;
    this.protocols = protocols;
    this.baseDelay = baseDelay;
    this.maxDelay = maxDelay;
    this.pingInterval = pingInterval;
    this.deadAfter = deadAfter;
    this.ackTimeout = ackTimeout;
    this.maxAttempts = maxAttempts;
    this.maxPendingMs = maxPendingMs;
    this.storageKey = storageKey;
    this.storage = storageKey ? storage : null;

    /** @type {WebSocket | null} the current socket (null between attempts). */
    this.socket = null;
    /** @type {ConnectionState} */
    this.state = "closed";
    /** @type {number | null} the close code of the last socket that closed. */
    this.closeCode = null;
    /** @type {number | null} when the next connection attempt is due (ms since the epoch,
     *  as `Date.now()`); null while connected, connecting, or closed for good. */
    this.nextAttemptAt = null;

    /** @type {Map<string, {listeners: Set<Function>, lastOffset: number|null, durable: boolean,
     *   options: object, retries: number, retryTimer: any}>} */
    this._streams = new Map();
    /** @type {Map<number, {resolve: Function, reject: Function}>} answers awaited, by ref. */
    this._pending = new Map();
    /** @type {Map<string, object>} the outbox, by id, in the order queued. */
    this._outbox = new Map();
    /** @type {Set<Function>} */
    this._stateListeners = new Set();
    /** @type {Set<Function>} */
    this._outboxListeners = new Set();
    this._ref = 0;
    this._attempt = 0;
    this._wanted = false;
    this._reconnectTimer = null;
    this._pingTimer = null;
    this._deadTimer = null;
    this._probeTimer = null;
    this._stableTimer = null;
    this._lastReceived = 0;
    /** Paces outbox writes (`_takeWriteToken`). */
    this._writeBucket = { tokens: OUTBOX_BURST, at: Date.now(), timer: null };
    /** @type {number | null} when the first ping since the last frame received was sent. */
    this._unansweredSince = null;
    this._onOnline = () => this._browserOnline();
    this._onOffline = () => this._browserOffline();
    this._onVisibility = () => this._visibilityChanged();

    this._restoreOutbox();
  }

  // --- public API -------------------------------------------------------------------------

  /**
   * Open the connection (state `connecting`), and keep it open until `close()`.
   * Calling it while already connected does nothing.
   *
   * @returns {this}
   */
  connect() {
    if (this._wanted) return this;
    this._wanted = true;
    this._attempt = 0;
    globalThis.addEventListener?.("online", this._onOnline);
    globalThis.addEventListener?.("offline", this._onOffline);
    globalThis.document?.addEventListener("visibilitychange", this._onVisibility);
    this._setState("connecting");
    this._open();
    return this;
  }

  /**
   * Close the connection for good (state `closed`): no reconnect; actions awaiting an
   * answer are rejected with a `disconnected` error frame (outbox actions stay pending and
   * are written on the next `connect()`). Subscriptions are kept, so a later `connect()`
   * resumes them.
   *
   * @returns {void}
   */
  close() {
    this._wanted = false;
    globalThis.removeEventListener?.("online", this._onOnline);
    globalThis.removeEventListener?.("offline", this._onOffline);
    globalThis.document?.removeEventListener("visibilitychange", this._onVisibility);
    clearTimeout(this._reconnectTimer);
    this._stopWsProbe();
    const socket = this.socket;
    this._closed(1000, "closed by the client");
    if (socket) socket.close(1000, "client closed");
  }

  /**
   * Make the next connection attempt now instead of waiting out the backoff delay (the
   * "Retry now" button). Does nothing while a socket is open or opening, or after `close()`
   * or a final close code.
   *
   * @returns {void}
   */
  retryNow() {
    if (!this._wanted || this.socket !== null) return;
    clearTimeout(this._reconnectTimer);
    this.nextAttemptAt = null;
    this._open();
  }

  /**
   * Listen to connection state changes.
   *
   * @param {(state: ConnectionState, client: RealtimeClient) => void} callback
   *   called with the new state on every change (not with the current one).
   * @returns {() => void} a function that removes the callback.
   */
  onState(callback) {
    this._stateListeners.add(callback);
    return () => this._stateListeners.delete(callback);
  }

  /**
   * Subscribe to a stream. Sends `{"type":"subscribe","stream":stream,"since"?:n,"ref":r}`
   * now if open, and again after every reconnect (with `since` = the last offset delivered).
   *
   * The server answers with an ack, then the stream's snapshot events (e.g. `chat.members`),
   * then the events after `since` (replay, oldest first), then live events. `onEvent` gets
   * each event frame; on durable streams frames whose `offset` is not above the last one
   * delivered are dropped.
   *
   * A second subscribe to a stream already subscribed adds a listener to the same
   * subscription (its `since` is then ignored).
   *
   * @param {string} stream the stream name, e.g. `chat:room:42`.
   * @param {(frame: EventFrame) => void} onEvent called with each event frame.
   * @param {object} [options]
   * @param {number} [options.since] a non-negative offset already seen: replay events with
   *   a greater offset first (durable streams only; the server refuses it on others).
   * @param {(ack: AckFrame) => void} [options.onAck] called with each subscribe ack
   *   (`{for: "subscribe", stream, durable, replayed, truncated}`); `truncated: true` means
   *   more events were missed than the server replays.
   * @param {(error: ErrorFrame) => void} [options.onError] called when the server refuses
   *   the subscription or ends it (`unsubscribed`); the subscription is then dropped.
   * @returns {() => void} a function that removes this listener (and unsubscribes when it
   *   was the last one).
   */
  subscribe(stream, onEvent, { since, onAck, onError } = {}) {
    let sub = this._streams.get(stream);
    if (!sub) {
      const lastOffset = Number.isInteger(since) && since >= 0 ? since : null;
      sub = {
        listeners: new Set(),
        lastOffset,
        durable: lastOffset !== null,
        options: { onAck, onError },
        retries: 0,
        retryTimer: null,
      };
      this._streams.set(stream, sub);
      sub.listeners.add(onEvent);
      if (this._isOpen()) this._sendSubscribe(stream, sub);
    } else {
      sub.listeners.add(onEvent);
    }
    return () => this._removeListener(stream, onEvent);
  }

  /**
   * Send an action or any other frame that the server acknowledges, once, e.g.
   * `send("chat.send", {room: 1, text: "hi", client_id: "…"})` sends
   * `{"type":"chat.send","room":1,"text":"hi","client_id":"…","ref":<generated>}`.
   * Nothing is retried: see `sendReliably()` for that.
   *
   * @param {string} type the frame type.
   * @param {object} [payload] the frame's other fields (`type` and `ref` are set here).
   * @returns {Promise<AckFrame>} resolved with the matching `ack` frame; rejected with the
   *   matching `error` frame, or with a local error frame: `not_connected` (the socket is
   *   not open; nothing was sent) or `disconnected` (it closed before the answer).
   */
  send(type, payload = {}) {
    const ref = this._nextRef();
    if (!this._isOpen()) {
      return Promise.reject(
        localError("not_connected", "Not connected to the server; nothing was sent.", ref),
      );
    }
    return this._request({ ...payload, type, ref });
  }

  /**
   * Send an action until the server answers it: queue it in the outbox, write it now if the
   * socket is open, and again after every reconnect (after the subscribes, in the order
   * queued) until an `ack` or a final error arrives. The server must treat a repeat of the
   * same action as a no-op (`chat.send` does, by `client_id`).
   *
   * Transient errors (`unavailable`, `rate_limited`, `disconnected`, `not_connected`, no
   * answer within `ackTimeout`) keep it pending; `unavailable` and `rate_limited` are
   * retried on the same socket after a backoff delay. It fails (state `failed`, kept until
   * `retry()` or `discard()`) on any other error (`invalid`, `forbidden`, `not_found`,
   * `unauthenticated`, …), after `maxAttempts` writes without an answer, or when still
   * pending `maxPendingMs` after it was queued. `onOutbox` listeners see every change.
   *
   * @param {string} type the frame type, e.g. `chat.send`.
   * @param {object} payload the frame's other fields (`type` and `ref` are set here).
   * @param {object} [options]
   * @param {string} [options.id] the idempotency key; default `payload.client_id`, else a
   *   random UUID. An id already in the outbox queues nothing new.
   * @returns {Promise<AckFrame>} settles once, with the first outcome: resolved with the
   *   ack (or undefined after `settle()` without one); rejected with the error frame when it
   *   fails or is discarded. Ignoring it is fine: its rejection is never reported unhandled.
   */
  sendReliably(type, payload, { id } = {}) {
    const key = String(id ?? payload?.client_id ?? randomId());
    const existing = this._outbox.get(key);
    if (existing) return existing.promise;
    const entry = this._newEntry(key, type, { ...payload }, "pending");
    this._outbox.set(key, entry);
    this._armExpiry(entry);
    this._outboxChanged(entry);
    this._flushOutbox();
    return entry.promise;
  }

  /**
   * Listen to outbox changes: every entry's queueing, failure, retry, ack and discard.
   *
   * @param {(entry: OutboxEntry) => void} callback called with a snapshot of the entry.
   * @returns {() => void} a function that removes the callback.
   */
  onOutbox(callback) {
    this._outboxListeners.add(callback);
    return () => this._outboxListeners.delete(callback);
  }

  /**
   * The outbox now: pending and failed entries, in the order queued (after a reload, those
   * restored from sessionStorage).
   *
   * @returns {OutboxEntry[]}
   */
  outboxEntries() {
    return [...this._outbox.values()].map((entry) => this._snapshot(entry));
  }

  /**
   * Put a failed entry back in the queue (attempts and the pending clock start again), or
   * write a pending one now if it is waiting for a retry delay. Unknown ids are ignored.
   *
   * @param {string} id
   * @returns {void}
   */
  retry(id) {
    const entry = this._outbox.get(id);
    if (!entry) return;
    clearTimeout(entry.retryTimer);
    entry.retryTimer = null;
    if (entry.state === "failed") {
      entry.state = "pending";
      entry.error = undefined;
      entry.attempts = 0;
      entry.queuedAt = Date.now();
      this._armExpiry(entry);
      this._outboxChanged(entry);
    }
    this._flushOutbox();
  }

  /**
   * Give an entry up: remove it from the outbox (it is never written again; a write already
   * under way may still be carried out by the server). Listeners get state `discarded`.
   *
   * @param {string} id
   * @returns {void}
   */
  discard(id) {
    const entry = this._outbox.get(id);
    if (!entry) return;
    this._finish(entry, "discarded", {
      error: localError("discarded", "The action was discarded before the server took it."),
    });
  }

  /**
   * Remove an entry because the caller has proof that the server took it (e.g. its
   * `chat.message` event arrived, carrying its `client_id`, while the ack was lost).
   * Listeners get state `acked`. Unknown ids are ignored.
   *
   * @param {string} id
   * @param {AckFrame} [ack]
   * @returns {void}
   */
  settle(id, ack) {
    const entry = this._outbox.get(id);
    if (entry) this._finish(entry, "acked", { ack });
  }

  // --- connection -------------------------------------------------------------------------

  _isOpen() {
    return this.socket !== null && this.socket.readyState === OPEN;
  }

  _nextRef() {
    this._ref += 1;
    return this._ref;
  }

  _setState(state) {
    if (state === this.state) return;
    this.state = state;
    for (const callback of [...this._stateListeners]) safeCall(callback, state, this);
  }

  _open() {
    this.nextAttemptAt = null;
    this._carried = false;
    let socket;
    try {
      if (this.transport === "sse") {
        const bearer = this.protocols?.find((p) => p.startsWith("bearer."));
        socket = new SseSocket(this.sseUrl, bearer ? bearer.slice(7) : null);
      } else {
        socket = this.protocols ? new WebSocket(this.url, this.protocols) : new WebSocket(this.url);
      }
    } catch (err) {
      // A URL the page may not open (bad syntax, the CSP's connect-src): keep backing off
      // rather than stop for good, so a corrected `url` is picked up by the next attempt.
      console.warn("realtime: could not open a socket", err);
      this._countTransportFailure();
      this._closed(1006, String(err));
      return;
    }
    this.socket = socket;
    // Events of a socket that is no longer current (replaced or abandoned) are ignored.
    socket.onopen = () => socket === this.socket && this._opened();
    socket.onmessage = (event) => {
      if (socket !== this.socket) return;
      this._carried = true;
      this._wsFailures = 0;
      this._receive(event.data);
    };
    socket.onclose = (event) => socket === this.socket && this._closed(event.code, event.reason);
  }

  _opened() {
    this._lastReceived = Date.now();
    this._unansweredSince = null;
    this._pingTimer = setInterval(() => this._ping(), this.pingInterval);
    this._stableTimer = setTimeout(() => (this._attempt = 0), STABLE_AFTER_MS);
    this._setState("open");
    if (this.transport === "websocket" && this.transportOption === "auto") {
      // A proxy may accept the upgrade and then pass nothing: ask for a pong at once.
      this._write({ type: "ping", ref: this._nextRef() });
      const socket = this.socket;
      this._silentTimer = setTimeout(() => {
        if (this.socket === socket && !this._carried) this._abandon("the WebSocket carried nothing");
      }, this.silentAfter);
    }
    for (const [stream, sub] of this._streams) this._sendSubscribe(stream, sub);
    this._flushOutbox();
  }

  /** Count a WebSocket that failed before carrying a frame; after `fallbackAfter` in a row,
   * use SSE for the next connections (and try WebSockets again in the background). */
  _countTransportFailure() {
    if (this.transportOption !== "auto" || this.transport !== "websocket" || this._carried) return;
    this._wsFailures += 1;
    if (this._wsFailures < this.fallbackAfter) return;
    console.warn("realtime: WebSockets do not get through; using Server-Sent Events");
    this.transport = "sse";
    this._attempt = 0;
    this._scheduleWsProbe();
  }

  _scheduleWsProbe() {
    clearTimeout(this._wsProbeTimer);
    this._wsProbeTimer = setTimeout(() => this._probeWebSocket(), this.wsRetryInterval);
  }

  _stopWsProbe() {
    clearTimeout(this._wsProbeTimer);
    this._wsProbeTimer = null;
    const probe = this._wsProbe;
    this._wsProbe = null;
    if (probe) probe.close();
  }

  /** While on SSE: open a WebSocket on the side; if it answers a ping, move to WebSockets
   * (the SSE connection is closed and the streams resubscribed with `since`). */
  _probeWebSocket() {
    if (!this._wanted || this.transport !== "sse") return;
    let probe;
    try {
      probe = this.protocols ? new WebSocket(this.url, this.protocols) : new WebSocket(this.url);
    } catch {
      this._scheduleWsProbe();
      return;
    }
    this._wsProbe = probe;
    const timer = setTimeout(() => failed(), this.silentAfter);
    const failed = () => {
      clearTimeout(timer);
      if (this._wsProbe !== probe) return;
      this._wsProbe = null;
      probe.onclose = null;
      probe.close();
      this._scheduleWsProbe();
    };
    probe.onopen = () => probe.send(JSON.stringify({ type: "ping" }));
    probe.onclose = failed;
    probe.onmessage = () => {
      clearTimeout(timer);
      if (this._wsProbe !== probe) return;
      this._wsProbe = null;
      probe.onclose = null;
      probe.close(1000, "probe");
      this.transport = "websocket";
      this._wsFailures = 0;
      const socket = this.socket;
      if (socket === null) {
        this.retryNow();
        return;
      }
      // Replace the SSE connection at once; nothing is lost or repeated (since, outbox).
      this._switching = true;
      this._closed(1000, "moving to WebSockets");
      this._switching = false;
      socket.onclose = null;
      socket.close();
    };
  }

  /** Tidy up after the socket closed (or was abandoned); reconnect unless that is final. */
  _closed(code, reason) {
    if (this.socket !== null) this._countTransportFailure();
    this.socket = null;
    this.closeCode = code;
    clearTimeout(this._silentTimer);
    clearInterval(this._pingTimer);
    clearTimeout(this._deadTimer);
    clearTimeout(this._probeTimer);
    clearTimeout(this._stableTimer);
    for (const sub of this._streams.values()) clearTimeout(sub.retryTimer);
    // Retry delays were for this socket; the next one writes every pending entry.
    for (const entry of this._outbox.values()) {
      clearTimeout(entry.retryTimer);
      entry.retryTimer = null;
    }
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const { reject } of pending) {
      reject(localError("disconnected", `The connection closed (${code}) before the answer.`));
    }
    if (!this._wanted || FINAL_CLOSE_CODES.has(code)) {
      this._wanted = false;
      this.nextAttemptAt = null;
      this._stopWsProbe();
      this._setState("closed");
      return;
    }
    if (this._switching) {
      this._open();
      return;
    }
    this._scheduleReconnect();
    this._setState("reconnecting");
  }

  _scheduleReconnect() {
    const ceiling = Math.min(this.maxDelay, this.baseDelay * 2 ** Math.min(this._attempt, 30));
    const delay = Math.random() * ceiling;
    this._attempt += 1;
    clearTimeout(this._reconnectTimer);
    this.nextAttemptAt = Date.now() + delay;
    this._reconnectTimer = setTimeout(() => {
      if (this._wanted && this.socket === null) this._open();
    }, delay);
  }

  /** Close the current socket as dead (no close handshake can be waited for) and reconnect. */
  _abandon(reason) {
    const socket = this.socket;
    if (!socket) return;
    this._closed(1006, reason);
    try {
      socket.close(4000, reason.slice(0, 100));
    } catch {
      socket.close();
    }
  }

  /** Ping; the first ping after the last frame received starts the dead-socket clock: if
   * nothing at all arrives within `deadAfter - pingInterval` ms of it, that is `deadAfter` ms
   * of silence, and the socket is dead. Counting from an unanswered ping, not from the last
   * frame, keeps a background tab (whose timers the browser slows to one a minute) from
   * mistaking its own late timer for a dead link. */
  _ping() {
    if (!this._isOpen()) return;
    this._write({ type: "ping", ref: this._nextRef() });
    if (this._unansweredSince !== null) return;
    const since = Date.now();
    this._unansweredSince = since;
    clearTimeout(this._deadTimer);
    this._deadTimer = setTimeout(
      () => {
        if (this._isOpen() && this._unansweredSince === since) {
          this._abandon(`nothing received for ${this.deadAfter} ms`);
        }
      },
      Math.max(1000, this.deadAfter - this.pingInterval),
    );
  }

  /** Ping now; call the socket dead if nothing at all arrives within `timeout` ms. */
  _probe(timeout) {
    if (!this._isOpen()) return;
    const sentAt = Date.now();
    this._ping();
    clearTimeout(this._probeTimer);
    this._probeTimer = setTimeout(() => {
      if (this._isOpen() && this._lastReceived < sentAt) this._abandon("no answer to a probe");
    }, timeout);
  }

  _browserOffline() {
    // The browser knows the network is gone; the socket may take minutes to notice.
    if (this._wanted && this.socket !== null) this._abandon("the browser went offline");
  }

  _browserOnline() {
    if (!this._wanted) return;
    this._attempt = 0;
    if (this.socket === null) this.retryNow();
    else if (this._isOpen()) this._probe(PROBE_TIMEOUT_MS);
  }

  _visibilityChanged() {
    if (!this._wanted || globalThis.document?.visibilityState !== "visible") return;
    // Timers of hidden tabs are throttled: the socket may have died long ago unnoticed.
    if (this.socket === null) this.retryNow();
    else if (this._isOpen()) this._probe(PROBE_TIMEOUT_MS);
  }

  _write(frame) {
    this.socket.send(JSON.stringify(frame));
  }

  /** Send a frame with a `ref`; resolve with its ack, reject with its error. */
  _request(frame) {
    return new Promise((resolve, reject) => {
      this._pending.set(frame.ref, { resolve, reject });
      this._write(frame);
    });
  }

  // --- receiving --------------------------------------------------------------------------

  _receive(text) {
    this._lastReceived = Date.now();
    this._unansweredSince = null;
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      console.warn("realtime: a frame that is not JSON was ignored");
      return;
    }
    if (frame === null || typeof frame !== "object") return;
    switch (frame.type) {
      case "event":
        this._deliver(frame);
        break;
      case "ack":
      case "error": {
        const waiter = frame.ref != null ? this._pending.get(frame.ref) : undefined;
        if (waiter) {
          this._pending.delete(frame.ref);
          if (frame.type === "ack") waiter.resolve(frame);
          else waiter.reject(frame);
        } else if (frame.type === "error") {
          this._unrequestedError(frame);
        }
        break;
      }
      default:
        break; // pong, and frame types added later
    }
  }

  _deliver(frame) {
    const sub = this._streams.get(frame.stream);
    if (!sub) return;
    if (Number.isInteger(frame.offset)) {
      if (sub.lastOffset !== null && frame.offset <= sub.lastOffset) return;
      sub.lastOffset = frame.offset;
      sub.durable = true;
    }
    for (const listener of [...sub.listeners]) safeCall(listener, frame);
  }

  _unrequestedError(frame) {
    // The server ended a subscription (e.g. membership revoked): do not resubscribe.
    if (frame.stream && this._streams.has(frame.stream)) {
      const sub = this._streams.get(frame.stream);
      this._dropStream(frame.stream);
      if (sub.options.onError) safeCall(sub.options.onError, frame);
      return;
    }
    console.warn(`realtime: ${frame.code}: ${frame.detail}`);
  }

  // --- subscriptions ----------------------------------------------------------------------

  _sendSubscribe(stream, sub) {
    const frame = { type: "subscribe", stream, ref: this._nextRef() };
    if (sub.lastOffset !== null) frame.since = sub.lastOffset;
    const socket = this.socket;
    this._request(frame).then(
      (ack) => {
        if (this._streams.get(stream) !== sub) return;
        sub.retries = 0;
        sub.durable = Boolean(ack.durable);
        if (sub.options.onAck) safeCall(sub.options.onAck, ack);
      },
      (error) => {
        if (this._streams.get(stream) !== sub || error.code === "disconnected") return;
        if (TRANSIENT_ERRORS.has(error.code)) {
          // Try again on this socket after a backoff delay; a reconnect retries anyway.
          const ceiling = Math.min(this.maxDelay, this.baseDelay * 2 ** Math.min(sub.retries, 30));
          sub.retries += 1;
          clearTimeout(sub.retryTimer);
          sub.retryTimer = setTimeout(() => {
            if (this.socket === socket && this._isOpen() && this._streams.get(stream) === sub) {
              this._sendSubscribe(stream, sub);
            }
          }, Math.random() * ceiling);
          return;
        }
        this._dropStream(stream);
        if (sub.options.onError) safeCall(sub.options.onError, error);
      },
    );
  }

  _removeListener(stream, listener) {
    const sub = this._streams.get(stream);
    if (!sub || !sub.listeners.delete(listener) || sub.listeners.size > 0) return;
    this._dropStream(stream);
    if (this._isOpen()) {
      // The ack (or error) is of no interest; catch it so nothing is reported as unhandled.
      this._request({ type: "unsubscribe", stream, ref: this._nextRef() }).catch(() => {});
    }
  }

  _dropStream(stream) {
    const sub = this._streams.get(stream);
    if (sub) clearTimeout(sub.retryTimer);
    this._streams.delete(stream);
  }

  // --- the outbox ---------------------------------------------------------------------------
  //
  // An entry is pending (waiting for a socket, written and awaiting its answer — `ref` set —,
  // or waiting out a retry delay — `retryTimer` set), or failed. Acked and discarded entries
  // leave the map. Every answer handler first checks that the entry is still the one in the
  // map and still awaits that very write (`entry.ref === ref`), so late answers to an earlier
  // write, or to an entry retried or discarded meanwhile, change nothing.

  _newEntry(id, type, payload, state) {
    const entry = {
      id,
      type,
      payload,
      state,
      error: undefined,
      ack: undefined,
      attempts: 0,
      queuedAt: Date.now(),
      ref: null,
      ackTimer: null,
      retryTimer: null,
      expiryTimer: null,
      settle: null,
      promise: null,
    };
    entry.promise = new Promise((resolve, reject) => (entry.settle = { resolve, reject }));
    entry.promise.catch(() => {}); // callers may ignore it; a listener reports failures
    return entry;
  }

  _snapshot(entry) {
    const snapshot = {
      id: entry.id,
      type: entry.type,
      payload: { ...entry.payload },
      state: entry.state,
      attempts: entry.attempts,
    };
    if (entry.error) snapshot.error = entry.error;
    if (entry.ack) snapshot.ack = entry.ack;
    return snapshot;
  }

  _outboxChanged(entry) {
    this._persistOutbox();
    const snapshot = this._snapshot(entry);
    for (const callback of [...this._outboxListeners]) safeCall(callback, snapshot);
  }

  /** Write pending entries that are not in flight, in order, up to the window and as the
   * pace allows. An entry waiting out a retry delay holds back the ones queued after it, so
   * they do not overtake it (entries already in flight may still be answered first). */
  _flushOutbox() {
    if (!this._isOpen()) return;
    let inFlight = 0;
    for (const entry of this._outbox.values()) if (entry.ref !== null) inFlight += 1;
    for (const entry of this._outbox.values()) {
      if (inFlight >= OUTBOX_WINDOW) break;
      if (entry.state !== "pending" || entry.ref !== null) continue;
      if (entry.retryTimer !== null) break;
      if (!this._takeWriteToken()) break;
      this._writeEntry(entry);
      inFlight += 1;
    }
  }

  /** Take one token from the outbox's write bucket; when it is empty, flush again as soon as
   * a token is back, and say no. */
  _takeWriteToken() {
    const now = Date.now();
    const bucket = this._writeBucket;
    bucket.tokens = Math.min(
      OUTBOX_BURST,
      bucket.tokens + ((now - bucket.at) / 1000) * OUTBOX_PER_SECOND,
    );
    bucket.at = now;
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return true;
    }
    if (bucket.timer === null) {
      const wait = ((1 - bucket.tokens) / OUTBOX_PER_SECOND) * 1000;
      bucket.timer = setTimeout(() => {
        bucket.timer = null;
        this._flushOutbox();
      }, wait);
    }
    return false;
  }

  _writeEntry(entry) {
    const ref = this._nextRef();
    const socket = this.socket;
    entry.ref = ref;
    entry.attempts += 1;
    const current = () => this._outbox.get(entry.id) === entry && entry.ref === ref;
    entry.ackTimer = setTimeout(() => {
      if (!current() || this.socket !== socket) return;
      this._pending.delete(ref);
      this._entryError(entry, localError("timeout", "The server did not answer in time.", ref));
    }, this.ackTimeout);
    this._request({ ...entry.payload, type: entry.type, ref }).then(
      (ack) => {
        if (!current()) return;
        this._finish(entry, "acked", { ack });
      },
      (error) => {
        if (current()) this._entryError(entry, error);
      },
    );
  }

  /** The write in flight failed (an error frame, the socket closed, or no answer). */
  _entryError(entry, error) {
    clearTimeout(entry.ackTimer);
    entry.ref = null;
    entry.error = error;
    if (!TRANSIENT_ACTION_ERRORS.has(error.code)) {
      this._fail(entry, error);
    } else if (this._exhausted(entry)) {
      this._fail(entry, error);
    } else if (error.code !== "disconnected" && this._isOpen()) {
      // The server is up but cannot take it now: try again on this socket after a delay.
      const ceiling = Math.min(
        this.maxDelay,
        this.baseDelay * 2 ** Math.min(entry.attempts - 1, 30),
      );
      entry.retryTimer = setTimeout(() => {
        entry.retryTimer = null;
        this._flushOutbox();
      }, Math.random() * ceiling);
    }
    // `disconnected`: the next socket writes it again (`_opened` flushes the outbox).
    this._flushOutbox();
  }

  _exhausted(entry) {
    return (
      entry.attempts >= this.maxAttempts || Date.now() - entry.queuedAt >= this.maxPendingMs
    );
  }

  /** Fail the entry when it is still pending, and not in flight, `maxPendingMs` after it was
   * queued (a write in flight gets its answer, or its `ackTimeout`, first). */
  _armExpiry(entry) {
    clearTimeout(entry.expiryTimer);
    const due = entry.queuedAt + this.maxPendingMs - Date.now();
    entry.expiryTimer = setTimeout(() => {
      if (this._outbox.get(entry.id) !== entry || entry.state !== "pending") return;
      if (entry.ref !== null) return;
      const seconds = Math.round(this.maxPendingMs / 1000);
      this._fail(
        entry,
        entry.error ?? localError("not_connected", `Could not reach the server in ${seconds} s.`),
      );
    }, Math.max(0, due));
  }

  _fail(entry, error) {
    clearTimeout(entry.retryTimer);
    clearTimeout(entry.expiryTimer);
    entry.retryTimer = null;
    entry.state = "failed";
    entry.error = error;
    entry.settle.reject(error);
    this._outboxChanged(entry);
  }

  /** Remove the entry for good: `acked` (with its ack) or `discarded` (with an error). */
  _finish(entry, state, { ack, error } = {}) {
    clearTimeout(entry.ackTimer);
    clearTimeout(entry.retryTimer);
    clearTimeout(entry.expiryTimer);
    this._outbox.delete(entry.id);
    entry.state = state;
    entry.ref = null;
    entry.ack = ack;
    if (error) entry.error = error;
    if (state === "acked") entry.settle.resolve(ack);
    else entry.settle.reject(error);
    this._outboxChanged(entry);
    this._flushOutbox(); // the window has room again
  }

  _persistOutbox() {
    if (!this.storage) return;
    const saved = [...this._outbox.values()].map((entry) => ({
      id: entry.id,
      type: entry.type,
      payload: entry.payload,
      state: entry.state,
      error: entry.error,
    }));
    try {
      if (saved.length) this.storage.setItem(this.storageKey, JSON.stringify(saved));
      else this.storage.removeItem(this.storageKey);
    } catch (err) {
      // Full or blocked storage: the outbox still works for the life of the page.
      console.warn("realtime: the outbox could not be saved", err);
    }
  }

  /** Load the outbox a previous page of this tab left in sessionStorage. Pending entries
   * start a fresh pending clock; they are written on the first open socket. */
  _restoreOutbox() {
    if (!this.storage) return;
    let saved;
    try {
      saved = JSON.parse(this.storage.getItem(this.storageKey) ?? "[]");
    } catch {
      saved = [];
    }
    if (!Array.isArray(saved)) return;
    for (const item of saved) {
      if (!item || typeof item.id !== "string" || typeof item.type !== "string") continue;
      if (typeof item.payload !== "object" || item.payload === null) continue;
      if (this._outbox.has(item.id)) continue;
      const state = item.state === "failed" ? "failed" : "pending";
      const entry = this._newEntry(item.id, item.type, item.payload, state);
      if (state === "failed") entry.error = item.error;
      this._outbox.set(item.id, entry);
      if (state === "pending") this._armExpiry(entry);
    }
  }
}
