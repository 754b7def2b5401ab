// One WebSocket per signed-in page: the server pushes live updates (balance, call figures).
// Each message (each one of a `batch`) is re-dispatched on `document` as a `live:<type>`
// CustomEvent for page scripts.
//
// The wallet figures (nav badge, Available, Balance, Held) must stay true on every open page within
// 2 s of a call's end or a purchase. With a shared channel layer (Redis; data-push="shared") the
// server's pushes do it. Without one (the embedded default), a call settled by the supervisor or a
// purchase fulfilled by a worker pushes into another process, so the page polls the wallet instead
// while it is visible. Either way a tab that learns new figures tells the other tabs
// (BroadcastChannel), and a tab coming back into view asks at once.
(function () {
  "use strict";
  const script = document.currentScript;
  const push = (script && script.dataset.push) || "local";
  const walletUrl = (script && script.dataset.walletUrl) || "";
  const POLL_MS = push === "shared" ? 30000 : 1000; // with pushes, polling is only a safety net
  const numbers = new Intl.NumberFormat(document.documentElement.lang || undefined);
  const channel = "BroadcastChannel" in window ? new BroadcastChannel("realtime-saas-wallet") : null;
  let last = null;

  // Show wallet figures ({available, balance, held}) wherever the page has them.
  function apply(figures, fromOtherTab) {
    if (!figures || figures.available == null) return;
    const key = `${figures.available}/${figures.balance}/${figures.held}`;
    document.querySelectorAll("[data-live-balance]").forEach((el) => {
      el.textContent = numbers.format(Number(figures.available));
    });
    ["balance", "held"].forEach((name) => {
      if (figures[name] == null) return;
      document.querySelectorAll(`[data-live-field="${name}"]`).forEach((el) => {
        el.textContent = numbers.format(Number(figures[name]));
      });
    });
    document.documentElement.dataset.availableCredits = String(figures.available);
    if (key !== last) {
      last = key;
      document.dispatchEvent(new CustomEvent("wallet:figures", { detail: figures }));
      if (channel && !fromOtherTab) channel.postMessage(figures);
    }
  }

  async function refresh() {
    if (!walletUrl) return;
    try {
      const response = await fetch(walletUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.ok) apply(await response.json());
    } catch (err) { /* the next tick tries again */ }
  }

  window.liveFigures = { apply, refresh, format: (n) => numbers.format(Number(n)) };
  if (channel) channel.addEventListener("message", (event) => apply(event.data, true));

  let timer = null;
  function schedule() {
    clearTimeout(timer);
    if (document.visibilityState === "hidden") return;
    timer = setTimeout(async () => { await refresh(); schedule(); }, POLL_MS);
  }
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refresh();
    schedule();
  });
  schedule();

  // A `batch` carries several pushes of one change (a call start: the wallet, then the call).
  function dispatch(message) {
    if (!message) return;
    if (message.type === "batch") {
      if (Array.isArray(message.data)) message.data.forEach(dispatch);
      return;
    }
    if (message.type === "balance" && message.data) apply(message.data);
    document.dispatchEvent(new CustomEvent(`live:${message.type}`, { detail: message.data }));
  }

  let delay = 1000;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    // data-socket-url: daphne on an origin of its own (LIVE_WEBSOCKET_URL); else this site's.
    const url = (script && script.dataset.socketUrl) || `${scheme}://${location.host}/ws/live/`;
    const socket = new WebSocket(url);
    socket.addEventListener("open", () => { delay = 1000; document.documentElement.dataset.live = "open"; });
    socket.addEventListener("message", (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (err) { return; }
      dispatch(message);
    });
    socket.addEventListener("close", (event) => {
      document.documentElement.dataset.live = "closed";
      if (event.code === 4401 || event.code === 4403) return; // signed out or suspended: nothing to reconnect to
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    });
  }
  connect();
})();
