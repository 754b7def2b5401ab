"""Stripe invoices of purchases: their links (Stripe's hosted invoice page and its PDF) for the
Purchases page and the receipt, and the charge in words ("$10.00 + $2.00 tax").

Checkout makes an invoice for every paid session (`invoice_creation`, `checkout.start_checkout`)
and fulfilment stores its id from `session.invoice`; auto top-ups store the id of theirs. The
links exist once Stripe has finalized the invoice and are filled in after the commit that
credited the purchase, by two idempotent paths:

- `refresh_invoice_links` retrieves the invoice (the receipt task calls it before sending);
- `checkout.record_invoice` reads the `invoice.finalized` webhook event (`store_invoice_links`).

Neither holds up or undoes a fulfilment: until one of them succeeds the purchase simply has no
links. Links are only ever written to the purchase whose stored `invoice_id` is that invoice's:
an event's metadata can point to a purchase, never give it an invoice (Stripe's own session
record does, through `checkout.fulfil_checkout`).

This module imports only the models and the Stripe client: the receipt e-mail
(`billing.notifications`, below the ledger) uses it.
"""

from __future__ import annotations

import logging

from billing import stripe_client
from billing.exceptions import PaymentsNotConfigured, StripeFailure
from billing.models import Purchase, money
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


def store_invoice_links(invoice: StripeObject) -> int:
    """Store a (finalized) invoice's links on the purchase whose `invoice_id` it is; returns the
    rows changed (0 for a draft, an invoice of no purchase, or links already stored)."""
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
    except (StripeFailure, PaymentsNotConfigured) as exc:  # StripeUnavailable included: not worth a retry loop
        logger.warning("could not fetch invoice %s of purchase %s: %s", purchase.invoice_id, purchase.public_id, exc)
        return purchase
    store_invoice_links(invoice)
    return Purchase.objects.get(pk=purchase_id)


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
