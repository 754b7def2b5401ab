"""Emails about a user's credits: the receipt of a fulfilled purchase, and the low-balance warning
(once per crossing of the wallet's threshold, not again until the balance has risen above it).

`note_balance_change` runs inside the ledger's transaction; the emails are Celery tasks enqueued
on commit, so a rolled-back change sends nothing.
"""

from __future__ import annotations

import logging
from functools import partial

from celery import shared_task
from django.db import transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.models import Purchase, Wallet
from realtime_saas.emails import send_to_user

logger = logging.getLogger(__name__)

# Without a threshold of the user's own: this share of the credits of their last pack.
DEFAULT_THRESHOLD_PERCENT = 20


def _threshold() -> Coalesce:
    """The wallet's threshold as SQL: its own, else a share of its user's last pack (NULL when
    neither exists)."""
    last_pack_credits = Subquery(
        Purchase.objects.filter(user_id=OuterRef("user_id"), credited_at__isnull=False)
        .order_by("-credited_at").values("credits")[:1]
    )
    return Coalesce(F("low_balance_threshold"), last_pack_credits * DEFAULT_THRESHOLD_PERCENT / 100)


def low_balance_threshold(*, wallet_id: int) -> int | None:
    """The balance (credits) at or below which the user is warned; None before any purchase
    when the user set none."""
    value = Wallet.objects.filter(pk=wallet_id).annotate(threshold=_threshold()).values_list("threshold", flat=True).get()
    return None if value is None else int(value)


def note_balance_change(*, wallet_id: int, credits: int) -> None:
    """After `credits` moved the wallet's balance (in the same transaction): warn on a fall to or
    below the threshold, once; re-arm the warning when the balance is back above it. Conditional
    UPDATEs, so two changes racing each other cannot both send the warning."""
    wallets = Wallet.objects.filter(pk=wallet_id).annotate(threshold=_threshold())
    if credits < 0:
        if wallets.filter(low_balance_notified_at__isnull=True, balance__lte=F("threshold")).update(
            low_balance_notified_at=timezone.now()
        ):
            transaction.on_commit(partial(send_low_balance_email.delay, wallet_id))
    elif credits > 0:
        wallets.filter(Q(threshold__isnull=True) | Q(balance__gt=F("threshold")), low_balance_notified_at__isnull=False).update(
            low_balance_notified_at=None
        )


def purchase_fulfilled(purchase: Purchase) -> None:
    """The purchase was just credited (inside its transaction): its receipt goes out on commit."""
    transaction.on_commit(partial(send_purchase_receipt_task.delay, purchase.pk))


# Mail is not retried: a lost warning or receipt is not worth a second copy that a slow server
# might then deliver twice; the failure is logged (and the purchase history shows the receipt).
@shared_task(name="billing.send_purchase_receipt", soft_time_limit=30, time_limit=45)
def send_purchase_receipt_task(purchase_pk: int) -> None:
    # Imported here: billing.services imports this module (the ledger notes balance changes).
    from billing.services.invoices import charge_breakdown, refresh_invoice_links

    refresh_invoice_links(purchase_id=purchase_pk)  # the invoice's links, if Stripe has them yet
    purchase = Purchase.objects.select_related("user", "pack").get(pk=purchase_pk)
    balance = Wallet.objects.values_list("balance", flat=True).get(user_id=purchase.user_id)
    try:
        send_to_user(to=purchase.user.email, template="purchase_receipt", context={
            "pack_name": purchase.pack.name, "credits": purchase.credits, "amount_cents": purchase.amount_cents,
            "currency": purchase.currency, "paid_at": purchase.credited_at, "purchase_id": purchase.public_id,
            "balance": balance, "breakdown": charge_breakdown(purchase), "invoice_url": purchase.invoice_url,
            "invoice_pdf": purchase.invoice_pdf,
        })
    except Exception:
        logger.exception("receipt for purchase %s could not be sent", purchase.public_id)


@shared_task(name="billing.send_low_balance", soft_time_limit=30, time_limit=45)
def send_low_balance_email(wallet_pk: int) -> None:
    wallet = Wallet.objects.select_related("user").get(pk=wallet_pk)
    context = {"balance": wallet.balance, "threshold": low_balance_threshold(wallet_id=wallet_pk)}
    try:
        send_to_user(to=wallet.user.email, template="low_balance", context=context)
    except Exception:
        logger.exception("low-balance warning for wallet %s could not be sent", wallet_pk)


def set_low_balance_threshold(*, user_id: int, credits: int | None) -> None:
    """The user's own threshold (None: back to the default share of the last pack). The warning
    is re-armed: the next fall to or below the new threshold sends it."""
    if credits is not None and (isinstance(credits, bool) or not isinstance(credits, int) or credits < 0):
        raise ValueError(f"A threshold is a whole number of credits ≥ 0, not {credits!r}.")
    Wallet.objects.get_or_create(user_id=user_id)
    Wallet.objects.filter(user_id=user_id).update(low_balance_threshold=credits, low_balance_notified_at=None)
