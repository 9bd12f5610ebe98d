/**
 * One way to show times across the site, in the browser's locale and time zone.
 *
 * Servers render a time as `<time datetime="2025-01-31T14:05:00+00:00">fallback</time>`;
 * this module replaces the text with the local form and puts the full date and time in the
 * element's `title`. Loaded by base.html on every page: every `<time datetime>` in the page,
 * and every one added later (a MutationObserver), is shown the same way. Scripts that build
 * times themselves call `setTime()`.
 *
 * Forms, by the element's `data-format`:
 *   `time` (the default): the time of day, e.g. "14:05" or "2:05 PM";
 *   `datetime`: the time of day for today, else the date too, e.g. "Jan 30, 2025, 14:05".
 * `dayLabel()` names a day for list separators: "Today", "Yesterday", else a full date.
 *
 * @module townsquare/time
 */

const timeOfDay = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dateAndTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const full = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "medium" });
const longDay = new Intl.DateTimeFormat(undefined, {
  weekday: "long",
  year: "numeric",
  month: "long",
  day: "numeric",
});

/** The local calendar day of a date, as a comparable key ("2025-0-31"). */
export function dayKey(date) {
  return `${date.getFullYear()}-${date.getMonth()}-${date.getDate()}`;
}

/**
 * "Today", "Yesterday" or the full date ("Friday, January 31, 2025"), in local time.
 *
 * @param {Date} date
 * @param {Date} [now]
 * @returns {string}
 */
export function dayLabel(date, now = new Date()) {
  if (dayKey(date) === dayKey(now)) return "Today";
  const yesterday = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1);
  if (dayKey(date) === dayKey(yesterday)) return "Yesterday";
  return longDay.format(date);
}

/**
 * The text of a time in one of the site's forms.
 *
 * @param {Date} date
 * @param {"time" | "datetime"} [form]
 * @returns {string}
 */
export function formatTime(date, form = "time") {
  if (form === "datetime" && dayKey(date) !== dayKey(new Date())) return dateAndTime.format(date);
  return timeOfDay.format(date);
}

/**
 * Show a `<time>` element's `datetime` in its form (`data-format`), the full date and time
 * as its tooltip. An element without a valid `datetime` keeps its text.
 *
 * @param {HTMLTimeElement} el
 * @param {Date | string} [when] sets `datetime` first (a Date, or an RFC 3339 string)
 */
export function setTime(el, when) {
  if (when !== undefined) {
    el.dateTime = when instanceof Date ? when.toISOString() : String(when);
  }
  const date = new Date(el.dateTime);
  if (Number.isNaN(date.getTime())) return;
  const text = formatTime(date, el.dataset.format === "datetime" ? "datetime" : "time");
  if (el.textContent !== text) el.textContent = text;
  const title = full.format(date);
  if (el.title !== title) el.title = title;
}

/** Show every `<time datetime>` in `root` (and `root` itself when it is one). */
export function showTimes(root = document) {
  if (root instanceof HTMLTimeElement && root.dateTime) setTime(root);
  root.querySelectorAll?.("time[datetime]").forEach((el) => setTime(el));
}

// Every time already in the page, and every one added or changed later, whoever adds it.
showTimes(document);
new MutationObserver((records) => {
  for (const record of records) {
    if (record.type === "attributes") setTime(record.target);
    else record.addedNodes.forEach((node) => node.nodeType === 1 && showTimes(node));
  }
}).observe(document.documentElement, {
  subtree: true,
  childList: true,
  attributes: true,
  attributeFilter: ["datetime"],
});
