"""Coupons and promotion codes, and the one discount a Checkout Session can carry.

A coupon says how much comes off (``percent_off`` or ``amount_off`` + ``currency``); a
promotion code is the customer-facing code for a coupon, with its own limits
(https://docs.stripe.com/billing/subscriptions/coupons). A redemption counts when the
session completes; codes that are inactive, expired or used up are refused, as on Stripe.
"""

from __future__ import annotations

import secrets
import string
from typing import Any

from . import objects
from .errors import StripeError, invalid_param, missing_param, no_such
from .forms import check_known, get_bool, get_dict, get_int, get_metadata, get_str
from .store import Store, now

COUPON_PARAMS = {
    "amount_off",
    "applies_to",
    "currency",
    "currency_options",
    "duration",
    "duration_in_months",
    "id",
    "max_redemptions",
    "metadata",
    "name",
    "percent_off",
    "redeem_by",
}
PROMOTION_CODE_PARAMS = {
    "active",
    "code",
    "customer",
    "customer_account",
    "expires_at",
    "max_redemptions",
    "metadata",
    "promotion",
    "restrictions",
}
RESTRICTION_PARAMS = {
    "currency_options",
    "first_time_transaction",
    "minimum_amount",
    "minimum_amount_currency",
}
INVALID_CODE = "This promotion code is invalid."


