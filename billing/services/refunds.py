"""Refunds and disputes: credits taken back in proportion to the money Stripe returned or a
dispute holds, and given back when a refund fails or a dispute is won, each exactly once.

Money events reach a wallet only through the purchase their PaymentIntent paid
(`checkout.purchase_for_payment_intent`), never through data a customer could influence.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from billing import locks, stripe_client
from billing.models import Dispute, Purchase, Refund, money
from billing.services.checkout import purchase_for_payment_intent
from billing.services.ledger import Kind, post_entry, push_balance_on_commit
from billing.stripe_client import StripeObject

logger = logging.getLogger(__name__)


def _proportional_credits(purchase: Purchase, amount_cents: int) -> int:
    return purchase.credits * amount_cents // purchase.amount_cents


REFUND_FAILED_STATUSES = {"failed", "canceled"}


def apply_refund(*, refund: StripeObject) -> Refund | None:
    """Apply one Stripe refund (`re_…`) to its purchase's wallet, once.

    Credits are taken back in proportion to the money refunded, computed on the purchase's
    cumulative refunds so several partial refunds total exactly the refunded fraction whatever
    their order. The balance may go negative (docs/billing.md, "Refunds"). A refund seen failed
    or canceled is final: its credits are given back, and a late "pending" copy changes nothing.
    """
    purchase = purchase_for_payment_intent(refund.get("payment_intent"))
    if purchase is None:
        logger.warning("refund %s matches no purchase; ignored", refund.get("id"))
        return None
    refund_id, status = refund["id"], refund.get("status") or "pending"
    amount = int(refund.get("amount") or 0)
    with transaction.atomic(durable=True):
        locked = locks.purchase_for_update(purchase_id=purchase.pk)
        wallet = locks.wallet_for_update(user_id=locked.user_id)
        row = Refund.objects.filter(stripe_refund_id=refund_id).first()
        if row is not None and row.status in REFUND_FAILED_STATUSES:
            return row
        if row is None and status in REFUND_FAILED_STATUSES:
            return Refund.objects.create(stripe_refund_id=refund_id, purchase=locked, amount_cents=amount, status=status)
        if row is None:
            amount = min(amount, locked.amount_cents - locked.refunded_amount_cents)
            target = _proportional_credits(locked, locked.refunded_amount_cents + amount)
            credits = max(0, min(target - locked.refunded_credits, locked.credits - locked.refunded_credits - locked.disputed_credits))
            row = Refund.objects.create(
                stripe_refund_id=refund_id, purchase=locked, amount_cents=amount, status=status, credits=credits
            )
            locked.refunded_amount_cents += amount
            locked.refunded_credits += credits
            locked.save(update_fields=["refunded_amount_cents", "refunded_credits", "updated_at"])
            if credits:
                post_entry(
                    wallet, credits=-credits, kind=Kind.REFUND, idempotency_key=f"refund:{refund_id}",
                    reference=f"purchase:{locked.public_id}", purchase=locked,
                    memo=f"{money(amount, locked.currency)} of a {locked.amount_display} purchase refunded",
                )
            return row
        if status in REFUND_FAILED_STATUSES:
            locked.refunded_amount_cents -= row.amount_cents
            locked.refunded_credits -= row.credits
            locked.save(update_fields=["refunded_amount_cents", "refunded_credits", "updated_at"])
            if row.credits:
                post_entry(
                    wallet, credits=row.credits, kind=Kind.REFUND_REVERSAL,
                    idempotency_key=f"refund-failed:{refund_id}", reference=f"purchase:{locked.public_id}", purchase=locked,
                    memo=f"refund {refund_id} {status}",
                )
        row.status = status
        row.save(update_fields=["status", "updated_at"])
    return row


def apply_charge_refunds(*, charge: StripeObject) -> list[Refund]:
    """`charge.refunded`: apply each refund of the charge by its own id (the payload's cumulative
    `amount_refunded` is never used as a delta)."""
    refunds = (charge.get("refunds") or {}).get("data")
    if refunds is None:
        refunds = stripe_client.list_charge_refunds(charge["id"])
    applied = []
    for refund in refunds:
        refund.setdefault("payment_intent", charge.get("payment_intent"))
        if (row := apply_refund(refund=refund)) is not None:
            applied.append(row)
    return applied


DISPUTE_CLOSED_STATUSES = {"won", "lost", "warning_closed"}
DISPUTE_RETURNS_CREDITS = {"won", "warning_closed"}


def apply_dispute(*, dispute: StripeObject) -> Dispute | None:
    """Apply a Stripe dispute (`dp_…`): on first sight claw back the disputed credits and pause new
    holds; when closed `won` (or an inquiry closes) give them back, when `lost` keep them. Any
    order and any number of copies of the events reach the same state."""
    purchase = purchase_for_payment_intent(dispute.get("payment_intent"))
    if purchase is None:
        logger.warning("dispute %s matches no purchase; ignored", dispute.get("id"))
        return None
    dispute_id, status = dispute["id"], dispute.get("status") or "needs_response"
    with transaction.atomic(durable=True):
        locked = locks.purchase_for_update(purchase_id=purchase.pk)
        wallet = locks.wallet_for_update(user_id=locked.user_id)
        row = Dispute.objects.filter(stripe_dispute_id=dispute_id).first()
        if row is None:
            amount = min(int(dispute.get("amount") or 0), locked.amount_cents)
            credits = min(
                _proportional_credits(locked, amount),
                locked.credits - locked.refunded_credits - locked.disputed_credits,
            )
            row = Dispute.objects.create(
                stripe_dispute_id=dispute_id, purchase=locked, amount_cents=amount, status=status, credits=credits
            )
            locked.disputed_credits += credits
            locked.save(update_fields=["disputed_credits", "updated_at"])
            wallet.open_disputes += 1
            wallet.save(update_fields=["open_disputes", "updated_at"])
            push_balance_on_commit(wallet)
            if credits:
                post_entry(
                    wallet, credits=-credits, kind=Kind.DISPUTE, idempotency_key=f"dispute:{dispute_id}",
                    reference=f"purchase:{locked.public_id}", purchase=locked, memo=f"dispute {dispute_id} opened",
                )
        if not row.is_open:
            return row
        row.status = status
        if status in DISPUTE_CLOSED_STATUSES:
            row.is_open = False
            row.closed_at = timezone.now()
            wallet.open_disputes -= 1
            wallet.save(update_fields=["open_disputes", "updated_at"])
            push_balance_on_commit(wallet)
            if status in DISPUTE_RETURNS_CREDITS:
                locked.disputed_credits -= row.credits
                locked.save(update_fields=["disputed_credits", "updated_at"])
                if row.credits:
                    post_entry(
                        wallet, credits=row.credits, kind=Kind.DISPUTE_WON,
                        idempotency_key=f"dispute-won:{dispute_id}", reference=f"purchase:{locked.public_id}", purchase=locked,
                        memo=f"dispute {dispute_id} closed as {status}",
                    )
        row.save()
    return row

