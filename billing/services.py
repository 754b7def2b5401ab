"""The only code that changes a balance (see docs/contracts.md and docs/billing.md).

Every public function here is keyword-only and opens its own `transaction.atomic(durable=True)`,
locks rows in the order of `billing/locks.py` (purchase → wallet → hold), writes, and pushes the
new balance to the user's browsers after commit. Calls to Stripe happen before or after those
transactions, never inside one.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from billing import locks, stripe_client
from billing.exceptions import (
    HoldAlreadyFinal,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidAmount,
    StripeFailure,
    StripeUnavailable,
    UnknownPack,
    WalletBlocked,
)
from billing.models import (
    CreditPack,
    Dispute,
    Hold,
    LedgerEntry,
    Purchase,
    Refund,
    StripeEvent,
    Wallet,
    money,
)

logger = logging.getLogger(__name__)

Kind = LedgerEntry.Kind
GRANT_KINDS = {Kind.PURCHASE, Kind.BONUS, Kind.REFUND_REVERSAL, Kind.DISPUTE_WON, Kind.ADJUSTMENT}
CLAWBACK_KINDS = {Kind.REFUND, Kind.DISPUTE}


@dataclass(frozen=True)
class Settlement:
    """The outcome of settling a hold (the same object on every replay)."""

    hold: Hold
    charged_credits: int
    released_credits: int
    overshoot_credits: int
    uncollected_credits: int
    entry: LedgerEntry | None

    @classmethod
    def of(cls, hold: Hold) -> Settlement:
        return cls(
            hold=hold,
            charged_credits=hold.charged_credits,
            released_credits=hold.released_credits,
            overshoot_credits=hold.overshoot_credits,
            uncollected_credits=hold.uncollected_credits,
            entry=hold.entry,
        )


# --- reading -----------------------------------------------------------------------------------


def get_wallet(user) -> Wallet:
    """The user's wallet, created empty on first use."""
    wallet, _ = Wallet.objects.get_or_create(user_id=user.pk)
    return wallet


def available_credits(user) -> int:
    """Balance − held, or 0 while the wallet is blocked (negative balance, open dispute)."""
    wallet = Wallet.objects.filter(user_id=user.pk).first()
    return wallet.available if wallet else 0


def balance_payload(wallet: Wallet) -> dict:
    return {"balance": wallet.balance, "held": wallet.held, "available": wallet.available}


# --- internals (callers hold the wallet lock) --------------------------------------------------


def _push_balance_on_commit(wallet: Wallet) -> None:
    from realtime_saas.live import push_to_user

    user_id, data = wallet.user_id, balance_payload(wallet)
    transaction.on_commit(lambda: push_to_user(user_id, "balance", data))


def _post(
    wallet: Wallet,
    *,
    credits: int,
    kind: str,
    idempotency_key: str,
    reference: str = "",
    actor=None,
    memo: str = "",
) -> tuple[LedgerEntry, bool]:
    """Append one entry and move the cached balance. Returns (entry, created); a replayed key
    returns the first entry and changes nothing."""
    try:
        with transaction.atomic():  # a savepoint: the unique key, not a prior read, decides
            entry = LedgerEntry.objects.create(
                wallet=wallet,
                credits=credits,
                kind=kind,
                balance_after=wallet.balance + credits,
                idempotency_key=idempotency_key,
                reference=reference[:255],
                actor=actor,
                memo=memo,
            )
    except IntegrityError:
        entry = LedgerEntry.objects.filter(idempotency_key=idempotency_key).first()
        if entry is None:
            raise
        if entry.wallet_id != wallet.pk or entry.credits != credits or entry.kind != kind:
            raise IdempotencyConflict(f"Key {idempotency_key!r} was used for a different entry.") from None
        return entry, False
    wallet.balance += credits
    wallet.save(update_fields=["balance", "updated_at"])
    _push_balance_on_commit(wallet)
    return entry, True


def _positive(credits: int) -> int:
    if isinstance(credits, bool) or not isinstance(credits, int) or credits <= 0:
        raise InvalidAmount(f"Credits must be a positive integer, not {credits!r}.")
    return credits


