// The room list: the "open a room by name" form, and the connection badge.

import { RealtimeClient } from "../realtime/client.js";

const form = document.getElementById("open-room");
const nameInput = document.getElementById("room-name");

// /chat/<name>/ opens the room of that name, creating it (public) if it is new.
form.addEventListener("submit", (event) => {
  event.preventDefault();
  const name = nameInput.value.trim();
  if (!name) return;
  if (name.includes("/")) {
    nameInput.setCustomValidity("A room name cannot contain “/”.");
    nameInput.reportValidity();
    return;
  }
  location.assign(`/chat/${encodeURIComponent(name)}/`);
});
nameInput.addEventListener("input", () => nameInput.setCustomValidity(""));

// The badge in the header tells whether live updates can reach this browser.
const badge = document.getElementById("connection-state");
const STATE_TEXT = {
  connecting: "connecting…",
  open: "live",
  reconnecting: "reconnecting…",
  closed: "offline",
};
if (badge) {
  const client = new RealtimeClient();
  client.onState((state) => {
    badge.dataset.state = state;
    badge.textContent = STATE_TEXT[state] ?? state;
  });
  client.connect();
}
