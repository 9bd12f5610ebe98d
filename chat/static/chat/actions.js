// Edit, Delete and reactions on a room page's messages (buttons drawn by timeline.js).
//
// - Edit (own messages): the text becomes a textarea in place; Enter saves (`chat.edit`),
//   Shift+Enter breaks the line, Escape cancels.
// - Delete (own messages; every message for moderators and staff): asks first, then
//   `chat.delete`. Deleting twice is harmless (the server answers `changed: false`).
// - Reactions: a chip per emoji (count, mine highlighted) and a palette of common emoji;
//   a click sets or clears my reaction with `chat.react {on}`, sent through the client's
//   outbox: `on` makes a repeat harmless, so it is retried across reconnects.
// The page changes only when the events come back (chat.message_edited, …), so every tab
// and every user sees the same thing in the same order.

function describeError(error) {
  switch (error?.code) {
    case "not_connected":
    case "disconnected":
    case "timeout":
      return "Not connected to the server: try again in a moment.";
    case "forbidden":
      return "You may not change that message.";
    case "not_found":
      return "That message is gone.";
    default:
      return error?.detail || "Something went wrong.";
  }
}

/**
 * @param {object} parts
 * @param {import("../realtime/client.js").RealtimeClient} parts.client
 * @param {import("./timeline.js").Timeline} parts.timeline
 * @param {(text: string) => void} parts.showError
 */
export function messageActions({ client, timeline, showError }) {
  const list = timeline.list;

  function react(li, emoji) {
    const id = Number(li.dataset.id);
    const users = timeline.reactionsOf(li)[emoji] ?? [];
    const on = !(timeline.me.id !== null && users.includes(timeline.me.id));
    // The outbox key: unique per click (a later click is a new action, never merged).
    const key = `react:${id}:${Date.now()}:${Math.random().toString(36).slice(2)}`;
    client.sendReliably("chat.react", { message: id, emoji, on }, { id: key }).catch((error) => {
      showError(describeError(error));
      client.discard(key); // a refused reaction is not kept for a retry
    });
    closePalette(li);
  }

  function togglePalette(li, button) {
    if (li.querySelector(":scope > .palette")) {
      closePalette(li);
      return;
    }
    const palette = timeline.palette(li);
    button.setAttribute("aria-expanded", "true");
    palette.querySelector("button")?.focus();
  }

  function closePalette(li, { focus = false } = {}) {
    const palette = li.querySelector(":scope > .palette");
    if (!palette) return;
    palette.remove();
    const picker = li.querySelector('[data-action="pick"]');
    picker?.setAttribute("aria-expanded", "false");
    if (focus) picker?.focus();
  }

  async function remove(li) {
    const mine = li.classList.contains("mine");
    const question = mine
      ? "Delete this message? Everyone will see “message deleted” instead."
      : `Delete this message by ${li.querySelector(".author")?.textContent}?`;
    if (!window.confirm(question)) return;
    try {
      await client.send("chat.delete", { message: Number(li.dataset.id) });
      showError("");
    } catch (error) {
      showError(describeError(error));
    }
  }

  function edit(li) {
    if (li.querySelector(":scope > .editor")) return;
    const text = li.querySelector(":scope > .text");
    const form = document.createElement("form");
    form.className = "editor";
    const box = document.createElement("textarea");
    box.className = "edit-text";
    box.maxLength = 4000;
    box.rows = 1;
    box.value = text.textContent;
    box.setAttribute("aria-label", "Edit message");
    const hint = document.createElement("span");
    hint.className = "hint";
    hint.textContent = "Enter to save · Escape to cancel";
    form.append(box, hint);
    text.hidden = true;
    text.after(form);
    const fit = () => {
      box.style.height = "auto";
      box.style.height = `${box.scrollHeight + box.offsetHeight - box.clientHeight}px`;
    };
    fit();
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
    const done = () => {
      form.remove();
      text.hidden = false;
      li.querySelector('[data-action="edit"]')?.focus();
    };
    box.addEventListener("input", fit);
    box.addEventListener("keydown", async (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        done();
      } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        const value = box.value;
        if (!value.trim()) return; // an empty edit is no edit: Delete is there for that
        box.disabled = true;
        try {
          await client.send("chat.edit", { message: Number(li.dataset.id), text: value });
          showError("");
          done();
        } catch (error) {
          box.disabled = false;
          box.focus();
          showError(describeError(error));
        }
      }
    });
  }

  list.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    const li = button?.closest("li.message");
    if (!li || li.classList.contains("local") || li.classList.contains("deleted")) return;
    switch (button.dataset.action) {
      case "react":
        react(li, button.dataset.emoji);
        break;
      case "pick":
        togglePalette(li, button);
        break;
      case "edit":
        edit(li);
        break;
      case "delete":
        remove(li);
        break;
      default:
        break;
    }
  });
  list.addEventListener("keydown", (event) => {
    const palette = event.target.closest?.(".palette");
    if (event.key === "Escape" && palette) {
      event.preventDefault();
      closePalette(palette.closest("li.message"), { focus: true });
    }
  });
}
