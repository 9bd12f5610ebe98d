// The room list: the "open a room by name" form, and the connection badge.

import { getClient } from "../realtime/shared.js";

const form = document.getElementById("open-room");
const nameInput = document.getElementById("room-name");

// /chat/<name>/ opens the room of that name; for a new name it asks, and its button creates
// the room (a POST with the CSRF token).
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

// The header badge tells whether live updates can reach this browser (the shared client
// drives it; the bell uses the same socket).
getClient();
