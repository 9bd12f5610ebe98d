// Members, presence and "bob is typing…" on a room page, and the members drawer on phones.
//
// The list shows the room's members and, in public rooms, anyone else who is in the room
// right now. Members come from `chat.members` (and its join/leave updates), who is online
// from `presence.*`. While presence is not known (before the first snapshot, or while the
// socket is down) nobody is shown as online or dimmed.

/** How long "bob is typing…" stays after bob's last `presence.typing`, in ms. */
const TYPING_SHOWN_MS = 4000;

const byUsername = (a, b) => (a.username < b.username ? -1 : a.username > b.username ? 1 : 0);

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

export class People {
  constructor({ list, memberCount, onlineCount, typingLine, me }) {
    Object.assign(this, { list, memberCount, onlineCount, typingLine, me });
    /** id → {id, username}: the room's members, as rendered by the server at first. */
    this.members = new Map(
      [...list.querySelectorAll("li[data-user-id]")].map((li) => {
        const id = Number(li.dataset.userId);
        return [id, { id, username: li.dataset.username ?? li.textContent }];
      }),
    );
    /** @type {Map<number, {id: number, username: string}> | null} online; null: unknown. */
    this.online = null;
    /** id → {username, timer}: who is typing, in the order they started. */
    this.typers = new Map();
  }

  _isMe(user) {
    return this.me.id !== null ? user.id === this.me.id : user.username === this.me.username;
  }

  _element(user) {
    const li = document.createElement("li");
    const isMember = this.members.has(user.id);
    const isOnline = this.online !== null && this.online.has(user.id);
    li.dataset.userId = String(user.id);
    li.dataset.username = user.username;
    li.textContent = user.username;
    li.classList.add(isMember ? "member" : "guest");
    if (this._isMe(user)) li.classList.add("me");
    if (isOnline) li.classList.add("online");
    if (this.online !== null) {
      li.title = isOnline ? (isMember ? "online" : "online, not a member") : "offline";
    }
    return li;
  }

  render() {
    const people = new Map(this.members);
    if (this.online !== null) {
      for (const [id, user] of this.online) if (!people.has(id)) people.set(id, user);
    }
    this.list.replaceChildren(
      ...[...people.values()].sort(byUsername).map((user) => this._element(user)),
    );
    this.list.classList.toggle("presence-known", this.online !== null);
    this.memberCount.textContent = String(this.members.size);
    this.onlineCount.hidden = this.online === null;
    this.onlineCount.textContent = this.online === null ? "" : `· ${this.online.size} online`;
  }

  setMembers(list) {
    this.members.clear();
    for (const user of list) this.members.set(user.id, user);
    this.render();
  }

  addMember(user) {
    this.members.set(user.id, user);
    this.render();
  }

  removeMember(user) {
    this.members.delete(user.id);
    this.render();
  }

  setOnline(users) {
    this.online = new Map(users.map((user) => [user.id, user]));
    this.render();
  }

  joined(user) {
    if (this.online === null) return; // the snapshot that follows every subscribe will say
    this.online.set(user.id, user);
    this.render();
  }

  left(user) {
    this.stopTyping(user.id);
    if (this.online === null) return;
    this.online.delete(user.id);
    this.render();
  }

  /** Presence is not known (socket down, stream ended): no dots, nobody typing. */
  forget() {
    if (this.online === null && this.typers.size === 0) return;
    this.online = null;
    this.render();
    this.clearTyping();
  }

  // --- typing -------------------------------------------------------------------------------

  _renderTyping() {
    const text = typingText([...this.typers.values()].map((entry) => entry.username));
    this.typingLine.textContent = text;
    this.typingLine.classList.toggle("active", text !== "");
  }

  startTyping(user) {
    if (this._isMe(user)) return; // another tab of mine
    const entry = this.typers.get(user.id);
    if (entry) clearTimeout(entry.timer);
    const timer = setTimeout(() => this.stopTyping(user.id), TYPING_SHOWN_MS);
    this.typers.set(user.id, { username: user.username, timer });
    this._renderTyping();
  }

  stopTyping(userId) {
    const entry = this.typers.get(userId);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.typers.delete(userId);
    this._renderTyping();
  }

  clearTyping() {
    for (const entry of this.typers.values()) clearTimeout(entry.timer);
    this.typers.clear();
    this._renderTyping();
  }
}

/**
 * The members list as a drawer at narrow widths (site.css shows it beside the messages
 * otherwise): the header's Members button opens it, its close button and Escape close it;
 * focus moves into it and back to the button.
 */
export function memberDrawer({ panel, open, close }) {
  const narrow = window.matchMedia("(max-width: 720px)");
  const isOpen = () => panel.classList.contains("open");
  const show = (opened) => {
    panel.classList.toggle("open", opened);
    open.setAttribute("aria-expanded", String(opened));
    if (opened) close.focus();
    else if (panel.contains(document.activeElement) || document.activeElement === document.body) {
      open.focus();
    }
  };
  open.addEventListener("click", () => show(!isOpen()));
  close.addEventListener("click", () => show(false));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && isOpen()) {
      event.preventDefault();
      show(false);
    }
  });
  // Back to a wide window: the sidebar is always shown; the drawer state is dropped.
  narrow.addEventListener("change", () => narrow.matches || show(false));
}
