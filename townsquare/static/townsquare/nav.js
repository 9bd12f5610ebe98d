// The header's menu button (base.html): on narrow screens (site.css hides .site-menu there once
// the header has `menu-ready`) the links and the account fold behind it.
// A classic script placed right after the header, not a module: it runs before the rest of
// the page is parsed, so the menu is folded before the first paint instead of flashing open.
// Without it the button stays hidden and the links wrap onto a second line.
(() => {
  const button = document.getElementById("menu-button");
  const menu = document.getElementById("site-menu");
  const header = button?.closest(".site-header");
  if (!button || !menu || !header) return;

  /** Open or fold the menu; the button's aria-expanded says which. */
  function setOpen(open) {
    button.setAttribute("aria-expanded", String(open));
    header.classList.toggle("menu-open", open);
  }

  header.classList.add("menu-ready");
  button.hidden = false;
  button.addEventListener("click", () => {
    setOpen(button.getAttribute("aria-expanded") !== "true");
  });
  // Escape folds an open menu and gives the focus back to its button.
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || button.getAttribute("aria-expanded") !== "true") return;
    setOpen(false);
    button.focus();
  });
})();
