// The menu button of narrow screens: a real <button> (reachable by Tab, toggled by Enter or
// Space) that shows or hides the navigation and says which through aria-expanded. Without
// JavaScript the button stays hidden and the navigation stays open.
(function () {
  "use strict";
  var button = document.querySelector(".nav-toggle");
  var nav = document.getElementById("site-nav");
  if (!button || !nav) return;
  document.documentElement.classList.add("js-nav");
  button.hidden = false;
  button.addEventListener("click", function () {
    var open = button.getAttribute("aria-expanded") !== "true";
    button.setAttribute("aria-expanded", String(open));
    nav.classList.toggle("open", open);
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && button.getAttribute("aria-expanded") === "true") {
      button.setAttribute("aria-expanded", "false");
      nav.classList.remove("open");
      button.focus();
    }
  });
})();

// A table too wide for the screen scrolls sideways inside its .table-wrap; keyboard users reach
// that scroll only if the wrapper can take focus, and screen readers announce it as a region
// named after the table (its caption, else the nearest heading above it).
(function () {
  "use strict";
  document.querySelectorAll(".table-wrap").forEach(function (wrap) {
    if (wrap.hasAttribute("tabindex")) return;
    var table = wrap.querySelector("table");
    var caption = table && table.caption ? table.caption.textContent : "";
    var heading = "";
    for (var el = wrap.previousElementSibling || wrap.parentElement; el && !heading; ) {
      if (/^H[1-6]$/.test(el.tagName)) heading = el.textContent;
      el = el.previousElementSibling || (el.parentElement !== document.body ? el.parentElement : null);
    }
    wrap.setAttribute("tabindex", "0");
    wrap.setAttribute("role", "region");
    wrap.setAttribute("aria-label", (caption || heading || "Table").trim());
  });
})();
