"""The card saved for auto top-up (docs/billing.md "Auto top-up"): stored on the wallet from a
Stripe PaymentMethod that belongs to the wallet's Customer, and made that Customer's default for
invoices. Two ways in: a setup-mode Checkout (`topups.save_card_from_setup`) and a pack bought with
"save this card" ticked (`save_card_from_purchase`, called by checkout's fulfilment).

Below `checkout` and `topups` (it imports only the models, the locks and the Stripe client).
"""

from __future__ import annotations

import logging

from django.db import transaction

from billing import locks, stripe_client
from billing.exceptions import StripeFailure
from billing.models import Purchase, Wallet
from billing.stripe_client import StripeObject

logger = logging.getLogger(__name__)

SAVE_CARD_METADATA = "save_card"  # in a Checkout Session's metadata: "1" when the buyer ticked it


def store_card(*, wallet: Wallet, method: StripeObject) -> Wallet:
    """Make `method` (a PaymentMethod object, attached to the wallet's Customer) the saved card."""
    card = method.get("card") or {}
    if wallet.payment_method_id != method["id"]:
        stripe_client.set_default_payment_method(customer_id=wallet.stripe_customer_id, payment_method_id=method["id"])
    with transaction.atomic(durable=True):
        locked = locks.wallet_by_pk_for_update(wallet_id=wallet.pk)
        locked.payment_method_id = method["id"]
        locked.card_brand = str(card.get("brand") or "")[:20]
        locked.card_last4 = str(card.get("last4") or "")[:4]
        locked.save(update_fields=["payment_method_id", "card_brand", "card_last4", "updated_at"])
    return locked


def save_card_from_purchase(*, purchase: Purchase, session: StripeObject) -> Wallet | None:
    """After a paid checkout whose buyer ticked "save this card for auto top-up"
    (`payment_intent_data[setup_future_usage]=off_session`, which attaches the card to the
    Customer): store the PaymentIntent's card. Stripe's own PaymentIntent decides (retrieved with
    its PaymentMethod); a failure is logged and leaves the card unsaved (the purchase stands)."""
    if (session.get("metadata") or {}).get(SAVE_CARD_METADATA) != "1" or not purchase.payment_intent_id:
        return None
    wallet = Wallet.objects.get(user_id=purchase.user_id)
    try:
        intent = stripe_client.retrieve_payment_intent(purchase.payment_intent_id, expand=["payment_method"])
        method = intent.get("payment_method")
        if (intent.get("status") != "succeeded" or intent.get("setup_future_usage") != "off_session"
                or not isinstance(method, dict) or method.get("customer") != wallet.stripe_customer_id):
            return None
        return store_card(wallet=wallet, method=method)
    except StripeFailure as exc:
        logger.warning("could not save the card of purchase %s: %s", purchase.public_id, exc)
        return None
