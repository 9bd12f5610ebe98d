/**
 * Townsquare real-time client: one WebSocket to `/ws/`, many streams over it.
 *
 * An ES module with no dependencies and no build step. The wire protocol is documented in
 * realtime/protocol.py (and docs/protocol.md); every frame is one JSON object per text
 * message.
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
 *   streams are (re)subscribed. `reconnecting`: the socket dropped; waiting for or making
 *   the next attempt. `closed`: final; no more attempts (after `close()`, or the server
 *   closed with 4001 unauthenticated or 4003 forbidden — see `closeCode`).
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
 * `truncated`)
 */

/**
 * @typedef {object} ErrorFrame
 * @property {"error"} type
 * @property {string} code    e.g. `invalid`, `forbidden`, `not_found`, `rate_limited`,
 *   `unavailable`, `unsubscribed`; this client adds `not_connected` (nothing was sent) and
 *   `disconnected` (the socket closed before the answer came; the action may or may not
 *   have been carried out)
 * @property {string} detail  a human-readable sentence
 * @property {number|string} [ref]
 * @property {string} [stream]
 */

/** Close codes after which reconnecting cannot help: 4001 unauthenticated, 4003 forbidden. */
const FINAL_CLOSE_CODES = new Set([4001, 4003]);

/** Subscribe errors worth retrying on the same socket (the others end the subscription). */
const TRANSIENT_ERRORS = new Set(["unavailable", "rate_limited"]);

/** The connection counts as healthy (backoff resets) after staying open this long, in ms. */
const STABLE_AFTER_MS = 5000;

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

/**
 * One WebSocket connection to Townsquare's `/ws/`, carrying any number of stream
 * subscriptions, that reconnects by itself.
 *
 * - Reconnects after every drop except close codes 4001 and 4003, waiting a random delay
 *   between 0 and min(`maxDelay`, `baseDelay` × 2^attempt) ms ("full jitter"); the attempt
 *   counter resets once a connection has stayed open for 5 s.
 * - On every (re)connect it subscribes again to every stream. On durable streams it
 *   remembers the highest `offset` delivered and resubscribes with `since` = that offset,
 *   so the server replays what was missed; any event with an offset at or below the last
 *   one delivered is dropped, so a listener never sees an offset twice.
 * - Sends `{"type":"ping"}` every `pingInterval` ms while open; when nothing at all has
 *   arrived for two intervals plus 5 s, it treats the socket as dead and reconnects.
 *
 * @example
 *   const client = new RealtimeClient();
 *   client.onState((state) => console.log(state));
 *   const stop = client.subscribe("chat:room:1", (frame) => console.log(frame.event, frame.data),
 *                                 { since: 120 });
 *   client.connect();
 *   const ack = await client.send("chat.send", { room: 1, text: "hi", client_id: "c-1" });
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
   * @param {number} [options.maxDelay=30000] reconnect backoff cap, in milliseconds.
   * @param {number} [options.pingInterval=25000] milliseconds between pings while open.
   */
  constructor({ url, protocols, baseDelay = 500, maxDelay = 30000, pingInterval = 25000 } = {}) {
    this.url = url ?? defaultUrl();
    this.protocols = protocols;
    this.baseDelay = baseDelay;
    this.maxDelay = maxDelay;
    this.pingInterval = pingInterval;

    /** @type {WebSocket | null} the current socket (null between attempts). */
    this.socket = null;
    /** @type {ConnectionState} */
    this.state = "closed";
    /** @type {number | null} the close code of the last socket that closed. */
    this.closeCode = null;

    /** @type {Map<string, {listeners: Set<Function>, lastOffset: number|null, durable: boolean,
     *   options: object, retries: number, retryTimer: any}>} */
    this._streams = new Map();
    /** @type {Map<number, {resolve: Function, reject: Function}>} answers awaited, by ref. */
    this._pending = new Map();
    /** @type {Set<Function>} */
    this._stateListeners = new Set();
    this._ref = 0;
    this._attempt = 0;
    this._wanted = false;
    this._reconnectTimer = null;
    this._pingTimer = null;
    this._stableTimer = null;
    this._lastReceived = 0;
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
    this._setState("connecting");
    this._open();
    return this;
  }

  /**
   * Close the connection for good (state `closed`): no reconnect; actions awaiting an
   * answer are rejected with a `disconnected` error frame. Subscriptions are kept, so a
   * later `connect()` resumes them.
   *
   * @returns {void}
   */
  close() {
    this._wanted = false;
    clearTimeout(this._reconnectTimer);
    const socket = this.socket;
    this._closed(1000, "closed by the client");
    if (socket) socket.close(1000, "client closed");
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
   * Send an action or any other frame that the server acknowledges, e.g.
   * `send("chat.send", {room: 1, text: "hi", client_id: "…"})` sends
   * `{"type":"chat.send","room":1,"text":"hi","client_id":"…","ref":<generated>}`.
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

  // --- connection -------------------------------------------------------------------------

  _isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
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
    const socket = this.protocols
      ? new WebSocket(this.url, this.protocols)
      : new WebSocket(this.url);
    this.socket = socket;
    // Events of a socket that is no longer current (replaced or abandoned) are ignored.
    socket.onopen = () => socket === this.socket && this._opened();
    socket.onmessage = (event) => socket === this.socket && this._receive(event.data);
    socket.onclose = (event) => socket === this.socket && this._closed(event.code, event.reason);
  }

  _opened() {
    this._lastReceived = Date.now();
    this._pingTimer = setInterval(() => this._ping(), this.pingInterval);
    this._stableTimer = setTimeout(() => (this._attempt = 0), STABLE_AFTER_MS);
    this._setState("open");
    for (const [stream, sub] of this._streams) this._sendSubscribe(stream, sub);
  }

  /** Tidy up after the socket closed (or was abandoned); reconnect unless that is final. */
  _closed(code, reason) {
    this.socket = null;
    this.closeCode = code;
    clearInterval(this._pingTimer);
    clearTimeout(this._stableTimer);
    for (const sub of this._streams.values()) clearTimeout(sub.retryTimer);
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const { reject } of pending) {
      reject(localError("disconnected", `The connection closed (${code}) before the answer.`));
    }
    if (!this._wanted || FINAL_CLOSE_CODES.has(code)) {
      this._wanted = false;
      this._setState("closed");
      return;
    }
    this._setState("reconnecting");
    const ceiling = Math.min(this.maxDelay, this.baseDelay * 2 ** Math.min(this._attempt, 30));
    this._attempt += 1;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = setTimeout(() => {
      if (this._wanted && this.socket === null) this._open();
    }, Math.random() * ceiling);
  }

  _ping() {
    if (!this._isOpen()) return;
    // Nothing at all (not even the last pong) for two intervals: the link is dead.
    if (Date.now() - this._lastReceived > 2 * this.pingInterval + 5000) {
      const socket = this.socket;
      this._closed(1006, "no answer to ping");
      socket.close();
      return;
    }
    this._write({ type: "ping", ref: this._nextRef() });
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
}
