// The room's message list (#message-list in chat/room.html): one <li class="message"> per
// stored message, in offset order, with day separators ("Today", "Yesterday", a date) and
// consecutive messages of one author grouped. Edits, deletes and reactions change items in
// place. Every user-supplied string is written with textContent, never as HTML.
//
// Item markup (the server renders the same in chat/room.html):
//   <li class="message [mine] [deleted] [grouped]" data-id data-offset data-client-id
//       data-author-id data-reactions='{"👍": [user ids]}'>
//     <span class="author">…</span> <time datetime="…">…</time> [<span class="edited">(edited)</span>]
//     <span class="text">…</span>            (deleted: <span class="text tombstone">message deleted</span>)
//     <div class="reactions">…</div> <div class="message-actions">…</div>   (added here)
//   </li>

import { dayKey, dayLabel, setTime } from "../townsquare/time.js";

/** Messages of one author closer than this (ms) are grouped under one name. */
export const GROUP_WITHIN_MS = 5 * 60 * 1000;
/** The reactions offered on every message. */
export const COMMON_EMOJI = ["👍", "❤️", "😂", "🎉", "😮", "😢"];
export const TOMBSTONE = "message deleted";

export function span(className, text) {
  const el = document.createElement("span");
  el.className = className;
  el.textContent = text;
  return el;
}

function actionButton(action, label, { pressed, title } = {}) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "link-button";
  button.dataset.action = action;
  button.textContent = label;
  if (pressed !== undefined) button.setAttribute("aria-pressed", String(pressed));
  if (title) button.setAttribute("aria-label", title);
  return button;
}

/**
 * The message list of one room page.
 *
 * @param {HTMLOListElement} list
 * @param {{id: number|null, username: string}} me
 * @param {{canModerate: boolean}} options
 */
export class Timeline {
  constructor(list, me, { canModerate = false } = {}) {
    this.list = list;
    this.me = me;
    this.canModerate = canModerate;
    /** Offsets of the stored messages shown, to skip any that arrive again. */
    this.seen = new Set();
    /** message id → its <li>. */
    this.byId = new Map();
    /** Offset of the first unread message when the page opened (the "new messages" line). */
    this.firstUnread = null;
    for (const li of list.querySelectorAll(":scope > li.message")) this._adopt(li);
    this.layout();
  }

  isMine(author) {
    return this.me.id !== null ? author.id === this.me.id : author.username === this.me.username;
  }

  /** Messages (stored ones, not my pending ones), oldest first. */
  items() {
    return [...this.list.querySelectorAll(":scope > li.message:not(.local)")];
  }

  oldestOffset() {
    const first = this.list.querySelector(":scope > li.message:not(.local)");
    return first ? Number(first.dataset.offset) : null;
  }

  /** The <li> of a stored message (from an event's data), with its reactions and actions. */
  element(data) {
    const li = document.createElement("li");
    li.className = this.isMine(data.author) ? "message mine" : "message";
    li.dataset.offset = String(data.offset);
    li.dataset.id = String(data.id);
    li.dataset.clientId = data.client_id ?? "";
    li.dataset.authorId = String(data.author.id);
    li.dataset.reactions = JSON.stringify(data.reactions ?? {});
    const time = document.createElement("time");
    setTime(time, data.created_at);
    li.append(span("author", data.author.username), " ", time, " ", span("text", data.text));
    if (data.edited_at) this._markEdited(li);
    if (data.deleted) this._tombstone(li);
    this._decorate(li);
    return li;
  }

  /**
   * Insert a stored message at its place by offset (pending items of mine stay last).
   *
   * @returns {HTMLLIElement | null} the new item, or null when it is shown already.
   */
  insert(data) {
    if (this.seen.has(data.offset)) return null;
    const li = this.element(data);
    let before = this.list.lastElementChild;
    while (
      before &&
      (!before.classList.contains("message") ||
        before.classList.contains("local") ||
        Number(before.dataset.offset) > data.offset)
    ) {
      before = before.previousElementSibling;
    }
    if (before) before.after(li);
    else this.list.prepend(li);
    this._adopt(li);
    this.layout();
    return li;
  }

  /** Put older messages (oldest first, from the API) above the ones shown. */
  prepend(page) {
    const fresh = page.filter((data) => !this.seen.has(data.offset));
    const first = this.list.querySelector(":scope > li.message");
    const items = fresh.map((data) => this.element(data));
    for (const li of items) {
      if (first) first.before(li);
      else this.list.append(li);
      this._adopt(li);
    }
    this.layout();
    return items.length;
  }

  _adopt(li) {
    this.seen.add(Number(li.dataset.offset));
    this.byId.set(Number(li.dataset.id), li);
    if (!li.querySelector(".reactions")) this._decorate(li);
  }

  // --- changes ------------------------------------------------------------------------------

  /** `chat.message_edited {id, text, edited_at}`; false when the message is not shown. */
  edited(data) {
    const li = this.byId.get(data.id);
    if (!li) return false;
    if (li.classList.contains("deleted")) return true; // a delete is final
    li.querySelector(":scope > .text").textContent = data.text;
    this._markEdited(li);
    return true;
  }

  /** `chat.message_deleted {id, deleted_at}`. */
  deleted(data) {
    const li = this.byId.get(data.id);
    if (!li) return false;
    this._tombstone(li);
    this._decorate(li);
    this.layout();
    return true;
  }

  /** `chat.reactions {id, reactions}` (the full state). */
  reactions(data) {
    const li = this.byId.get(data.id);
    if (!li) return false;
    li.dataset.reactions = JSON.stringify(data.reactions ?? {});
    this._decorate(li);
    return true;
  }

