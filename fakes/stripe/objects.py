"""Constructors for Stripe objects in the shapes API version 2026-10-28 returns.

Only the fields a payments integration reads are meaningful; the rest are present with
Stripe's empty values so that code probing for them (``obj["x"]``) behaves as against Stripe.
"""

from __future__ import annotations

from typing import Any

from .store import new_id, now

CARD = {
    "brand": "visa",
    "checks": {"address_line1_check": None, "address_postal_code_check": None, "cvc_check": "pass"},
    "country": "US",
    "exp_month": 12,
    "exp_year": 2034,
    "fingerprint": "FakeFingerprint0",
    "funding": "credit",
    "last4": "4242",
    "network": "visa",
    "three_d_secure": None,
    "wallet": None,
}
DECLINED_CARD = {**CARD, "last4": "0002", "fingerprint": "FakeFingerprint2"}


def no_address() -> dict[str, None]:
    """An address Stripe knows nothing of (every field null), as in billing_details."""
    return {"city": None, "country": None, "line1": None, "line2": None, "postal_code": None, "state": None}


def customer(
    *,
    email: str | None,
    name: str | None,
    description: str | None,
    phone: str | None,
    metadata: dict[str, str],
) -> dict[str, Any]:
    cid = new_id("cus_", 14)
    return {
        "id": cid,
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": now(),
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": description,
        "discount": None,
        "email": email,
        "invoice_prefix": cid[4:12].upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": metadata,
        "name": name,
        "next_invoice_sequence": 1,
        "phone": phone,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def product(
    *, name: str, description: str | None, metadata: dict[str, str], active: bool = True
) -> dict[str, Any]:
    return {
        "id": new_id("prod_", 14),
        "object": "product",
        "active": active,
        "created": now(),
        "default_price": None,
        "description": description,
        "images": [],
        "livemode": False,
        "marketing_features": [],
        "metadata": metadata,
        "name": name,
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "type": "service",
        "unit_label": None,
        "updated": now(),
        "url": None,
    }


def price(
    *,
    currency: str,
    unit_amount: int,
    product_id: str,
    metadata: dict[str, str],
    nickname: str | None = None,
    lookup_key: str | None = None,
    active: bool = True,
    tax_behavior: str | None = None,
) -> dict[str, Any]:
    return {
        "id": new_id("price_1"),
        "object": "price",
        "active": active,
        "billing_scheme": "per_unit",
        "created": now(),
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": lookup_key,
        "metadata": metadata,
        "nickname": nickname,
        "product": product_id,
        "recurring": None,
        "tax_behavior": tax_behavior or "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "one_time",
        "unit_amount": unit_amount,
        "unit_amount_decimal": str(unit_amount),
    }


def line_item(
    *, price_obj: dict[str, Any], quantity: int, description: str, metadata: dict[str, str]
) -> dict[str, Any]:
    subtotal = price_obj["unit_amount"] * quantity
    return {
        "id": new_id("li_1"),
        "object": "item",
        "adjustable_quantity": None,
        "amount_discount": 0,
        "amount_subtotal": subtotal,
        "amount_tax": 0,
        "amount_total": subtotal,
        "currency": price_obj["currency"],
        "description": description,
        "metadata": metadata,
        "price": price_obj,
        "quantity": quantity,
    }


def checkout_session(
    *,
    sid: str,
    url: str,
    currency: str,
    amount: int,
    params: dict[str, Any],
    customer_id: str | None,
    expires_at: int,
) -> dict[str, Any]:
    return {
        "id": sid,
        "object": "checkout.session",
        "adaptive_pricing": {"enabled": False},
        "after_expiration": None,
        "allow_promotion_codes": None,
        "amount_subtotal": amount,
        "amount_total": amount,
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "billing_address_collection": None,
        "cancel_url": params.get("cancel_url"),
        "client_reference_id": params.get("client_reference_id") or None,
        "client_secret": None,
        "collected_information": None,
        "consent": None,
        "consent_collection": None,
        "created": now(),
        "currency": currency,
        "currency_conversion": None,
        "custom_fields": [],
        "custom_text": {
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        "customer": customer_id,
        "customer_creation": None if customer_id else (params.get("customer_creation") or "if_required"),
        "customer_details": None,
        "customer_email": params.get("customer_email") or None,
        "discounts": [],
        "expires_at": expires_at,
        "invoice": None,
        "invoice_creation": {"enabled": False, "invoice_data": {}},
        "livemode": False,
        "locale": params.get("locale") or None,
        "metadata": params.get("metadata") or {},
        "mode": params["mode"],
        "payment_intent": None,
        "payment_link": None,
        "payment_method_collection": "if_required",
        "payment_method_configuration_details": None,
        "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "phone_number_collection": {"enabled": False},
        "recovered_from": None,
        "saved_payment_method_options": None,
        "setup_intent": None,
        "shipping_address_collection": None,
        "shipping_cost": None,
        "shipping_options": [],
        "status": "open",
        "submit_type": params.get("submit_type") or None,
        "subscription": None,
        "success_url": params.get("success_url"),
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": params.get("ui_mode") or "hosted_page",
        "url": url,
        "wallet_options": None,
    }


def payment_intent(
    *,
    amount: int,
    currency: str,
    customer_id: str | None,
    metadata: dict[str, str],
    description: str | None,
    receipt_email: str | None,
    setup_future_usage: str | None,
    method_type: str,
) -> dict[str, Any]:
    pid = new_id("pi_3")
    return {
        "id": pid,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic_async",
        "client_secret": f"{pid}_secret_{new_id('', 25)}",
        "confirmation_method": "automatic",
        "created": now(),
        "currency": currency,
        "customer": customer_id,
        "description": description,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "metadata": metadata,
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": None,
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": [method_type],
        "processing": None,
        "receipt_email": receipt_email,
        "review": None,
        "setup_future_usage": setup_future_usage,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "requires_payment_method",
        "transfer_data": None,
        "transfer_group": None,
    }


def charge(
    *,
    pi: dict[str, Any],
    status: str,
    method_type: str,
    email: str | None,
    name: str | None,
    card: dict[str, Any] | None = None,
) -> dict[str, Any]:
    paid = status == "succeeded"
    if method_type == "card":
        details: dict[str, Any] = {"card": card or CARD, "type": "card"}
    else:
        details = {
            method_type: {
                "account_holder_type": "individual",
                "bank_name": "FAKE BANK",
                "last4": "6789",
                "routing_number": "110000000",
            },
            "type": method_type,
        }
    return {
        "id": new_id("ch_3"),
        "object": "charge",
        "amount": pi["amount"],
        "amount_captured": pi["amount"] if paid else 0,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": new_id("txn_3") if paid else None,
        "billing_details": {
            "address": no_address(),
            "email": email,
            "name": name,
            "phone": None,
            "tax_id": None,
        },
        "calculated_statement_descriptor": "FAKE STRIPE",
        "captured": paid,
        "created": now(),
        "currency": pi["currency"],
        "customer": pi["customer"],
        "description": pi["description"],
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "fraud_details": {},
        "livemode": False,
        # Stripe copies the PaymentIntent's metadata onto its charges.
        "metadata": dict(pi["metadata"]),
        "on_behalf_of": None,
        "outcome": None,
        "paid": paid,
        "payment_intent": pi["id"],
        "payment_method": pi["payment_method"],
        "payment_method_details": details,
        "radar_options": {},
        "receipt_email": pi["receipt_email"],
        "receipt_number": None,
        "receipt_url": None,
        "refunded": False,
        "review": None,
        "shipping": None,
        "source": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
    }


APPROVED_OUTCOME = {
    "advice_code": None,
    "network_advice_code": None,
    "network_decline_code": None,
    "network_status": "approved_by_network",
    "reason": None,
    "risk_level": "normal",
    "risk_score": 12,
    "seller_message": "Payment complete.",
    "type": "authorized",
}
DECLINED_OUTCOME = {
    "advice_code": "try_again_later",
    "network_advice_code": None,
    "network_decline_code": "05",
    "network_status": "declined_by_network",
    "reason": "generic_decline",
    "risk_level": "normal",
    "risk_score": 30,
    "seller_message": "The bank did not return any further details with this decline.",
    "type": "issuer_declined",
}


def refund(
    *, charge_obj: dict[str, Any], amount: int, reason: str | None, status: str, metadata: dict[str, str]
) -> dict[str, Any]:
    return {
        "id": new_id("re_3"),
        "object": "refund",
        "amount": amount,
        "balance_transaction": new_id("txn_3") if status == "succeeded" else None,
        "charge": charge_obj["id"],
        "created": now(),
        "currency": charge_obj["currency"],
        "description": None,
        "destination_details": {
            "card": {
                "reference_status": "pending",
                "reference_type": "acquirer_reference_number",
                "type": "refund",
            },
            "type": "card",
        },
        "failure_balance_transaction": None,
        "failure_reason": None,
        "metadata": metadata,
        "payment_intent": charge_obj["payment_intent"],
        "pending_reason": None,
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": status,
        "transfer_reversal": None,
    }


def dispute(*, charge_obj: dict[str, Any], amount: int, reason: str, status: str) -> dict[str, Any]:
    return {
        "id": new_id("dp_1"),
        "object": "dispute",
        "amount": amount,
        "balance_transactions": [],
        "charge": charge_obj["id"],
        "created": now(),
        "currency": charge_obj["currency"],
        "enhanced_eligibility_types": [],
        "evidence": {
            "access_activity_log": None,
            "billing_address": None,
            "cancellation_policy": None,
            "customer_communication": None,
            "customer_email_address": None,
            "customer_name": None,
            "product_description": None,
            "receipt": None,
            "refund_policy": None,
            "service_date": None,
            "service_documentation": None,
            "uncategorized_text": None,
        },
        "evidence_details": {
            "due_by": now() + 7 * 86400,
            "enhanced_eligibility": {},
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "network_reason_code": "10.4",
        "payment_intent": charge_obj["payment_intent"],
        "payment_method_details": {
            "card": {"brand": "visa", "case_type": "chargeback", "network_reason_code": "10.4"},
            "type": "card",
        },
        "reason": reason,
        "status": status,
    }


def webhook_endpoint(
    *,
    url: str,
    enabled_events: list[str],
    secret: str,
    api_version: str | None,
    description: str | None,
    metadata: dict[str, str],
) -> dict[str, Any]:
    return {
        "id": new_id("we_1"),
        "object": "webhook_endpoint",
        "api_version": api_version,
        "application": None,
        "created": now(),
        "description": description,
        "enabled_events": enabled_events,
        "livemode": False,
        "metadata": metadata,
        "status": "enabled",
        "url": url,
        "_secret": secret,
    }


def payment_method(*, card: Any, customer_id: str | None = None) -> dict[str, Any]:
    """A card PaymentMethod for one of :mod:`fakes.stripe.cards`' test cards.

    Shape: https://docs.stripe.com/api/payment_methods/object. ``_behaviour`` is the fake's
    note of what the card does when charged (never rendered).
    """
    return {
        "id": new_id("pm_1"),
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": {
            "address": no_address(),
            "email": None,
            "name": None,
            "phone": None,
            "tax_id": None,
        },
        "card": {
            "brand": card.brand,
            "checks": {"address_line1_check": None, "address_postal_code_check": None, "cvc_check": "pass"},
            "country": "US",
            "display_brand": card.brand,
            "exp_month": 12,
            "exp_year": 2034,
            "fingerprint": card.fingerprint,
            "funding": "credit",
            "generated_from": None,
            "last4": card.last4,
            "networks": {"available": [card.brand], "preferred": None},
            "regulated_status": "unregulated",
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
        },
        "created": now(),
        "customer": customer_id,
        "customer_account": None,
        "livemode": False,
        "metadata": {},
        "type": "card",
        "_behaviour": card.behaviour,
        "_token": card.token,
    }


def charge_card(pm: dict[str, Any]) -> dict[str, Any]:
    """``payment_method_details.card`` of a Charge made with the PaymentMethod ``pm``."""
    card = pm["card"]
    return {
        **CARD,
        "brand": card["brand"],
        "network": card["brand"],
        "last4": card["last4"],
        "fingerprint": card["fingerprint"],
        "exp_month": card["exp_month"],
        "exp_year": card["exp_year"],
    }


def setup_intent(
    *,
    customer_id: str | None,
    payment_method_id: str | None,
    usage: str,
    metadata: dict[str, str],
    description: str | None,
    payment_method_types: list[str],
) -> dict[str, Any]:
    """Shape: https://docs.stripe.com/api/setup_intents/object."""
    sid = new_id("seti_1")
    return {
        "id": sid,
        "object": "setup_intent",
        "application": None,
        "automatic_payment_methods": None,
        "cancellation_reason": None,
        "client_secret": f"{sid}_secret_{new_id('', 25)}",
        "created": now(),
        "customer": customer_id,
        "customer_account": None,
        "description": description,
        "excluded_payment_method_types": None,
        "flow_directions": None,
        "last_setup_error": None,
        "latest_attempt": None,
        "livemode": False,
        "mandate": None,
        "metadata": metadata,
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": payment_method_id,
        "payment_method_configuration_details": None,
        "payment_method_options": {
            "card": {"mandate_options": None, "network": None, "request_three_d_secure": "automatic"}
        },
        "payment_method_types": payment_method_types,
        "single_use_mandate": None,
        "status": "requires_confirmation" if payment_method_id else "requires_payment_method",
        "usage": usage,
    }


def invoice(
    *,
    customer: dict[str, Any] | None,
    currency: str,
    collection_method: str,
    auto_advance: bool,
    description: str | None,
    metadata: dict[str, str],
    footer: str | None,
    automatic_tax: bool,
    default_payment_method: str | None,
    due_date: int | None,
) -> dict[str, Any]:
    """A draft Invoice in API version 2026-10-28's shape (https://docs.stripe.com/api/invoices/object):
    no ``charge``/``payment_intent`` (payments live in ``payments``), taxes in ``total_taxes``."""
    created = now()
    return {
        "id": new_id("in_1"),
        "object": "invoice",
        "account_country": "US",
        "account_name": "Fake Stripe",
        "account_tax_ids": None,
        "amount_due": 0,
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_paid_off_stripe": 0,
        "amount_remaining": 0,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": auto_advance,
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": automatic_tax,
            "liability": {"type": "self"} if automatic_tax else None,
            "provider": "stripe" if automatic_tax else None,
            "status": "complete" if automatic_tax else None,
        },
        "automatically_finalizes_at": None,
        "billing_reason": "manual",
        "collection_method": collection_method,
        "confirmation_secret": None,
        "created": created,
        "currency": currency,
        "custom_fields": None,
        "customer": customer["id"] if customer else None,
        "customer_account": None,
        "customer_address": None,
        "customer_email": customer["email"] if customer else None,
        "customer_name": customer["name"] if customer else None,
        "customer_phone": customer["phone"] if customer else None,
        "customer_shipping": None,
        "customer_tax_exempt": "none",
        "customer_tax_ids": [],
        "default_payment_method": default_payment_method,
        "default_source": None,
        "default_tax_rates": [],
        "description": description,
        "discounts": [],
        "due_date": due_date,
        "effective_at": None,
        "ending_balance": None,
        "footer": footer,
        "from_invoice": None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {"object": "list", "data": [], "has_more": False, "total_count": 0, "url": ""},
        "livemode": False,
        "metadata": metadata,
        "next_payment_attempt": None,
        "number": None,
        "on_behalf_of": None,
        "parent": None,
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": created,
        "period_start": created,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "draft",
        "status_transitions": {
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "subtotal": 0,
        "subtotal_excluding_tax": 0,
        "test_clock": None,
        "threshold_reason": None,
        "total": 0,
        "total_discount_amounts": [],
        "total_excluding_tax": 0,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": created,
    }


def invoice_item(
    *,
    customer_id: str | None,
    invoice_id: str | None,
    currency: str,
    unit_amount: int,
    quantity: int,
    description: str | None,
    metadata: dict[str, str],
    price_id: str | None,
    product_id: str | None,
) -> dict[str, Any]:
    """Shape: https://docs.stripe.com/api/invoiceitems/object (``pricing`` replaced ``price``)."""
    created = now()
    return {
        "id": new_id("ii_1"),
        "object": "invoiceitem",
        "amount": unit_amount * quantity,
        "currency": currency,
        "customer": customer_id,
        "customer_account": None,
        "date": created,
        "description": description,
        "discountable": True,
        "discounts": [],
        "invoice": invoice_id,
        "livemode": False,
        "metadata": metadata,
        "net_amount": unit_amount * quantity,
        "parent": None,
        "period": {"end": created, "start": created},
        "pricing": (
            {
                "price_details": {"price": price_id, "product": product_id},
                "type": "price_details",
                "unit_amount_decimal": str(unit_amount),
            }
            if price_id
            else None
        ),
        "proration": False,
        "quantity": quantity,
        "quantity_decimal": str(quantity),
        "tax_rates": [],
        "test_clock": None,
    }


def invoice_line(item: dict[str, Any], invoice_id: str) -> dict[str, Any]:
    """The invoice's line for an invoice item (https://docs.stripe.com/api/invoice-line-item/object)."""
    return {
        "id": new_id("il_1"),
        "object": "line_item",
        "amount": item["amount"],
        "currency": item["currency"],
        "description": item["description"],
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": invoice_id,
        "livemode": False,
        "metadata": dict(item["metadata"]),
        "parent": {
            "invoice_item_details": {
                "invoice_item": item["id"],
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": None,
            },
            "subscription_item_details": None,
            "type": "invoice_item_details",
        },
        "period": dict(item["period"]),
        "pretax_credit_amounts": [],
        "pricing": item["pricing"],
        "quantity": item["quantity"],
        "quantity_decimal": item["quantity_decimal"],
        "subscription": None,
        "subtotal": item["amount"],
        "taxes": [],
    }


def invoice_payment(*, invoice_obj: dict[str, Any], pi: dict[str, Any], amount: int) -> dict[str, Any]:
    """Shape: https://docs.stripe.com/api/invoice-payment/object."""
    return {
        "id": new_id("inpay_1"),
        "object": "invoice_payment",
        "amount_paid": None,
        "amount_requested": amount,
        "created": now(),
        "currency": invoice_obj["currency"],
        "invoice": invoice_obj["id"],
        "is_default": True,
        "livemode": False,
        "payment": {"payment_intent": pi["id"], "type": "payment_intent"},
        "status": "open",
        "status_transitions": {"canceled_at": None, "paid_at": None},
    }


def coupon(
    *,
    coupon_id: str | None,
    percent_off: float | None,
    amount_off: int | None,
    currency: str | None,
    duration: str,
    duration_in_months: int | None,
    max_redemptions: int | None,
    redeem_by: int | None,
    name: str | None,
    metadata: dict[str, str],
) -> dict[str, Any]:
    """Shape: https://docs.stripe.com/api/coupons/object."""
    return {
        "id": coupon_id or new_id("", 8),
        "object": "coupon",
        "amount_off": amount_off,
        "applies_to": None,
        "created": now(),
        "currency": currency,
        "currency_options": None,
        "duration": duration,
        "duration_in_months": duration_in_months,
        "livemode": False,
        "max_redemptions": max_redemptions,
        "metadata": metadata,
        "name": name,
        "percent_off": percent_off,
        "redeem_by": redeem_by,
        "times_redeemed": 0,
        "valid": True,
    }


def promotion_code(
    *,
    code: str,
    coupon_id: str,
    active: bool,
    customer_id: str | None,
    expires_at: int | None,
    max_redemptions: int | None,
    metadata: dict[str, str],
    restrictions: dict[str, Any],
) -> dict[str, Any]:
    """Shape: https://docs.stripe.com/api/promotion_codes/object; in this API version the coupon
    is nested as ``promotion: {type: "coupon", coupon}`` (stripe-python 16's PromotionCode and
    Stripe's openapi fixtures3.json), not the older top-level ``coupon``."""
    return {
        "id": new_id("promo_1"),
        "object": "promotion_code",
        "active": active,
        "code": code,
        "created": now(),
        "customer": customer_id,
        "customer_account": None,
        "expires_at": expires_at,
        "livemode": False,
        "max_redemptions": max_redemptions,
        "metadata": metadata,
        "promotion": {"coupon": coupon_id, "type": "coupon"},
        "restrictions": {
            "currency_options": {},
            "first_time_transaction": restrictions.get("first_time_transaction") == "true",
            "minimum_amount": int(restrictions["minimum_amount"]) if restrictions.get("minimum_amount") else None,
            "minimum_amount_currency": restrictions.get("minimum_amount_currency") or None,
        },
        "times_redeemed": 0,
    }
