// One WebSocket per signed-in page: the server pushes live updates (balance, call figures).
// Each message is re-dispatched on `document` as a `live:<type>` CustomEvent for page scripts.
(function () {
  "use strict";
  let delay = 1000;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/live/`);
    socket.addEventListener("open", () => { delay = 1000; document.documentElement.dataset.live = "open"; });
    socket.addEventListener("message", (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (err) { return; }
      if (message.type === "balance" && message.data) {
        document.querySelectorAll("[data-live-balance]").forEach((el) => {
          el.textContent = Number(message.data.available).toLocaleString();
        });
      }
      document.dispatchEvent(new CustomEvent(`live:${message.type}`, { detail: message.data }));
    });
    socket.addEventListener("close", (event) => {
      document.documentElement.dataset.live = "closed";
      if (event.code === 4401) return; // signed out: nothing to reconnect to
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    });
  }
  connect();
})();