def create_coupon(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/coupons`` (https://docs.stripe.com/api/coupons/create)."""
    check_known(params, COUPON_PARAMS)
    percent_raw = get_str(params, "percent_off")
    amount_off = get_int(params, "amount_off")
    if (percent_raw is None) == (amount_off is None):
        raise invalid_param(
            "percent_off", "You must pass exactly one of these parameters: amount_off, percent_off."
        )
    percent_off = None
    currency = get_str(params, "currency")
    if percent_raw is not None:
        try:
            percent_off = float(percent_raw)
        except ValueError:
            raise invalid_param("percent_off", f"Invalid decimal: {percent_raw}") from None
        if not 0 < percent_off <= 100:
            raise invalid_param("percent_off", "percent_off must be greater than 0 and at most 100.")
    if amount_off is not None:
        if amount_off <= 0:
            raise invalid_param("amount_off", "amount_off must be a positive integer.")
        if not currency:
            raise missing_param("currency")
    duration = get_str(params, "duration") or "once"
    if duration not in ("once", "forever", "repeating"):
        raise invalid_param("duration", f"Invalid duration: {duration}")
    months = get_int(params, "duration_in_months")
    if duration == "repeating" and not months:
        raise missing_param("duration_in_months")
    max_redemptions = get_int(params, "max_redemptions")
    if max_redemptions is not None and max_redemptions < 1:
        raise invalid_param("max_redemptions", "max_redemptions must be a positive integer.")
    redeem_by = get_int(params, "redeem_by")
    if redeem_by is not None and redeem_by <= now():
        raise invalid_param("redeem_by", "redeem_by must be in the future.")
    coupon_id = get_str(params, "id")
    if coupon_id and coupon_id in store.objects:
        raise StripeError("Coupon already exists.", code="resource_already_exists", param="id")
    c = objects.coupon(
        coupon_id=coupon_id,
        percent_off=percent_off,
        amount_off=amount_off,
        currency=currency.lower() if currency else None,
        duration=duration,
        duration_in_months=months if duration == "repeating" else None,
        max_redemptions=max_redemptions,
        redeem_by=redeem_by,
        name=get_str(params, "name"),
        metadata={k: v for k, v in get_metadata(params).items() if v},
    )
    store.add(c)
    store.emit("coupon.created", c)
    return c


def refresh_coupon(c: dict[str, Any]) -> dict[str, Any]:
    # "valid: Taking account of the above properties, whether this coupon can still be applied
    # to a customer" (https://docs.stripe.com/api/coupons/object#coupon_object-valid).
    used_up = c["max_redemptions"] is not None and c["times_redeemed"] >= c["max_redemptions"]
    expired = c["redeem_by"] is not None and c["redeem_by"] <= now()
    c["valid"] = not (used_up or expired)
    return c


def _random_code() -> str:
    return "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(8))


def create_promotion_code(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/promotion_codes`` (https://docs.stripe.com/api/promotion_codes/create): the
    coupon is given as ``promotion[type]=coupon`` and ``promotion[coupon]``."""
    check_known(params, PROMOTION_CODE_PARAMS)
    promotion = get_dict(params, "promotion")
    if not promotion:
        raise missing_param("promotion")
    check_known(promotion, ("coupon", "type"), "promotion")
    if get_str(promotion, "type", required=True, label="promotion[type]") != "coupon":
        raise invalid_param("promotion[type]", "promotion[type] must be coupon.")
    c = refresh_coupon(
        store.get(
            "coupon",
            get_str(promotion, "coupon", required=True, label="promotion[coupon]"),
            "promotion[coupon]",
        )
    )
    if not c["valid"]:
        raise invalid_param("promotion[coupon]", f"Coupon {c['id']} is no longer valid.")
    code = get_str(params, "code") or _random_code()
    active = get_bool(params, "active", default=True)
    if active and any(
        p["active"] and p["code"].lower() == code.lower() for p in store.find("promotion_code")
    ):
        raise StripeError(
            f"An active promotion code with `code: {code}` already exists.",
            code="resource_already_exists",
            param="code",
        )
    customer_id = get_str(params, "customer")
    if customer_id:
        store.get("customer", customer_id, "customer")
    restrictions = get_dict(params, "restrictions")
    check_known(restrictions, RESTRICTION_PARAMS, "restrictions")
    max_redemptions = get_int(params, "max_redemptions")
    if max_redemptions is not None and max_redemptions < 1:
        raise invalid_param("max_redemptions", "max_redemptions must be a positive integer.")
    p = objects.promotion_code(
        code=code,
        coupon_id=c["id"],
        active=active,
        customer_id=customer_id,
        expires_at=get_int(params, "expires_at"),
        max_redemptions=max_redemptions,
        metadata={k: v for k, v in get_metadata(params).items() if v},
        restrictions=restrictions,
    )
    store.add(p)
    store.emit("promotion_code.created", p)
    return p


def update_promotion_code(store: Store, p: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/promotion_codes/{id}`` (https://docs.stripe.com/api/promotion_codes/update)."""
    check_known(params, ("active", "metadata", "restrictions"))
    previous: dict[str, Any] = {}
    if "active" in params:
        previous["active"] = p["active"]
        p["active"] = get_bool(params, "active")
    if "metadata" in params:
        previous["metadata"] = dict(p["metadata"])
        for key, value in get_metadata(params).items():
            if value:
                p["metadata"][key] = value
            else:
                p["metadata"].pop(key, None)
    store.emit("promotion_code.updated", p, previous)
    return p


def list_promotion_codes(store: Store, params: dict[str, Any]) -> list[dict[str, Any]]:
    found = store.find("promotion_code")
    code = get_str(params, "code")
    if code:
        found = [p for p in found if p["code"].lower() == code.lower()]
    if get_str(params, "active"):
        active = get_bool(params, "active")
        found = [p for p in found if p["active"] == active]
    if get_str(params, "coupon"):
        found = [p for p in found if p["promotion"]["coupon"] == params["coupon"]]
    if get_str(params, "customer"):
        found = [p for p in found if p["customer"] == params["customer"]]
    return found


# --- discounts at checkout -------------------------------------------------------------------


def check_promotion_code(
    store: Store, p: dict[str, Any], *, currency: str, subtotal: int, customer_id: str | None, param: str
) -> dict[str, Any]:
    """The coupon behind ``p`` if the code can be redeemed now, else the refusal Stripe gives."""
    c = refresh_coupon(store.objects[p["promotion"]["coupon"]])
    reason = None
    if not p["active"]:
        reason = "This promotion code is inactive."
    elif p["expires_at"] is not None and p["expires_at"] <= now():
        reason = "This promotion code has expired."
    elif p["max_redemptions"] is not None and p["times_redeemed"] >= p["max_redemptions"]:
        reason = "This promotion code has reached its maximum number of redemptions."
    elif not c["valid"]:
        reason = "This promotion code's coupon is no longer valid."
    elif p["customer"] and p["customer"] != customer_id:
        reason = "This promotion code cannot be redeemed by this customer."
    elif p["restrictions"]["minimum_amount"] and subtotal < p["restrictions"]["minimum_amount"]:
        reason = "This promotion code requires a larger minimum order amount."
    if reason:
        raise StripeError(reason, param=param)
    check_coupon(c, currency=currency, param=param)
    return c


def check_coupon(c: dict[str, Any], *, currency: str, param: str) -> dict[str, Any]:
    refresh_coupon(c)
    if not c["valid"]:
        raise invalid_param(param, f"Coupon {c['id']} is no longer valid and cannot be applied.")
    if c["amount_off"] is not None and c["currency"] != currency:
        raise invalid_param(param, f"Coupon {c['id']} is in {c['currency']}, not {currency}.")
    return c


def promotion_code_by_text(store: Store, code: str, param: str) -> dict[str, Any]:
    """What a customer typed into the hosted page: matched case-insensitively, active first."""
    found = [p for p in store.find("promotion_code") if p["code"].lower() == code.strip().lower()]
    found.sort(key=lambda p: not p["active"])
    if not found:
        raise StripeError(INVALID_CODE, param=param)
    return found[0]


def discount_amount(c: dict[str, Any], subtotal: int) -> int:
    if c["percent_off"] is not None:
        # Half up to the minor unit.
        return min(subtotal, int(subtotal * c["percent_off"] / 100 + 0.5))
    return min(subtotal, int(c["amount_off"]))


def redeem(store: Store, c: dict[str, Any], p: dict[str, Any] | None) -> None:
    """A completed session counts one redemption of the coupon and of the code."""
    c["times_redeemed"] += 1
    refresh_coupon(c)
    if p is not None:
        p["times_redeemed"] += 1


def lookup(store: Store, object_name: str, object_id: str | None, param: str) -> dict[str, Any]:
    obj = store.objects.get(object_id or "")
    if obj is None or obj["object"] != object_name:
        raise no_such(object_name.replace("_", " "), object_id or "", param)
    return obj
