"""Stripe invoices of purchases: their links (Stripe's hosted invoice page and its PDF) for the
Purchases page and the receipt, and the charge in words ("$10.00 + $2.00 tax").

Checkout makes an invoice for every paid session (`invoice_creation`, `checkout.start_checkout`)
and fulfilment stores its id from `session.invoice`; auto top-ups store the id of theirs. The
links exist once Stripe has finalized the invoice and are filled in after the commit that
credited the purchase, by two idempotent paths:

- `refresh_invoice_links` retrieves the invoice (the receipt task calls it before sending);
- `record_invoice` reads the `invoice.finalized` webhook event.

Neither holds up or undoes a fulfilment: until one of them succeeds the purchase simply has no
links. Links are only ever written to the purchase whose stored `invoice_id` is that invoice's:
an event's metadata can point to a purchase, never give it an invoice (Stripe's own session
record does, through `checkout.fulfil_checkout`).
"""

from __future__ import annotations

import logging
import uuid

from billing import stripe_client
from billing.exceptions import StripeFailure
from billing.models import Purchase, money
from billing.services.checkout import fulfil_checkout
from billing.stripe_client import StripeObject

logger = logging.getLogger(__name__)

URL_MAX_LENGTH = 2000  # Purchase.invoice_url / invoice_pdf


def _links(invoice: StripeObject) -> dict[str, str] | None:
    """The invoice's two links, or None while it has none (a draft) or they are not web links."""
    links = {"invoice_url": invoice.get("hosted_invoice_url"), "invoice_pdf": invoice.get("invoice_pdf")}
    for value in links.values():
        if not isinstance(value, str) or not value.startswith(("https://", "http://")) or len(value) > URL_MAX_LENGTH:
            return None
    return links  # type: ignore[return-value]  # both checked to be strings above


def _store_links(invoice: StripeObject) -> int:
    links = _links(invoice)
    if links is None or not invoice.get("id"):
        return 0
    return Purchase.objects.filter(invoice_id=invoice["id"]).exclude(**links).update(**links)


def refresh_invoice_links(*, purchase_id: int) -> Purchase:
    """Fetch the links of the purchase's invoice from Stripe when they are missing. A Stripe
    failure is logged and leaves them missing (an `invoice.*` event or a later call fills them)."""
    purchase = Purchase.objects.get(pk=purchase_id)
    if not purchase.invoice_id or (purchase.invoice_url and purchase.invoice_pdf):
        return purchase
    try:
        invoice = stripe_client.retrieve_invoice(purchase.invoice_id)
    except StripeFailure as exc:  # StripeUnavailable included: nothing here is worth a retry loop
        logger.warning("could not fetch invoice %s of purchase %s: %s", purchase.invoice_id, purchase.public_id, exc)
        return purchase
    _store_links(invoice)
    return Purchase.objects.get(pk=purchase_id)


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
    """`invoice.finalized`: store the invoice's links on its purchase.

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
    _store_links(invoice)
    return Purchase.objects.get(pk=purchase.pk)


def charge_breakdown(purchase: Purchase) -> str:
    """How a paid purchase's charge was made up, when a discount or tax changed it from the pack's
    price: "$10.00 + $2.00 tax", "$10.00 − $1.00 discount + $1.80 tax", "$12.00 − $12.00 discount";
    "" otherwise. Tax Stripe counted inside the price (a Price with inclusive tax) reads
    "incl. $2.00 tax"."""
    subtotal, discount, tax = purchase.subtotal_cents, purchase.discount_cents, purchase.tax_cents
    if purchase.status != Purchase.Status.PAID or subtotal is None or not (discount or tax):
        return ""
    currency = purchase.currency
    parts = [money(subtotal, currency)]
    if discount:
        parts.append(f"− {money(discount, currency)} discount")
    if tax and purchase.amount_cents == subtotal - discount + tax:
        parts.append(f"+ {money(tax, currency)} tax")
    elif tax:
        parts.append(f"(incl. {money(tax, currency)} tax)")
    return " ".join(parts)