  reactionsOf(li) {
    try {
      return JSON.parse(li.dataset.reactions || "{}");
    } catch {
      return {};
    }
  }

  _markEdited(li) {
    if (li.querySelector(":scope > .edited")) return;
    li.querySelector(":scope > time").after(" ", span("edited", "(edited)"));
  }

  _tombstone(li) {
    li.classList.add("deleted");
    li.querySelector(":scope > .edited")?.remove();
    const text = li.querySelector(":scope > .text");
    text.textContent = TOMBSTONE;
    text.classList.add("tombstone");
    li.dataset.reactions = "{}";
  }

  /** (Re)draw an item's reaction bar and its Edit / Delete / React buttons. */
  _decorate(li) {
    li.querySelector(":scope > .reactions")?.remove();
    li.querySelector(":scope > .message-actions")?.remove();
    if (li.classList.contains("local") || li.classList.contains("deleted")) return;
    const reactions = this.reactionsOf(li);
    const bar = document.createElement("div");
    bar.className = "reactions";
    for (const [emoji, users] of Object.entries(reactions)) {
      if (!Array.isArray(users) || users.length === 0) continue;
      const mine = this.me.id !== null && users.includes(this.me.id);
      const who = users.length === 1 ? "1 reaction" : `${users.length} reactions`;
      const chip = actionButton("react", "", {
        pressed: mine,
        title: `${emoji} ${who}${mine ? ", yours" : ""}`,
      });
      chip.className = mine ? "reaction mine" : "reaction";
      chip.dataset.emoji = emoji;
      chip.append(span("emoji", emoji), " ", span("reaction-count", String(users.length)));
      bar.append(chip);
    }
    const actions = document.createElement("div");
    actions.className = "message-actions";
    const own = li.classList.contains("mine");
    const picker = actionButton("pick", "React", { title: "Add a reaction" });
    picker.setAttribute("aria-expanded", "false");
    actions.append(picker);
    if (own) actions.append(actionButton("edit", "Edit"));
    if (own || this.canModerate) actions.append(actionButton("delete", "Delete"));
    li.append(bar, actions);
  }

  /** The palette of common emoji under a message (toggled by its React button). */
  palette(li) {
    let palette = li.querySelector(":scope > .palette");
    if (palette) return palette;
    palette = document.createElement("div");
    palette.className = "palette";
    palette.setAttribute("role", "group");
    palette.setAttribute("aria-label", "Reactions");
    const reactions = this.reactionsOf(li);
    for (const emoji of COMMON_EMOJI) {
      const mine = this.me.id !== null && (reactions[emoji] ?? []).includes(this.me.id);
      const button = actionButton("react", emoji, { pressed: mine, title: `React with ${emoji}` });
      button.dataset.emoji = emoji;
      palette.append(button);
    }
    li.append(palette);
    return palette;
  }

  // --- layout -------------------------------------------------------------------------------

  /**
   * Day separators before the first message of each local day, grouping of consecutive
   * messages of one author (within GROUP_WITHIN_MS, same day, nothing between them), and
   * the "new messages" line before the first unread message. Idempotent: run after every
   * change to the list.
   */
  layout() {
    const now = new Date();
    let prev = null;
    let prevWhen = null;
    let dividerDone = this.firstUnread === null;
    for (const li of this.list.querySelectorAll(":scope > li.message")) {
      const when = new Date(li.querySelector(":scope > time")?.dateTime ?? "");
      const day = Number.isNaN(when.getTime()) ? "" : dayKey(when);
      const newDay = prevWhen === null || dayKey(prevWhen) !== day;
      // Separators and the divider live between `prev` and `li`; keep the right ones.
      const between = [];
      for (let el = li.previousElementSibling; el && el !== prev; el = el.previousElementSibling) {
        between.push(el);
      }
      let separator = null;
      let divider = null;
      for (const el of between) {
        if (el.classList.contains("day-separator") && newDay && !separator && el.dataset.day === day)
          separator = el;
        else if (el.classList.contains("unread-divider") && !divider) divider = el;
        else el.remove();
      }
      if (newDay && day) {
        if (!separator) {
          separator = document.createElement("li");
          separator.className = "day-separator";
          separator.dataset.day = day;
          const label = document.createElement("span");
          separator.append(label);
          li.before(separator);
        }
        const text = dayLabel(when, now);
        if (separator.firstChild.textContent !== text) separator.firstChild.textContent = text;
      }
      const unreadHere =
        !dividerDone &&
        !li.classList.contains("local") &&
        Number(li.dataset.offset) >= this.firstUnread &&
        !li.classList.contains("mine") &&
        !li.classList.contains("deleted");
      if (unreadHere) {
        dividerDone = true;
        if (!divider) {
          divider = document.createElement("li");
          divider.className = "unread-divider";
          divider.id = "unread-divider";
          divider.append(span("", "New messages"));
        }
        li.before(divider); // after the day separator, if any
      } else if (divider) {
        divider.remove();
        divider = null;
      }
      const grouped =
        prev !== null &&
        !newDay &&
        !divider &&
        !li.classList.contains("deleted") &&
        !prev.classList.contains("deleted") &&
        prev.dataset.authorId !== undefined &&
        prev.dataset.authorId === li.dataset.authorId &&
        when - prevWhen < GROUP_WITHIN_MS;
      li.classList.toggle("grouped", grouped);
      prev = li;
      prevWhen = when;
    }
    // Nothing after the last message but pending items.
    for (let el = this.list.lastElementChild; el && el !== prev; ) {
      const before = el.previousElementSibling;
      if (!el.classList.contains("message")) el.remove();
      el = before;
    }
  }
}