def _replayed_entry(idempotency_key: str) -> LedgerEntry | None:
    return LedgerEntry.objects.filter(idempotency_key=idempotency_key).first()


# --- ledger ------------------------------------------------------------------------------------


def grant(
    *,
    user,
    credits: int,
    idempotency_key: str,
    kind: str,
    reference: str = "",
    actor=None,
    memo: str = "",
) -> LedgerEntry:
    """Add credits (a purchase, a bonus, a failed refund or won dispute given back)."""
    _positive(credits)
    if kind not in GRANT_KINDS:
        raise InvalidAmount(f"{kind!r} is not a kind of grant.")
    with transaction.atomic(durable=True):
        wallet = locks.wallet_for_update(user_id=user.pk)
        entry, _ = _post(
            wallet, credits=credits, kind=kind, idempotency_key=idempotency_key,
            reference=reference, actor=actor, memo=memo,
        )
    return entry


def clawback(
    *,
    user,
    credits: int,
    idempotency_key: str,
    kind: str,
    reference: str,
    actor=None,
    memo: str = "",
) -> LedgerEntry:
    """Take credits back after a refund or dispute. May take the balance below zero (which blocks
    new holds); holds already placed stay valid."""
    _positive(credits)
    if kind not in CLAWBACK_KINDS:
        raise InvalidAmount(f"{kind!r} is not a kind of clawback.")
    with transaction.atomic(durable=True):
        wallet = locks.wallet_for_update(user_id=user.pk)
        entry, _ = _post(
            wallet, credits=-credits, kind=kind, idempotency_key=idempotency_key,
            reference=reference, actor=actor, memo=memo,
        )
    return entry


def adjust(*, user, credits: int, actor, reason: str, idempotency_key: str | None = None) -> LedgerEntry:
    """A staff correction, signed. The reason is required and recorded with the staff member.
    A removal may not take credits that are held or that the wallet does not have."""
    if isinstance(credits, bool) or not isinstance(credits, int) or credits == 0:
        raise InvalidAmount("An adjustment must be a non-zero whole number of credits.")
    reason = (reason or "").strip()
    if not reason:
        raise InvalidAmount("A reason is required for every adjustment.")
    if actor is None or not getattr(actor, "is_staff", False):
        raise InvalidAmount("Only staff may adjust credits.")
    key = idempotency_key or f"adjust:{user.pk}:{timezone.now().timestamp()}:{actor.pk}"
    with transaction.atomic(durable=True):
        wallet = locks.wallet_for_update(user_id=user.pk)
        if credits < 0 and _replayed_entry(key) is None:
            spare = wallet.balance - wallet.held
            if -credits > spare:
                raise InsufficientCredits(available=max(0, spare), required=-credits)
        entry, _ = _post(
            wallet, credits=credits, kind=Kind.ADJUSTMENT, idempotency_key=key,
            reference=f"staff:{actor.pk}", actor=actor, memo=reason,
        )
    return entry


# --- holds -------------------------------------------------------------------------------------


def place_hold(*, user, credits: int, idempotency_key: str, reference: str, memo: str = "") -> Hold:
    """Reserve credits for something that will cost at most that much.

    Raises `WalletBlocked` (negative balance, open dispute) or `InsufficientCredits` (available <
    credits). A replayed key returns the first hold, whatever its state now.
    """
    _positive(credits)
    with transaction.atomic(durable=True):
        wallet = locks.wallet_for_update(user_id=user.pk)
        existing = Hold.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.wallet_id != wallet.pk or existing.credits != credits:
                raise IdempotencyConflict(f"Key {idempotency_key!r} was used for a different hold.")
            return existing
        return hold_in_transaction(wallet=wallet, credits=credits, idempotency_key=idempotency_key,
                                   reference=reference, memo=memo)


