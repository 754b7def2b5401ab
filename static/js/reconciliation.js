// Staff reconciliation dashboard: two uPlot charts from the JSON the page embeds.
(function () {
  "use strict";
  function data(id) { return JSON.parse(document.getElementById(id).textContent); }
  function width(el) { return Math.max(320, el.clientWidth || 800); }
  function chart(elId, series, columns, opts) {
    var el = document.getElementById(elId);
    if (!el || typeof uPlot === "undefined") { return; }
    var plot = new uPlot(Object.assign({ width: width(el), height: 280, series: series,
      scales: { x: { time: true } }, axes: [{}, { size: 70 }] }, opts || {}), columns, el);
    window.addEventListener("resize", function () { plot.setSize({ width: width(el), height: 280 }); });
  }
  var t = data("tokens-data");
  chart("tokens-chart", [{}, { label: "reported by OpenAI", stroke: "#c0392b", width: 2 },
    { label: "metered by us", stroke: "#2e86de", width: 2 }], [t.x, t.reported, t.metered]);
  var m = data("money-data");
  var bars = uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.4, 60] }) : undefined;
  // Daily figures on a daily axis: one tick per day (or per week when days are too many to
  // label), written as UTC dates; uPlot's automatic time axis would tick hours.
  function utcDay(ts) { return new Date(ts * 1000).toISOString().slice(0, 10); }
  chart("money-chart", [{ value: function (u, ts) { return ts == null ? "" : utcDay(ts); } },
    { label: "revenue $", stroke: "#27ae60", fill: "rgba(39,174,96,0.3)", paths: bars },
    { label: "OpenAI cost $", stroke: "#c0392b", fill: "rgba(192,57,43,0.3)", paths: bars },
    { label: "margin $", stroke: "#555", width: 2 }], [m.x, m.revenue_usd, m.cost_usd, m.margin_usd],
    { axes: [{ incrs: [86400, 7 * 86400, 28 * 86400], space: 70,
               values: function (u, splits) { return splits.map(utcDay); } }, { size: 70 }] });
})();
