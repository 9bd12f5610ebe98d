// The notifications page: new notifications appear at the top live; "Mark read" and
// "Mark all read" call the API. The bell's count follows from the server's
// `notification.unread` event, not from here. Text is written with textContent only.

import { setTime } from "../townsquare/time.js";
import { linkTarget, subscribeInbox } from "./bell.js";

const list = document.getElementById("notifications");
const markAll = document.getElementById("mark-all-read");
const errorBox = document.getElementById("inbox-error");

// The site's one time format (townsquare/time.js): date and time, the date left out today.
function showTime(el) {
  el.dataset.format = "datetime";
  setTime(el);
}

function showError(text) {
  errorBox.textContent = text;
  errorBox.hidden = !text;
}

function csrfToken() {
  const cookie = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="));
  if (cookie) return decodeURIComponent(cookie.slice("csrftoken=".length));
  return document.querySelector("input[name=csrfmiddlewaretoken]")?.value ?? "";
}

/** POST to the API; resolve with the parsed answer, reject with a sentence. */
async function post(url) {
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
      credentials: "same-origin",
    });
  } catch {
    throw new Error("Could not reach the server; try again.");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(body?.detail ?? `Something went wrong (HTTP ${response.status}).`);
  return body;
}

// --- rendering ------------------------------------------------------------------------------

/** The title: a link to where the notification leads (`data.url`), else plain. */
function titleElement(data) {
  const url = linkTarget(data.url);
  const title = document.createElement(url ? "a" : "strong");
  title.className = "title";
  if (url) title.href = url;
  title.textContent = data.title;
  return title;
}

/** The same markup as the server-rendered list in notifications/inbox.html. */
function notificationElement(data) {
  const li = document.createElement("li");
  li.className = data.read_at ? "notification" : "notification unread";
  li.dataset.id = String(data.id);
  const text = document.createElement("div");
  text.className = "notification-text";
  const title = titleElement(data);
  const time = document.createElement("time");
  time.dateTime = data.created_at;
  showTime(time);
  text.append(title, " ", time);
  if (data.body) {
    const body = document.createElement("p");
    body.className = "body";
    body.textContent = data.body;
    text.append(body);
  }
  const button = document.createElement("button");
  button.type = "button";
  button.className = "mark-read link-button";
  button.textContent = "Mark read";
  li.append(text, button);
  return li;
}

function addNotification(data) {
  if (list.querySelector(`li[data-id="${Number(data.id)}"]`)) return;
  const li = notificationElement(data);
  // Newest first; events come in id order, but place by id in case one does not.
  const after = [...list.children].find((el) => Number(el.dataset.id) < data.id);
  list.insertBefore(li, after ?? null);
}

function markShownRead(items = list.querySelectorAll("li.unread")) {
  for (const li of items) li.classList.remove("unread");
}

subscribeInbox((frame) => {
  if (frame.event === "notification.created") addNotification(frame.data);
  // Read everywhere (say, in another tab): nothing here is unread any more.
  else if (frame.event === "notification.unread" && frame.data.unread === 0) markShownRead();
});

// --- marking read ---------------------------------------------------------------------------

list.addEventListener("click", async (event) => {
  const button = event.target.closest("button.mark-read");
  if (!button) return;
  const li = button.closest("li.notification");
  button.disabled = true;
  try {
    await post(`/api/notifications/${Number(li.dataset.id)}/read/`);
    li.classList.remove("unread");
    showError("");
  } catch (error) {
    showError(error.message);
  } finally {
    button.disabled = false;
  }
});

markAll.addEventListener("click", async () => {
  markAll.disabled = true;
  // Only what was shown when clicked: one arriving meanwhile may be newer than the update.
  const shown = [...list.querySelectorAll("li.unread")];
  try {
    await post("/api/notifications/read-all/");
    markShownRead(shown);
    showError("");
  } catch (error) {
    showError(error.message);
  } finally {
    markAll.disabled = false;
  }
});

list.querySelectorAll("time").forEach(showTime);
