"""The auto top-up's trigger: crossings of the wallet's threshold (docs/billing.md "Auto top-up").

A crossing is a stretch of time during which the wallet's available credits (balance − held) are
below `auto_topup_threshold`. `Wallet.auto_topup_crossing` numbers them; the top-up of crossing n
is the Purchase whose unique `topup_key` is "wallet:<id>:<n>", so however many settlements, holds,
workers and retries see the wallet below its threshold, crossing n buys at most once. The counter
moves on (re-arms) only once available credits are back at or above the threshold after crossing
n had its top-up.

Called with a wallet row whose figures are current, right after a hold was placed or settled
(after the one-statement SQL of `holds`, from the row it returned; never inside it), and after a
top-up was credited. Without
auto top-up it costs nothing: the wallet's own fields decide, no query.

Only imports of the models: `holds` sits above it, and the task (`billing.tasks.auto_top_up`) far
above, so billing.tasks hands its `.delay` over when it is imported (`enqueue_with`; billing's
AppConfig imports billing.tasks in every process, web, worker and supervisor alike).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from django.db import transaction
from django.db.models import Exists, F

from billing.models import Purchase, Wallet


def topup_key(wallet_id: int, crossing: int) -> str:
    return f"wallet:{wallet_id}:{crossing}"


logger = logging.getLogger(__name__)

_enqueuer: Callable[[int, int], object] | None = None


def enqueue_with(enqueue: Callable[[int, int], object]) -> None:
    """Called by billing.tasks with `auto_top_up.delay`."""
    global _enqueuer
    _enqueuer = enqueue


def _enqueue(wallet_id: int, crossing: int) -> None:
    if _enqueuer is None:  # billing.tasks was never imported: a bug in how the process started
        logger.error("auto top-up of wallet %s (crossing %s) not enqueued: billing.tasks is not loaded",
                     wallet_id, crossing)
        return
    _enqueuer(wallet_id, crossing)


def note_available(wallet: Wallet, *, may_rearm: bool = True) -> None:
    """After a change of the wallet's available credits (the row as it is now): below the threshold,
    enqueue the top-up of the current crossing on commit (the task decides, under the wallet's lock,
    whether there is anything to buy); at or above it, re-arm when the current crossing has had
    its top-up (not after a new hold, which only lowers available credits: `may_rearm=False`)."""
    threshold = wallet.auto_topup_threshold
    if not wallet.auto_topup_enabled or not threshold or not wallet.payment_method_id:
        return
    if wallet.balance - wallet.held < threshold:
        # robust: a broker that cannot take it (or an eager run that fails) never fails the hold or
        # settlement that already committed; the next change below the threshold enqueues again.
        transaction.on_commit(partial(_enqueue, wallet.pk, wallet.auto_topup_crossing), robust=True)
    elif may_rearm:
        rearm(wallet_id=wallet.pk, crossing=wallet.auto_topup_crossing)


def rearm(*, wallet_id: int, crossing: int) -> bool:
    """Move the crossing counter on from `crossing` if that crossing had its top-up and available
    credits are at or above the threshold now: one conditional UPDATE (racing callers move it once)."""
    had_top_up = Exists(Purchase.objects.filter(topup_key=topup_key(wallet_id, crossing)))
    return bool(
        Wallet.objects.filter(pk=wallet_id, auto_topup_crossing=crossing)
        .filter(had_top_up, balance__gte=F("held") + F("auto_topup_threshold"))
        .update(auto_topup_crossing=F("auto_topup_crossing") + 1)
    )
