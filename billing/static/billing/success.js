// The success page: credits may arrive a moment after the redirect (the webhook is late, or the
// payment is a bank debit). Refresh the purchase on every live balance push and every few seconds;
// the badge, the note and the wallet figures all come from the same answer, so they never disagree.
(function () {
  "use strict";
  const card = document.getElementById("purchase");
  if (!card) return;
  const final = ["paid", "failed", "expired", "canceled", "rejected"];
  let polls = 0;
  async function refresh() {
    if (final.includes(card.dataset.status)) return;
    try {
      const response = await fetch(card.dataset.statusUrl, { headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const data = await response.json();
      card.dataset.status = data.status;
      const badge = card.querySelector("[data-purchase-status]");
      badge.textContent = data.status_display;
      badge.className = "badge " + (data.badge || "");
      card.querySelector("[data-purchase-message]").textContent = data.message;
      if (window.liveFigures) window.liveFigures.apply(data.balance);
      if (final.includes(data.status)) {
        const waiting = card.querySelector("[data-waiting]");
        if (waiting) waiting.remove();
      }
    } catch (err) { /* the next tick tries again */ }
  }
  document.addEventListener("live:balance", refresh);
  const timer = setInterval(() => {
    polls += 1;
    if (polls > 200 || final.includes(card.dataset.status)) { clearInterval(timer); return; }
    refresh();
  }, 1500);
})();
