// The scrolling message pane of a room page (#messages): older messages load as one scrolls
// to the top (GET /api/rooms/<id>/messages/, cursor pagination, newest first) with the
// viewport kept where it was; while scrolled away from the bottom, new messages do not move
// the view and a "Jump to latest" button counts them.

/** Within this many px of the bottom counts as "at the bottom" (following new messages). */
const BOTTOM_SLACK_PX = 120;
/** Older messages start loading when the top is this close, in px. */
const TOP_SLACK_PX = 400;

export class MessagePane {
  /**
   * @param {object} parts
   * @param {HTMLElement} parts.scroller  the scrolling region (#messages)
   * @param {import("./timeline.js").Timeline} parts.timeline
   * @param {HTMLButtonElement} parts.jump  "Jump to latest" (#jump-latest)
   * @param {HTMLElement} parts.jumpCount   its count of new messages
   * @param {HTMLButtonElement} parts.older "Load older messages" (#load-older)
   * @param {HTMLElement} parts.start       "This is the start of the room" (#history-start)
   * @param {string | null} parts.olderUrl  the first older page, or null: nothing older
   */
  constructor({ scroller, timeline, jump, jumpCount, older, start, olderUrl }) {
    this.scroller = scroller;
    this.timeline = timeline;
    this.jump = jump;
    this.jumpCount = jumpCount;
    this.older = older;
    this.start = start;
    this.olderUrl = olderUrl;
    this.loading = false;
    /** New messages from others that arrived while away from the bottom. */
    this.unseen = 0;
    /** Called after older messages were put on the page. */
    this.afterPrepend = () => {};
    /** Called when the bottom comes into view (scrolling, or a message while there). */
    this.atBottom = () => {};
    scroller.addEventListener("scroll", () => this._scrolled(), { passive: true });
    jump.addEventListener("click", () => {
      this.scrollToNewest();
      scroller.focus({ preventScroll: true });
    });
    older.addEventListener("click", () => this.loadOlder());
    this._showEdge();
  }

  nearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < BOTTOM_SLACK_PX;
  }

  scrollToNewest() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this._scrolled();
  }

  /** Scroll so that `el` is near the top of the pane (the first unread message). */
  scrollToItem(el) {
    this.scroller.scrollTop = Math.max(0, el.offsetTop - this.scroller.offsetTop - 8);
    this._scrolled();
  }

  /**
   * Change the list without moving what the reader sees: the first message in view stays
   * at the same place on screen, even if it changes itself (e.g. becomes grouped with an
   * older one put above it). The browser's own scroll anchoring is off (see site.css).
   */
  keepAnchor(change) {
    const s = this.scroller;
    const paneTop = s.getBoundingClientRect().top;
    const anchor = [...this.timeline.list.querySelectorAll(":scope > li.message")].find(
      (li) => li.getBoundingClientRect().bottom > paneTop,
    );
    const before = anchor ? anchor.getBoundingClientRect().top : 0;
    const fromBottom = s.scrollHeight - s.scrollTop;
    const result = change();
    if (anchor?.isConnected) s.scrollTop += anchor.getBoundingClientRect().top - before;
    else s.scrollTop = s.scrollHeight - fromBottom;
    return result;
  }

  /**
   * A stored message was put on the page: follow it when the reader is at the bottom (or
   * it is mine), else count it on the "Jump to latest" button.
   */
  arrived(li, { mine, wasAtBottom }) {
    if (wasAtBottom || mine) {
      this.scrollToNewest();
    } else {
      this.unseen += 1;
      this._showJump();
    }
  }

  /** Load the next page of older messages (nothing when one is loading or none is left). */
  async loadOlder() {
    if (this.loading || !this.olderUrl) return;
    this.loading = true;
    this.scroller.setAttribute("aria-busy", "true");
    this._showEdge();
    try {
      // Same origin whatever host the API wrote in its link.
      const url = new URL(this.olderUrl, location.href);
      const response = await fetch(url.pathname + url.search, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const body = await response.json();
      const page = [...body.results].reverse(); // the API lists newest first
      // The edge (a button, or "the start of the room") changes too: inside the anchor.
      this.keepAnchor(() => {
        this.timeline.prepend(page);
        this.olderUrl = body.next ?? null;
        this.older.dataset.failed = "";
        this.loading = false;
        this._showEdge();
      });
      this.afterPrepend();
    } catch (error) {
      console.warn("chat: older messages did not load", error);
      this.older.dataset.failed = "1";
    } finally {
      this.scroller.setAttribute("aria-busy", "false");
      if (this.loading) {
        this.loading = false;
        this.keepAnchor(() => this._showEdge());
      }
    }
    // Still at the top (a short page, or no scrollbar yet): keep going.
    if (this.olderUrl && !this.older.dataset.failed && this.scroller.scrollTop < TOP_SLACK_PX) {
      await this.loadOlder();
    }
  }

  _showEdge() {
    const more = this.olderUrl !== null;
    this.older.hidden = !more;
    this.older.disabled = this.loading;
    this.older.textContent = this.loading
      ? "Loading older messages…"
      : this.older.dataset.failed
        ? "Older messages did not load: try again"
        : "Load older messages";
    this.start.hidden = more;
  }

  _showJump() {
    const away = !this.nearBottom();
    this.jump.hidden = !away;
    this.jumpCount.textContent = this.unseen > 0 ? `${this.unseen} new` : "";
    this.jumpCount.hidden = this.unseen === 0;
  }

  _scrolled() {
    if (this.nearBottom()) {
      this.unseen = 0;
      this.atBottom();
    }
    this._showJump();
    if (this.scroller.scrollTop < TOP_SLACK_PX && this.olderUrl && !this.older.dataset.failed) {
      this.loadOlder();
    }
  }
}