def lock_wallet(*, user) -> Wallet:
    """The user's wallet, locked until the caller's transaction ends (creating it if needed).

    For callers that write their own rows in the same transaction as a hold (a call and its hold
    commit together): lock, decide from `wallet.available`, then `hold_in_transaction`.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("lock_wallet() must run inside transaction.atomic().")
    return locks.wallet_for_update(user_id=user.pk)


def hold_in_transaction(*, wallet: Wallet, credits: int, idempotency_key: str, reference: str,
                        memo: str = "") -> Hold:
    """`place_hold` for a wallet the caller has locked (`lock_wallet`) in its open transaction.

    Same checks; no replay lookup, so the key must be new (a reused key fails on its unique
    constraint and the caller's transaction rolls back, hold and all).
    """
    _positive(credits)
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("hold_in_transaction() must run inside the transaction that locked the wallet.")
    if reason := wallet.blocked_reason:
        raise WalletBlocked(reason=reason)
    available = wallet.balance - wallet.held
    if available < credits:
        raise InsufficientCredits(available=max(0, available), required=credits)
    hold = Hold.objects.create(
        wallet=wallet, credits=credits, reference=reference[:255], memo=memo, idempotency_key=idempotency_key
    )
    wallet.held += credits
    wallet.save(update_fields=["held", "updated_at"])
    _push_balance_on_commit(wallet)
    return hold


def settle_hold(*, hold: Hold, used_credits: int, idempotency_key: str | None = None) -> Settlement:
    """Debit what was used under a hold and release the rest, exactly once.

    `min(used, hold)` is always debited (even if a clawback has since taken the balance below
    zero: the usage happened). Usage beyond the hold is debited from available credits only, never
    below zero; the rest is reported as `uncollected_credits`. A second call returns the first
    Settlement; settling a released hold raises `HoldAlreadyFinal`.
    """
    if isinstance(used_credits, bool) or not isinstance(used_credits, int) or used_credits < 0:
        raise InvalidAmount(f"Used credits must be a whole number ≥ 0, not {used_credits!r}.")
    with transaction.atomic(durable=True):
        wallet = locks.wallet_by_pk_for_update(wallet_id=hold.wallet_id)
        locked = locks.hold_for_update(hold_id=hold.pk)
        if locked.status == Hold.Status.SETTLED:
            return Settlement.of(locked)
        if locked.status != Hold.Status.ACTIVE:
            raise HoldAlreadyFinal(hold_id=locked.pk, status=locked.status)
        charged = min(used_credits, locked.credits)
        overshoot = used_credits - charged
        wallet.held -= locked.credits
        spare = wallet.balance - charged - wallet.held
        collected = max(0, min(overshoot, spare))
        uncollected = overshoot - collected
        wallet.save(update_fields=["held", "updated_at"])
        entry = None
        if charged + collected:
            memo = f"{used_credits:,} credits used ({locked.reference})"
            if uncollected:
                memo += f"; {uncollected:,} used beyond the hold could not be collected"
            entry, _ = _post(
                wallet, credits=-(charged + collected), kind=Kind.USAGE,
                idempotency_key=idempotency_key or f"hold:{locked.pk}:settle",
                reference=locked.reference, memo=memo,
            )
        else:
            _push_balance_on_commit(wallet)
        locked.status = Hold.Status.SETTLED
        locked.charged_credits = charged
        locked.released_credits = locked.credits - charged
        locked.overshoot_credits = overshoot
        locked.uncollected_credits = uncollected
        locked.entry = entry
        locked.finished_at = timezone.now()
        locked.save()
    return Settlement.of(locked)


def release_hold(*, hold: Hold, idempotency_key: str | None = None) -> Hold:
    """Give a hold back whole (nothing was used). Idempotent; a settled hold raises
    `HoldAlreadyFinal`."""
    with transaction.atomic(durable=True):
        wallet = locks.wallet_by_pk_for_update(wallet_id=hold.wallet_id)
        locked = locks.hold_for_update(hold_id=hold.pk)
        if locked.status == Hold.Status.RELEASED:
            return locked
        if locked.status != Hold.Status.ACTIVE:
            raise HoldAlreadyFinal(hold_id=locked.pk, status=locked.status)
        wallet.held -= locked.credits
        wallet.save(update_fields=["held", "updated_at"])
        locked.status = Hold.Status.RELEASED
        locked.released_credits = locked.credits
        locked.finished_at = timezone.now()
        locked.save()
        _push_balance_on_commit(wallet)
    return locked


# --- purchases ---------------------------------------------------------------------------------


def start_checkout(*, user, pack_key: str, success_url: str, cancel_url: str) -> Purchase:
    """Make a pending Purchase for an active pack, then its Stripe Checkout Session.

    The browser names only the pack; price and credits come from the CreditPack row. The
    success URL gets Stripe's `{CHECKOUT_SESSION_ID}` template appended. Raises `UnknownPack`,
    `PaymentsNotConfigured` or `StripeFailure` (the purchase is then marked failed).
    """
    pack = CreditPack.objects.filter(key=str(pack_key), active=True).first()
    if pack is None:
        raise UnknownPack(str(pack_key))
    stripe_client.ensure_configured()
    with transaction.atomic(durable=True):
        purchase = Purchase.objects.create(
            user_id=user.pk, pack=pack, credits=pack.credits, amount_cents=pack.price_cents,
            currency=pack.currency.lower(),
        )
    try:
        customer_id = _stripe_customer_for(user)
        metadata = {
            "purchase_id": str(purchase.public_id),
            "user_id": str(user.pk),
            "pack": pack.key,
            "credits": str(pack.credits),
        }
        if pack.stripe_price_id:
            line_item: dict[str, Any] = {"price": pack.stripe_price_id, "quantity": 1}
        else:
            line_item = {
                "price_data": {
                    "currency": purchase.currency,
                    "unit_amount": purchase.amount_cents,
                    "product_data": {"name": f"{pack.name}: {pack.credits:,} credits"},
                },
                "quantity": 1,
            }
        joiner = "&" if "?" in success_url else "?"
        session = stripe_client.create_checkout_session(
            params={
                "mode": "payment",
                "line_items": [line_item],
                "client_reference_id": str(user.pk),
                "customer": customer_id,
                "metadata": metadata,
                "payment_intent_data": {"metadata": metadata},
                "success_url": f"{success_url}{joiner}session_id={{CHECKOUT_SESSION_ID}}",
                "cancel_url": cancel_url,
            },
            idempotency_key=f"checkout:{purchase.public_id}",
        )
    except StripeFailure as exc:
        Purchase.objects.filter(pk=purchase.pk, status=Purchase.Status.PENDING).update(
            status=Purchase.Status.FAILED, failure_reason=f"Could not start the checkout: {exc}"[:500]
        )
        raise
    Purchase.objects.filter(pk=purchase.pk).update(checkout_session_id=session["id"], checkout_url=session["url"])
    purchase.refresh_from_db()
    return purchase


def _stripe_customer_for(user) -> str:
    wallet = get_wallet(user)
    if wallet.stripe_customer_id:
        return wallet.stripe_customer_id
    # Stripe's idempotency (24 h) makes concurrent first purchases create one customer; the
    # conditional update keeps whichever id was stored first.
    customer_id = stripe_client.create_customer(
        email=user.email, name=getattr(user, "name", "") or "", user_id=user.pk,
        idempotency_key=f"customer:{user.pk}",
    )
    Wallet.objects.filter(pk=wallet.pk, stripe_customer_id="").update(stripe_customer_id=customer_id)
    return Wallet.objects.values_list("stripe_customer_id", flat=True).get(pk=wallet.pk)


def _session_problem(purchase: Purchase, session: dict) -> str:
    """Why a retrieved Checkout Session does not match its purchase ("" when it does)."""
    if session.get("mode") != "payment":
        return f"mode is {session.get('mode')!r}, not 'payment'"
    if str(session.get("client_reference_id")) != str(purchase.user_id):
        return "client_reference_id is not the buyer"
    if (session.get("metadata") or {}).get("purchase_id") not in (None, str(purchase.public_id)):
        return "metadata names another purchase"
    if (session.get("currency") or "").lower() != purchase.currency:
        return f"currency {session.get('currency')!r} is not {purchase.currency!r}"
    if session.get("amount_subtotal") != purchase.amount_cents:
        return f"amount_subtotal {session.get('amount_subtotal')} is not {purchase.amount_cents}"
    items = ((session.get("line_items") or {}).get("data")) or []
    if len(items) != 1 or items[0].get("quantity") != 1:
        return "the session does not hold exactly one pack"
    price = items[0].get("price") or {}
    pack = purchase.pack
    if pack.stripe_price_id:
        # Credits come from our pack table, looked up by the price Stripe charged.
        if price.get("id") != pack.stripe_price_id:
            return f"price {price.get('id')!r} is not the pack's price"
    elif price.get("unit_amount") != purchase.amount_cents or (price.get("currency") or "").lower() != purchase.currency:
        return "the line item's price is not the pack's price"
    return ""


def fulfil_checkout(*, session_id: str) -> Purchase | None:
    """Bring a purchase up to date with its Checkout Session; grant its credits exactly once.

    Called by the webhook task (completed, async_payment_succeeded, expired), by the success
    page and by the reconciliation sweep, possibly concurrently. Retrieves the session with its
    line items; grants only when `payment_status == "paid"` and the session matches the pack.
    Returns the purchase, or None for a session we did not create.
    """
    purchase = Purchase.objects.select_related("pack").filter(checkout_session_id=session_id).first()
    if purchase is None:
        logger.info("ignoring unknown checkout session %s", session_id)
        return None
    if purchase.credited_at is not None or purchase.status == Purchase.Status.REJECTED:
        return purchase
    session = stripe_client.retrieve_checkout_session(session_id)
    if problem := _session_problem(purchase, session):
        logger.error("refusing checkout session %s for purchase %s: %s", session_id, purchase.pk, problem)
        Purchase.objects.filter(pk=purchase.pk, credited_at__isnull=True).update(
            status=Purchase.Status.REJECTED, failure_reason=problem[:500]
        )
        return Purchase.objects.get(pk=purchase.pk)
    if session.get("payment_status") != "paid":
        if session.get("status") == "expired":
            new_status, from_statuses = Purchase.Status.EXPIRED, [Purchase.Status.PENDING, Purchase.Status.PROCESSING]
        elif session.get("status") == "complete":
            new_status, from_statuses = Purchase.Status.PROCESSING, [Purchase.Status.PENDING]
        else:
            return purchase
        Purchase.objects.filter(pk=purchase.pk, status__in=from_statuses).update(status=new_status)
        return Purchase.objects.get(pk=purchase.pk)
    with transaction.atomic(durable=True):
        locked = locks.purchase_for_update(purchase_id=purchase.pk)
        if locked.credited_at is None:
            wallet = locks.wallet_for_update(user_id=locked.user_id)
            _post(
                wallet, credits=locked.credits, kind=Kind.PURCHASE,
                idempotency_key=f"purchase:{locked.public_id}", reference=f"purchase:{locked.public_id}",
                memo=f"{purchase.pack.name} pack, {locked.amount_display}",
            )
            locked.status = Purchase.Status.PAID
            locked.credited_at = timezone.now()
            locked.failure_reason = ""
            locked.payment_intent_id = session.get("payment_intent") or None
            locked.save()
    return locked


def fail_checkout(*, session_id: str, reason: str) -> Purchase | None:
    """A delayed payment failed (or was declined): the purchase is failed, nothing is granted."""
    updated = Purchase.objects.filter(
        checkout_session_id=session_id, status__in=[Purchase.Status.PENDING, Purchase.Status.PROCESSING]
    ).update(status=Purchase.Status.FAILED, failure_reason=reason[:500])
    if not updated:
        return Purchase.objects.filter(checkout_session_id=session_id).first()
    return Purchase.objects.get(checkout_session_id=session_id)


def _purchase_for_payment_intent(payment_intent_id: str | None) -> Purchase | None:
    """The purchase paid by this PaymentIntent. Money events map to a wallet only this way (never
    through data in the event that a customer could influence). When the purchase is not yet
    fulfilled (its completion event is late), fulfil it first from Stripe's own records."""
    if not payment_intent_id:
        return None
    purchase = Purchase.objects.filter(payment_intent_id=payment_intent_id).first()
    if purchase is not None:
        return purchase
    try:
        intent = stripe_client.retrieve_payment_intent(payment_intent_id)
    except StripeUnavailable:
        raise
    except StripeFailure:
        return None  # not a PaymentIntent Stripe knows for this key: not ours
    public_id = (intent.get("metadata") or {}).get("purchase_id")
    candidate = Purchase.objects.filter(public_id=public_id).first() if public_id else None
    if candidate is None or not candidate.checkout_session_id:
        return None
    fulfil_checkout(session_id=candidate.checkout_session_id)
    return Purchase.objects.filter(payment_intent_id=payment_intent_id).first()


def _proportional_credits(purchase: Purchase, amount_cents: int) -> int:
    return purchase.credits * amount_cents // purchase.amount_cents


REFUND_FAILED_STATUSES = {"failed", "canceled"}


def apply_refund(*, refund: dict) -> Refund | None:
    """Apply one Stripe refund (`re_…`) to its purchase's wallet, once.

    Credits are taken back in proportion to the money refunded, computed on the purchase's
    cumulative refunds so several partial refunds total exactly the refunded fraction whatever
    their order. The balance may go negative (docs/billing.md, "Refunds"). A refund seen failed
    or canceled is final: its credits are given back, and a late "pending" copy changes nothing.
    """
    purchase = _purchase_for_payment_intent(refund.get("payment_intent"))
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
                _post(
                    wallet, credits=-credits, kind=Kind.REFUND, idempotency_key=f"refund:{refund_id}",
                    reference=f"purchase:{locked.public_id}",
                    memo=f"{money(amount, locked.currency)} of a {locked.amount_display} purchase refunded",
                )
            return row
        if status in REFUND_FAILED_STATUSES:
            locked.refunded_amount_cents -= row.amount_cents
            locked.refunded_credits -= row.credits
            locked.save(update_fields=["refunded_amount_cents", "refunded_credits", "updated_at"])
            if row.credits:
                _post(
                    wallet, credits=row.credits, kind=Kind.REFUND_REVERSAL,
                    idempotency_key=f"refund-failed:{refund_id}", reference=f"purchase:{locked.public_id}",
                    memo=f"refund {refund_id} {status}",
                )
        row.status = status
        row.save(update_fields=["status", "updated_at"])
    return row


def apply_charge_refunds(*, charge: dict) -> list[Refund]:
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


def apply_dispute(*, dispute: dict) -> Dispute | None:
    """Apply a Stripe dispute (`dp_…`): on first sight claw back the disputed credits and pause new
    holds; when closed `won` (or an inquiry closes) give them back, when `lost` keep them. Any
    order and any number of copies of the events reach the same state."""
    purchase = _purchase_for_payment_intent(dispute.get("payment_intent"))
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
            _push_balance_on_commit(wallet)
            if credits:
                _post(
                    wallet, credits=-credits, kind=Kind.DISPUTE, idempotency_key=f"dispute:{dispute_id}",
                    reference=f"purchase:{locked.public_id}", memo=f"dispute {dispute_id} opened",
                )
        if not row.is_open:
            return row
        row.status = status
        if status in DISPUTE_CLOSED_STATUSES:
            row.is_open = False
            row.closed_at = timezone.now()
            wallet.open_disputes -= 1
            wallet.save(update_fields=["open_disputes", "updated_at"])
            _push_balance_on_commit(wallet)
            if status in DISPUTE_RETURNS_CREDITS:
                locked.disputed_credits -= row.credits
                locked.save(update_fields=["disputed_credits", "updated_at"])
                if row.credits:
                    _post(
                        wallet, credits=row.credits, kind=Kind.DISPUTE_WON,
                        idempotency_key=f"dispute-won:{dispute_id}", reference=f"purchase:{locked.public_id}",
                        memo=f"dispute {dispute_id} closed as {status}",
                    )
        row.save()
    return row


# --- Stripe events -----------------------------------------------------------------------------


def receive_stripe_event(*, event: dict) -> tuple[StripeEvent, bool]:
    """Store a verified webhook event (unique by its id) and enqueue its processing on commit.

    Returns (row, created). A redelivered event that is not processed yet (or failed) is enqueued
    again: processing claims the row, so two deliveries never process it twice.
    """
    from billing.tasks import process_stripe_event_task

    obj = ((event.get("data") or {}).get("object")) or {}
    with transaction.atomic(durable=True):
        try:
            with transaction.atomic():
                row = StripeEvent.objects.create(
                    event_id=event["id"], type=event.get("type", ""), livemode=bool(event.get("livemode")),
                    object_id=str(obj.get("id", ""))[:255], payload=event,
                )
            created = True
        except IntegrityError:
            row = locks.event_for_update(event_pk=StripeEvent.objects.get(event_id=event["id"]).pk)
            row.deliveries = F("deliveries") + 1
            row.save(update_fields=["deliveries", "updated_at"])
            row.refresh_from_db()
            created = False
        if row.status in (StripeEvent.Status.RECEIVED, StripeEvent.Status.FAILED):
            pk = row.pk
            transaction.on_commit(lambda: process_stripe_event_task.delay(pk))
    return row, created


def process_stripe_event(*, event_pk: int) -> StripeEvent | None:
    """Process one stored event: claim it, run its handler, record the outcome.

    Returns None when another worker holds it or it is already done. A handler's exception is
    recorded on the row (status failed, last_error) and re-raised for the task to retry.
    """
    from billing import webhooks

    claimed = StripeEvent.objects.filter(
        pk=event_pk, status__in=[StripeEvent.Status.RECEIVED, StripeEvent.Status.FAILED]
    ).update(status=StripeEvent.Status.PROCESSING, attempts=F("attempts") + 1, updated_at=timezone.now())
    if not claimed:
        return None
    row = StripeEvent.objects.get(pk=event_pk)
    try:
        if row.livemode != stripe_client.livemode():
            status, note = StripeEvent.Status.IGNORED, "livemode does not match the configured key"
        else:
            status, note = webhooks.dispatch(row.payload)
    except Exception as exc:
        StripeEvent.objects.filter(pk=event_pk).update(
            status=StripeEvent.Status.FAILED,
            last_error="".join(traceback.format_exception_only(exc)).strip()[:4000],
            updated_at=timezone.now(),
        )
        raise
    StripeEvent.objects.filter(pk=event_pk).update(
        status=status, note=note[:500], last_error="", processed_at=timezone.now(), updated_at=timezone.now()
    )
    row.refresh_from_db()
    return row


def retry_stripe_event(*, event: StripeEvent, actor=None) -> bool:
    """Staff: process a failed (or stuck) event again. Returns whether it was enqueued."""
    from billing.tasks import process_stripe_event_task

    with transaction.atomic(durable=True):
        updated = StripeEvent.objects.filter(
            pk=event.pk, status__in=[StripeEvent.Status.FAILED, StripeEvent.Status.PROCESSING]
        ).update(status=StripeEvent.Status.FAILED, note=f"retry requested by {actor}"[:500] if actor else "retry")
        if updated:
            pk = event.pk
            transaction.on_commit(lambda: process_stripe_event_task.delay(pk))
    if updated:
        logger.info("stripe event %s re-enqueued by %s", event.event_id, actor)
    return bool(updated)


def stale_purchases_to_reconcile(*, older_than_seconds: int) -> list[str]:
    """Session ids of purchases still pending or processing after a while (a lost webhook)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(
        Purchase.objects.filter(
            status__in=[Purchase.Status.PENDING, Purchase.Status.PROCESSING],
            checkout_session_id__isnull=False,
            created_at__lt=cutoff,
        ).values_list("checkout_session_id", flat=True)[:200]
    )


def settings_summary() -> dict:
    """Non-secret facts about the payment configuration, for pages and admin."""
    return {"configured": bool(settings.STRIPE_SECRET_KEY), "livemode": stripe_client.livemode()}
