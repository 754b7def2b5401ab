"""Credit packs bought through Stripe Checkout: the checkout session, its fulfilment (credits
granted exactly once, only for a paid session that matches its pack), the purchases a lost
webhook left behind, and the invoice events of purchases (`record_invoice`).

Stripe is called before or after the transactions here, never inside one.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing import locks, notifications, stripe_client
from billing.exceptions import StripeFailure, StripeUnavailable, UnknownPack
from billing.models import CreditPack, Purchase, Wallet
from billing.services import caps, cards
from billing.services.invoices import store_invoice_links
from billing.services.ledger import Kind, get_wallet, post_entry
from billing.stripe_client import StripeObject

if TYPE_CHECKING:
    from accounts.models import User

logger = logging.getLogger(__name__)


def start_checkout(
    *, user: User, pack_key: str, success_url: str, cancel_url: str, save_card: bool = False,
) -> Purchase:
    """Make a pending Purchase for an active pack, then its Stripe Checkout Session.

    The browser names only the pack; price and credits come from the CreditPack row. The
    success URL gets Stripe's `{CHECKOUT_SESSION_ID}` template appended. Every session makes a
    Stripe invoice once paid; `STRIPE_AUTOMATIC_TAX` adds tax on top of the pack's price and
    `STRIPE_ALLOW_PROMOTION_CODES` lets the buyer enter a code (`_invoice_and_tax_params`).
    Raises `UnknownPack`, `PaymentsNotConfigured` or `StripeFailure` (the purchase is then
    marked failed).
    """
    pack = CreditPack.objects.filter(key=str(pack_key), active=True).first()
    if pack is None:
        raise UnknownPack(str(pack_key))
    stripe_client.ensure_configured()
    with transaction.atomic(durable=True):
        # The monthly spending cap, counted under the wallet's lock so racing purchases add up.
        caps.check_purchase(wallet=locks.wallet_for_update(user_id=user.pk), amount_cents=pack.price_cents)
        purchase = Purchase.objects.create(
            user_id=user.pk, pack=pack, credits=pack.credits, amount_cents=pack.price_cents,
            subtotal_cents=pack.price_cents, currency=pack.currency.lower(),
        )
    try:
        customer_id = _stripe_customer_for(user)
        metadata = {
            "purchase_id": str(purchase.public_id),
            "user_id": str(user.pk),
            "pack": pack.key,
            "credits": str(pack.credits),
        }
        if save_card:  # "save this card for auto top-up": Stripe attaches it to the Customer (cards)
            metadata[cards.SAVE_CARD_METADATA] = "1"
        if pack.stripe_price_id:
            line_item: dict[str, Any] = {"price": pack.stripe_price_id, "quantity": 1}
        else:
            line_item = {
                "price_data": {
                    "currency": purchase.currency,
                    "unit_amount": purchase.amount_cents,
                    "product_data": {"name": f"{pack.name}: {pack.credits:,} credits"},
                    # Before tax, as the buy page says (`_invoice_and_tax_params`).
                    **({"tax_behavior": "exclusive"} if settings.STRIPE_AUTOMATIC_TAX else {}),
                },
                "quantity": 1,
            }
        joiner = "&" if "?" in success_url else "?"
        # The cancel link names the purchase, so the page it returns to can mark it canceled.
        cancel_joiner = "&" if "?" in cancel_url else "?"
        cancel_url = f"{cancel_url}{cancel_joiner}purchase={purchase.public_id}"
        session = stripe_client.create_checkout_session(
            params={
                "mode": "payment",
                "line_items": [line_item],
                "client_reference_id": str(user.pk),
                "customer": customer_id,
                "metadata": metadata,
                "payment_intent_data": {
                    "metadata": metadata, **({"setup_future_usage": "off_session"} if save_card else {}),
                },
                "success_url": f"{success_url}{joiner}session_id={{CHECKOUT_SESSION_ID}}",
                "cancel_url": cancel_url,
                **_invoice_and_tax_params(pack, metadata),
            },
            idempotency_key=f"checkout:{purchase.public_id}",
        )
    except StripeFailure as exc:
        Purchase.objects.filter(pk=purchase.pk, status=Purchase.Status.PENDING).update(
            status=Purchase.Status.FAILED, failure_reason=f"Could not start the checkout: {exc}"[:500]
        )
        raise
    expires_at = session.get("expires_at")
    Purchase.objects.filter(pk=purchase.pk).update(
        checkout_session_id=session["id"], checkout_url=session["url"],
        expires_at=datetime.fromtimestamp(expires_at, tz=UTC) if expires_at else None,
    )
    purchase.refresh_from_db()
    return purchase


def _invoice_and_tax_params(pack: CreditPack, metadata: dict[str, str]) -> dict[str, Any]:
    """The Checkout parameters for the purchase's invoice, tax and promotion codes.

    - `invoice_creation`: a payment-mode session makes no invoice unless asked; with it Stripe
      creates one when the payment succeeds, paid, and names it in `session.invoice` (Stripe,
      "Send post-payment invoices with Checkout", docs.stripe.com/payments/checkout/post-payment-invoices).
      Its metadata names the purchase, so an `invoice.*` event can be matched to it.
    - `automatic_tax` (STRIPE_AUTOMATIC_TAX): Stripe Tax adds tax from the buyer's address, which
      Checkout collects as needed. For a session with an existing Customer, Checkout may use the
      address it collects only with `customer_update[address]=auto`, which saves it on the Customer
      (docs.stripe.com/tax/checkout, "Existing customer"). An inline price says it is before tax
      (`tax_behavior=exclusive`): what the buy page shows is then what the subtotal is. A pack with
      its own Stripe Price keeps that Price's tax behaviour (staff set it to exclusive).
    - `allow_promotion_codes` (STRIPE_ALLOW_PROMOTION_CODES): a code field on Stripe's page. A
      discount lowers `amount_total`, never the subtotal fulfilment checks against the pack.
    """
    params: dict[str, Any] = {
        "invoice_creation": {
            "enabled": True,
            "invoice_data": {
                "description": f"{pack.name}: {pack.credits:,} credits",
                "metadata": {"purchase_id": metadata["purchase_id"], "user_id": metadata["user_id"]},
            },
        },
    }
    if settings.STRIPE_AUTOMATIC_TAX:
        params["automatic_tax"] = {"enabled": True}
        params["customer_update"] = {"address": "auto"}
    if settings.STRIPE_ALLOW_PROMOTION_CODES:
        params["allow_promotion_codes"] = True
    return params


def _stripe_customer_for(user: User) -> str:
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


def _session_problem(purchase: Purchase, session: StripeObject) -> str:
    """Why a retrieved Checkout Session does not match its purchase ("" when it does).

    The pack's price is checked against the subtotal (`amount_subtotal`, before discounts and
    tax), never against `amount_total`: a promotion code lowers the total and Stripe Tax raises
    it, and either way the buyer bought the pack (Stripe: the session's `total_details`)."""
    if session.get("mode") != "payment":
        return f"mode is {session.get('mode')!r}, not 'payment'"
    if str(session.get("client_reference_id")) != str(purchase.user_id):
        return "client_reference_id is not the buyer"
    if (session.get("metadata") or {}).get("purchase_id") not in (None, str(purchase.public_id)):
        return "metadata names another purchase"
    if (session.get("currency") or "").lower() != purchase.currency:
        return f"currency {session.get('currency')!r} is not {purchase.currency!r}"
    price_cents = _pack_price_cents(purchase)
    if session.get("amount_subtotal") != price_cents:
        return f"amount_subtotal {session.get('amount_subtotal')} is not {price_cents}"
    if not isinstance(session.get("amount_total"), int) or session["amount_total"] < 0:
        return f"amount_total {session.get('amount_total')!r} is not an amount"
    items = ((session.get("line_items") or {}).get("data")) or []
    if len(items) != 1 or items[0].get("quantity") != 1:
        return "the session does not hold exactly one pack"
    price = items[0].get("price") or {}
    pack = purchase.pack
    if pack.stripe_price_id:
        # Credits come from our pack table, looked up by the price Stripe charged.
        if price.get("id") != pack.stripe_price_id:
            return f"price {price.get('id')!r} is not the pack's price"
    elif price.get("unit_amount") != price_cents or (price.get("currency") or "").lower() != purchase.currency:
        return "the line item's price is not the pack's price"
    return ""


def _pack_price_cents(purchase: Purchase) -> int:
    """The pack's price when the purchase was made (its subtotal; purchases made before the
    subtotal was stored have only `amount_cents`, which then was the price)."""
    return purchase.subtotal_cents if purchase.subtotal_cents is not None else purchase.amount_cents


def _record_charge(purchase: Purchase, session: StripeObject) -> None:
    """Copy what the buyer was charged from a paid session onto the purchase (saved by the caller):
    the subtotal, a promotion code's discount, the tax, `amount_cents` = `amount_total` (what
    refunds and disputes are measured against), and the invoice Checkout made for it."""
    totals = session.get("total_details") or {}
    purchase.subtotal_cents = session["amount_subtotal"]
    purchase.discount_cents = int(totals.get("amount_discount") or 0)
    purchase.tax_cents = int(totals.get("amount_tax") or 0)
    purchase.amount_cents = session["amount_total"]
    invoice = session.get("invoice")
    purchase.invoice_id = (invoice.get("id") if isinstance(invoice, dict) else invoice) or purchase.invoice_id


# Stripe's fulfilment guide grants whatever is not "unpaid": "no_payment_required" is a completed
# session a 100% promotion code made free (docs.stripe.com/checkout/fulfillment, "Create a
# fulfillment function"). "unpaid" after completion is a bank debit still processing.
FULFILLED_PAYMENT_STATUSES = {"paid", "no_payment_required"}


def fulfil_checkout(*, session_id: str) -> Purchase | None:
    """Bring a purchase up to date with its Checkout Session; grant its credits exactly once.

    Called by the webhook task (completed, async_payment_succeeded, expired), by the success
    page and by the reconciliation sweep, possibly concurrently. Retrieves the session with its
    line items; grants only when it is paid (or a promotion code made it free) and the session
    matches the pack; records the charge (subtotal, discount, tax, total) and the session's
    invoice. The invoice's links are fetched after the commit (`billing.services.invoices`), never
    holding fulfilment up. Returns the purchase, or None for a session we did not create.
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
    payment_status = session.get("payment_status")
    if payment_status != "paid" and not (payment_status in FULFILLED_PAYMENT_STATUSES and session.get("status") == "complete"):
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
            _record_charge(locked, session)
            post_entry(
                wallet, credits=locked.credits, kind=Kind.PURCHASE,
                idempotency_key=f"purchase:{locked.public_id}", reference=f"purchase:{locked.public_id}",
                purchase=locked,
                memo=f"{purchase.pack.name} pack, {locked.amount_display}",
            )
            locked.status = Purchase.Status.PAID
            locked.credited_at = timezone.now()
            locked.failure_reason = ""
            locked.payment_intent_id = session.get("payment_intent") or None
            locked.save()
            notifications.purchase_fulfilled(locked)
    cards.save_card_from_purchase(purchase=locked, session=session)  # when the buyer asked to save it
    return locked


def fail_checkout(*, session_id: str, reason: str) -> Purchase | None:
    """A delayed payment failed (or was declined): the purchase is failed, nothing is granted."""
    updated = Purchase.objects.filter(
        checkout_session_id=session_id, status__in=[Purchase.Status.PENDING, Purchase.Status.PROCESSING]
    ).update(status=Purchase.Status.FAILED, failure_reason=reason[:500])
    if not updated:
        return Purchase.objects.filter(checkout_session_id=session_id).first()
    return Purchase.objects.get(checkout_session_id=session_id)


def cancel_checkout(*, user: User, public_id: str) -> Purchase | None:
    """The buyer left Stripe Checkout by its cancel link: the purchase is canceled and its session
    expired at Stripe, so it cannot be paid later by mistake. Returns None when no waiting purchase
    of this user has that id (already paid, expired, or not theirs).

    Marked canceled before Stripe is asked: if the buyer paid meanwhile (another tab), the expiry is
    refused and the payment wins (`fulfil_checkout` grants a paid session whatever the status).
    The `checkout.session.expired` event that follows leaves a canceled purchase as it is.
    """
    purchase = Purchase.objects.filter(public_id=public_id, user_id=user.pk).first()
    if purchase is None:
        return None
    updated = Purchase.objects.filter(pk=purchase.pk, status=Purchase.Status.PENDING).update(
        status=Purchase.Status.CANCELED, checkout_url=""
    )
    if not updated:
        return None
    if purchase.checkout_session_id:
        try:
            stripe_client.expire_checkout_session(purchase.checkout_session_id)
        except StripeFailure as exc:
            # Not open any more (paid in another tab, or expired already): Stripe's own record
            # decides; a paid session is credited.
            logger.info("could not expire checkout %s: %s", purchase.checkout_session_id, exc)
            fulfil_checkout(session_id=purchase.checkout_session_id)
    return Purchase.objects.get(pk=purchase.pk)


def expire_stale_checkout(*, purchase_id: int) -> Purchase:
    """A purchase still waiting past its session's `expires_at`: ask Stripe where the session
    stands (a lost `checkout.session.expired` or `completed` event) and, if it is somehow still
    open, expire it, so the purchase ends Expired (or Paid) instead of waiting forever."""
    purchase = Purchase.objects.get(pk=purchase_id)
    session_id = purchase.checkout_session_id
    if session_id is None or purchase.status != Purchase.Status.PENDING:
        return purchase
    session = stripe_client.retrieve_checkout_session(session_id)
    if session.get("status") == "open":
        try:
            stripe_client.expire_checkout_session(session_id)
        except StripeUnavailable:
            raise
        except StripeFailure as exc:  # completed in between: fulfil below reads it
            logger.info("could not expire stale checkout %s: %s", session_id, exc)
    return fulfil_checkout(session_id=session_id) or purchase


def stale_checkouts(*, now: datetime | None = None, limit: int = 200) -> list[int]:
    """Ids of purchases still waiting for payment after their checkout session's `expires_at`."""
    return list(
        Purchase.objects.filter(
            status=Purchase.Status.PENDING, expires_at__lt=now or timezone.now(), checkout_session_id__isnull=False
        ).order_by("expires_at").values_list("pk", flat=True)[:limit]
    )


def purchase_for_payment_intent(payment_intent_id: str | None) -> Purchase | None:
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



def _purchase_named_by(invoice: StripeObject) -> Purchase | None:
    public_id = (invoice.get("metadata") or {}).get("purchase_id")
    try:
        return Purchase.objects.filter(public_id=uuid.UUID(str(public_id))).first()
    except ValueError:
        return None


def _adopt_session_invoice(purchase: Purchase, invoice_id: str) -> None:
    """A purchase credited while its session named no invoice yet: take the invoice id from
    Stripe's session record if it is this one."""
    assert purchase.checkout_session_id is not None  # checked by the caller
    session = stripe_client.retrieve_checkout_session(purchase.checkout_session_id)
    named = session.get("invoice")
    if (named.get("id") if isinstance(named, dict) else named) == invoice_id:
        Purchase.objects.filter(pk=purchase.pk, invoice_id="").update(invoice_id=invoice_id)


def record_invoice(*, invoice: StripeObject) -> Purchase | None:
    """`invoice.finalized`: store the invoice's links on its purchase (checkout's or top-up's).

    Events come in any order: when the invoice's event arrives before `checkout.session.completed`,
    the purchase its metadata names is first brought up to date from Stripe's session (which
    credits it and stores the session's invoice id), as refunds do through the PaymentIntent.
    Replays write the same links again: nothing changes.
    Returns the purchase, or None for an invoice that is not one of ours.
    """
    invoice_id = invoice.get("id")
    if not invoice_id:
        return None
    purchase = Purchase.objects.filter(invoice_id=invoice_id).first()
    if purchase is None:
        named = _purchase_named_by(invoice)
        if named is None or not named.checkout_session_id:
            return None
        if named.credited_at is None:
            fulfil_checkout(session_id=named.checkout_session_id)
        elif not named.invoice_id:
            _adopt_session_invoice(named, invoice_id)
        purchase = Purchase.objects.filter(invoice_id=invoice_id).first()
        if purchase is None:
            return None
    store_invoice_links(invoice)
    return Purchase.objects.get(pk=purchase.pk)


def stale_purchases_to_reconcile(*, older_than_seconds: int) -> list[str]:
    """Session ids of purchases still pending or processing after a while (a lost webhook)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    session_ids = Purchase.objects.filter(
        status__in=[Purchase.Status.PENDING, Purchase.Status.PROCESSING],
        checkout_session_id__isnull=False,
        created_at__lt=cutoff,
    ).values_list("checkout_session_id", flat=True)[:200]
    return [session_id for session_id in session_ids if session_id is not None]  # never None: filtered


def settings_summary() -> dict[str, bool]:
    """Non-secret facts about the payment configuration, for pages and admin."""
    return {"configured": bool(settings.STRIPE_SECRET_KEY), "livemode": stripe_client.livemode()}
