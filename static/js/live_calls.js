// Staff "Live calls": apply the supervisor's `call` pushes (live.js re-dispatches them as
// `live:call` events) to the matching row; a call that is no longer open greys out.
(function () {
  "use strict";
  var OPEN = { pending: true, active: true, ending: true };

  function set(row, field, text) {
    var cell = row.querySelector('[data-field="' + field + '"]');
    if (cell) cell.textContent = text;
  }

  document.addEventListener("live:call", function (event) {
    var call = event.detail || {};
    if (!call.id) return;
    var row = document.querySelector('tr[data-call-id="' + call.id + '"]');
    if (!row) return;
    var tokens = 0;
    Object.keys(call.tokens || {}).forEach(function (k) { tokens += call.tokens[k] || 0; });
    set(row, "state", call.state || "");
    set(row, "tokens", String(tokens));
    if (call.credits_used !== undefined) set(row, "credits_used", String(call.credits_used));
    if (call.seconds_left !== undefined && call.seconds_left !== null) set(row, "seconds_left", call.seconds_left + " s");
    set(row, "warning", call.warning ? "⚠ " + call.warning : "");
    if (call.state && !OPEN[call.state]) row.style.opacity = "0.5";
  });
})();
