// The shop list: every item's quantity, live. One `shop:item:<id>` subscription per item on
// the page, all over the page's shared socket. The highest `version` seen wins, so an
// older event that arrives late never overwrites a newer quantity.
// The item page (item.js) imports `showStock` from here; the list code runs only on the list.

import { getClient } from "../realtime/shared.js";

/**
 * Show a `shop.stock` event on `el` (a `.quantity`) unless it is older than what is shown;
 * `container` gets the class `out` while sold out. Returns whether the event was shown.
 */
export function showStock(el, data, container) {
  const shown = Number(el.dataset.version ?? -1);
  if (!Number.isInteger(data.version) || data.version <= shown) return false;
  el.dataset.version = String(data.version);
  el.textContent = String(data.quantity);
  const out = data.quantity === 0;
  el.classList.toggle("out", out);
  container?.classList.toggle("out", out);
  return true;
}

const list = document.getElementById("items");
if (list) {
  const client = getClient();
  for (const card of list.querySelectorAll("li[data-item-id]")) {
    const id = Number(card.dataset.itemId);
    const quantity = card.querySelector(".quantity");
    if (!Number.isInteger(id) || !quantity) continue;
    client.subscribe(`shop:item:${id}`, (frame) => {
      if (frame.event === "shop.stock" && frame.data.item === id) {
        showStock(quantity, frame.data, card);
      }
    });
  }
}
