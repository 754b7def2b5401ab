// The success page: credits may arrive a moment after the redirect (the webhook is late, or the
// payment is a bank debit). Refresh the purchase on every live balance push and every few seconds.
(function () {
  "use strict";
  const card = document.getElementById("purchase");
  if (!card) return;
  const final = ["paid", "failed", "expired", "rejected"];
  let polls = 0;
  async function refresh() {
    if (final.includes(card.dataset.status)) return;
    try {
      const response = await fetch(card.dataset.statusUrl, { headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const data = await response.json();
      card.dataset.status = data.status;
      card.querySelector("[data-purchase-status]").textContent = data.status_display;
      card.querySelector("[data-purchase-message]").textContent = data.message;
      document.querySelectorAll("[data-live-balance]").forEach((el) => {
        el.textContent = Number(data.balance.available).toLocaleString();
      });
      if (final.includes(data.status)) {
        const waiting = card.querySelector("[data-waiting]");
        if (waiting) waiting.remove();
      }
    } catch (err) { /* the next tick tries again */ }
  }
  document.addEventListener("live:balance", refresh);
  const timer = setInterval(() => {
    polls += 1;
    if (polls > 100 || final.includes(card.dataset.status)) { clearInterval(timer); return; }
    refresh();
  }, 3000);
})();
