"""What Stripe does when the API or a customer acts: state changes plus the events they emit.

Each function runs inside one ``store.batch()`` opened by the caller, so the events of one
action are delivered together.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from . import discounts, invoicing, objects, payments
from .errors import StripeError, invalid_param, missing_param, unknown_param
from .forms import check_known, get_bool, get_dict, get_int, get_list, get_metadata, get_str
from .store import Store, new_id, now, public

CUSTOMER_PARAMS = {
    "address",
    "balance",
    "business_name",
    "cash_balance",
    "description",
    "email",
    "individual_name",
    "invoice_prefix",
    "invoice_settings",
    "metadata",
    "name",
    "next_invoice_sequence",
    "payment_method",
    "phone",
    "preferred_locales",
    "shipping",
    "source",
    "tax",
    "tax_exempt",
    "tax_id_data",
    "test_clock",
    "validate",
}
SESSION_PARAMS = {
    "adaptive_pricing",
    "after_expiration",
    "allow_promotion_codes",
    "allowed_payment_method_types",
    "automatic_tax",
    "billing_address_collection",
    "branding_settings",
    "cancel_url",
    "client_reference_id",
    "consent_collection",
    "currency",
    "custom_fields",
    "custom_text",
    "customer",
    "customer_account",
    "customer_creation",
    "customer_email",
    "customer_update",
    "discounts",
    "excluded_payment_method_types",
    "expires_at",
    "integration_identifier",
    "invoice_creation",
    "line_items",
    "locale",
    "managed_payments",
    "metadata",
    "mode",
    "name_collection",
    "optional_items",
    "origin_context",
    "payment_intent_data",
    "payment_method_collection",
    "payment_method_configuration",
    "payment_method_data",
    "payment_method_options",
    "payment_method_types",
    "permissions",
    "phone_number_collection",
    "redirect_on_completion",
    "return_url",
    "saved_payment_method_options",
    "setup_intent_data",
    "shipping_address_collection",
    "shipping_options",
    "submit_type",
    "subscription_data",
    "success_url",
    "tax_id_collection",
    "ui_mode",
    "wallet_options",
}
LINE_ITEM_PARAMS = {"adjustable_quantity", "metadata", "price", "price_data", "quantity", "tax_rates"}
PRICE_DATA_PARAMS = {
    "currency",
    "product",
    "product_data",
    "recurring",
    "tax_behavior",
    "unit_amount",
    "unit_amount_decimal",
}
PRODUCT_DATA_PARAMS = {"description", "images", "metadata", "name", "tax_code", "tax_details", "unit_label"}
PAYMENT_INTENT_DATA_PARAMS = {
    "application_fee_amount",
    "capture_method",
    "description",
    "metadata",
    "on_behalf_of",
    "receipt_email",
    "setup_future_usage",
    "shipping",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "transfer_data",
    "transfer_group",
}
PRICE_PARAMS = {
    "active",
    "billing_scheme",
    "currency",
    "currency_options",
    "custom_unit_amount",
    "lookup_key",
    "metadata",
    "nickname",
    "product",
    "product_data",
    "recurring",
    "tax_behavior",
    "tiers",
    "tiers_mode",
    "transfer_lookup_key",
    "transform_quantity",
    "unit_amount",
    "unit_amount_decimal",
}
PRODUCT_PARAMS = {
    "active",
    "default_price_data",
    "description",
    "id",
    "images",
    "marketing_features",
    "metadata",
    "name",
    "package_dimensions",
    "shippable",
    "statement_descriptor",
    "tax_code",
    "tax_details",
    "type",
    "unit_label",
    "url",
}
REFUND_PARAMS = {
    "amount",
    "charge",
    "currency",
    "customer",
    "instructions_email",
    "metadata",
    "origin",
    "payment_intent",
    "reason",
    "refund_application_fee",
    "reverse_transfer",
}
REFUND_REASONS = {"duplicate", "fraudulent", "requested_by_customer"}
WEBHOOK_PARAMS = {"api_version", "connect", "description", "enabled_events", "metadata", "url"}
WEBHOOK_UPDATE_PARAMS = {"description", "disabled", "enabled_events", "metadata", "url"}
DISPUTE_REASONS = {
    "bank_cannot_process",
    "check_returned",
    "credit_not_processed",
    "customer_initiated",
    "debit_not_authorized",
    "duplicate",
    "fraudulent",
    "general",
    "incorrect_account_details",
    "insufficient_funds",
    "noncompliant",
    "product_not_received",
    "product_unacceptable",
    "subscription_canceled",
    "unrecognized",
}
CHECKOUT_ID_TEMPLATE = "{CHECKOUT_SESSION_ID}"
DEFAULT_EMAIL = "customer@example.com"

# --- customers, products, prices ---------------------------------------------------------


def create_customer(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    check_known(params, CUSTOMER_PARAMS)
    cus = objects.customer(
        email=get_str(params, "email"),
        name=get_str(params, "name"),
        description=get_str(params, "description"),
        phone=get_str(params, "phone"),
        metadata={k: v for k, v in get_metadata(params).items() if v},
    )
    store.add(cus)
    store.emit("customer.created", cus)
    # `payment_method` attaches a card to the new customer and
    # `invoice_settings[default_payment_method]` makes it the default for invoices
    # (https://docs.stripe.com/api/customers/create).
    payments.apply_customer_payment_settings(store, cus, params)
    return cus


def update_customer(store: Store, cus: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    check_known(params, CUSTOMER_PARAMS | {"default_source"})
    previous: dict[str, Any] = {}
    for name in ("email", "name", "description", "phone"):
        if name in params:
            previous[name] = cus[name]
            cus[name] = get_str(params, name)
    if "metadata" in params:
        previous["metadata"] = dict(cus["metadata"])
        _merge_metadata(cus, get_metadata(params))
    if "payment_method" in params:
        raise unknown_param("payment_method")
    previous.update(payments.apply_customer_payment_settings(store, cus, params))
    if previous:
        store.emit("customer.updated", cus, previous)
    return cus


def _merge_metadata(obj: dict[str, Any], update: dict[str, str]) -> None:
    # Stripe merges metadata; an empty value deletes that key.
    for key, value in update.items():
        if value:
            obj["metadata"][key] = value
        else:
            obj["metadata"].pop(key, None)


def create_product(store: Store, params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    check_known(params, PRODUCT_PARAMS if not prefix else PRODUCT_DATA_PARAMS, prefix)
    prod = objects.product(
        name=get_str(params, "name", required=True, label=f"{prefix}[name]" if prefix else "name"),
        description=get_str(params, "description"),
        metadata=get_metadata(params),
        active=get_bool(params, "active", default=True),
    )
    if not prefix and get_str(params, "id"):
        prod["id"] = params["id"]
    store.add(prod)
    if not prefix:
        # Products made inline from product_data are bookkeeping; keep them out of webhooks.
        store.emit("product.created", prod)
    return prod


def _currency(params: dict[str, Any], label: str) -> str:
    value = get_str(params, "currency", required=True, label=label)
    assert value is not None
    if len(value) != 3 or not value.isalpha():
        raise invalid_param(label, f"Invalid currency: {value}")
    return value.lower()


def _unit_amount(params: dict[str, Any], prefix: str) -> int:
    label = f"{prefix}[unit_amount]" if prefix else "unit_amount"
    amount = get_int(params, "unit_amount", label=label)
    if amount is None and get_str(params, "unit_amount_decimal"):
        try:
            amount = int(float(params["unit_amount_decimal"]))
        except ValueError:
            raise invalid_param(label + "_decimal", "Invalid decimal") from None
    if amount is None:
        raise missing_param(label)
    if amount < 0:
        raise invalid_param(label, "This value must be greater than or equal to 0.")
    return amount


def create_price(
    store: Store, params: dict[str, Any], prefix: str = "", active: bool = True
) -> dict[str, Any]:
    """A Price from ``POST /v1/prices`` or, with ``prefix``, from ``line_items[i][price_data]``."""
    check_known(params, PRICE_PARAMS if not prefix else PRICE_DATA_PARAMS, prefix)

    def label(name: str) -> str:
        return f"{prefix}[{name}]" if prefix else name

    if params.get("recurring"):
        raise invalid_param(label("recurring"), "The fake only supports one-time prices (mode=payment).")
    currency = _currency(params, label("currency"))
    unit_amount = _unit_amount(params, prefix)
    product_id = get_str(params, "product")
    if product_id:
        store.get("product", product_id, label("product"))
    elif params.get("product_data"):
        product_id = create_product(store, get_dict(params, "product_data"), label("product_data"))["id"]
    else:
        raise missing_param(label("product") if prefix else "product")
    pr = objects.price(
        currency=currency,
        unit_amount=unit_amount,
        product_id=product_id,
        metadata=get_metadata(params) if not prefix else {},
        nickname=get_str(params, "nickname"),
        lookup_key=get_str(params, "lookup_key"),
        active=active and get_bool(params, "active", default=True),
        tax_behavior=_tax_behavior(params, label("tax_behavior")),
    )
    store.add(pr)
    if not prefix:
        store.emit("price.created", pr)
    return pr


def _tax_behavior(params: dict[str, Any], label: str) -> str | None:
    # https://docs.stripe.com/api/prices/create#create_price-tax_behavior
    value = get_str(params, "tax_behavior")
    if value not in (None, "exclusive", "inclusive", "unspecified"):
        raise invalid_param(label, f"Invalid tax_behavior: {value}")
    if value == "inclusive":
        raise invalid_param(label, "This fake's automatic tax only adds tax on top (exclusive).")
    return value


# --- checkout sessions ---------------------------------------------------------------------


def _check_url(params: dict[str, Any], name: str) -> None:
    value = get_str(params, name)
    if value is None:
        return
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise invalid_param(name, "Not a valid URL")


def create_session(store: Store, params: dict[str, Any], base_url: str) -> dict[str, Any]:
    check_known(params, SESSION_PARAMS)
    mode = get_str(params, "mode", required=True)
    if mode not in ("payment", "setup", "subscription"):
        raise invalid_param("mode", f"Invalid mode: must be one of payment, setup, or subscription ({mode})")
    if mode == "subscription":
        raise invalid_param("mode", "This fake implements Checkout Sessions in payment and setup mode only.")
    if mode == "setup":
        # Setup mode saves a card for later and takes no payment
        # (https://docs.stripe.com/payments/save-and-reuse?platform=checkout).
        for name in SETUP_MODE_EXCLUDED:
            if params.get(name) not in (None, ""):
                raise invalid_param(name, f"You cannot pass `{name}` in `setup` mode.")
    ui_mode = get_str(params, "ui_mode") or "hosted_page"
    if ui_mode != "hosted_page":
        raise invalid_param("ui_mode", "This fake only implements ui_mode=hosted_page.")
    for name in ("success_url", "cancel_url"):
        _check_url(params, name)
    customer_id = get_str(params, "customer")
    if customer_id:
        store.get("customer", customer_id, "customer")
        if get_str(params, "customer_email"):
            raise invalid_param(
                "customer_email", "You may only specify one of these parameters: customer, customer_email."
            )
        if get_str(params, "customer_creation"):
            raise invalid_param(
                "customer_creation", "`customer_creation` can only be used when `customer` is not set."
            )
    creation = get_str(params, "customer_creation")
    if creation not in (None, "always", "if_required"):
        raise invalid_param("customer_creation", f"Invalid customer_creation: {creation}")
    reference = get_str(params, "client_reference_id")
    if reference is not None and len(reference) > 200:
        raise invalid_param("client_reference_id", "client_reference_id can be at most 200 characters long")
    params["metadata"] = get_metadata(params)

    pi_data = get_dict(params, "payment_intent_data")
    check_known(pi_data, PAYMENT_INTENT_DATA_PARAMS, "payment_intent_data")
    pi_data["metadata"] = get_metadata(pi_data, "metadata")
    sfu = get_str(pi_data, "setup_future_usage")
    if sfu not in (None, "on_session", "off_session"):
        raise invalid_param("payment_intent_data[setup_future_usage]", f"Invalid setup_future_usage: {sfu}")

    created = now()
    expires_at = get_int(params, "expires_at")
    if expires_at is None:
        expires_at = created + 86400
    # Stripe allows 30 min to 24 h; the minute of slack absorbs clock skew in "now + 30 min".
    elif expires_at < created + 1800 - 60:
        raise invalid_param(
            "expires_at",
            "The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.",
        )
    elif expires_at > created + 86400:
        raise invalid_param(
            "expires_at",
            "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.",
        )

    if mode == "setup":
        return _create_setup_session(store, params, base_url, customer_id, expires_at)
    raw_items = get_list(params, "line_items")
    if not raw_items:
        raise missing_param("line_items")
    items = []
    for i, raw in enumerate(raw_items):
        prefix = f"line_items[{i}]"
        if not isinstance(raw, dict):
            raise invalid_param(prefix, f"Invalid object: {prefix} must be a hash")
        check_known(raw, LINE_ITEM_PARAMS, prefix)
        quantity = get_int(raw, "quantity", label=f"{prefix}[quantity]")
        if quantity is None:
            raise missing_param(f"{prefix}[quantity]")
        if quantity < 1:
            raise invalid_param(f"{prefix}[quantity]", "Quantity must be greater than 0.")
        if raw.get("price") and raw.get("price_data"):
            raise invalid_param(
                prefix,
                f"You may only specify one of these parameters: {prefix}[price], {prefix}[price_data].",
            )
        if raw.get("price"):
            price_obj = store.get("price", get_str(raw, "price"), f"{prefix}[price]")
            if not price_obj["active"]:
                raise invalid_param(
                    f"{prefix}[price]",
                    "The price specified is inactive. This field only accepts active prices.",
                )
        elif raw.get("price_data"):
            # Stripe stores inline prices as inactive Price objects of their own.
            price_obj = create_price(
                store, get_dict(raw, "price_data"), f"{prefix}[price_data]", active=False
            )
        else:
            raise invalid_param(prefix, f"You must specify either `price` or `price_data` in {prefix}.")
        product_obj = store.objects.get(price_obj["product"], {})
        items.append(
            objects.line_item(
                price_obj=public(price_obj),
                quantity=quantity,
                description=product_obj.get("name", ""),
                metadata=get_metadata(raw),
            )
        )
    currencies = {item["currency"] for item in items}
    if len(currencies) > 1:
        raise invalid_param("line_items", "All line items must have the same currency.")
    sid = new_id("cs_test_a1", 56)
    session = objects.checkout_session(
        sid=sid,
        url=f"{base_url}/c/pay/{sid}",
        currency=currencies.pop(),
        amount=sum(item["amount_total"] for item in items),
        params=params,
        customer_id=customer_id,
        expires_at=expires_at,
    )
    session["_line_items"] = items
    session["_payment_intent_data"] = pi_data
    session["_base_url"] = base_url
    _session_extras(store, session, params)
    store.add(session)
    return session


SETUP_MODE_EXCLUDED = (
    "line_items",
    "payment_intent_data",
    "invoice_creation",
    "discounts",
    "allow_promotion_codes",
    "automatic_tax",
    "submit_type",
)
SETUP_INTENT_DATA_PARAMS = {"description", "metadata", "on_behalf_of"}
INVOICE_DATA_PARAMS = {
    "account_tax_ids",
    "custom_fields",
    "description",
    "footer",
    "issuer",
    "metadata",
    "rendering_options",
}


def _create_setup_session(
    store: Store, params: dict[str, Any], base_url: str, customer_id: str | None, expires_at: int
) -> dict[str, Any]:
    """A ``mode=setup`` session: its SetupIntent exists from the start (``setup_intent`` is set
    on the session, https://docs.stripe.com/api/checkout/sessions/object#checkout_session_object-setup_intent)
    and succeeds when the customer saves a card."""
    data = get_dict(params, "setup_intent_data")
    check_known(data, SETUP_INTENT_DATA_PARAMS, "setup_intent_data")
    currency = get_str(params, "currency")
    if currency is not None and (len(currency) != 3 or not currency.isalpha()):
        raise invalid_param("currency", f"Invalid currency: {currency}")
    sid = new_id("cs_test_c1", 56)
    session = objects.checkout_session(
        sid=sid,
        url=f"{base_url}/c/pay/{sid}",
        currency=currency.lower() if currency else None,  # type: ignore[arg-type]
        amount=0,
        params=params,
        customer_id=customer_id,
        expires_at=expires_at,
    )
    session.update(
        amount_subtotal=None,
        amount_total=None,
        total_details=None,
        payment_status="no_payment_required",
        _line_items=[],
        _payment_intent_data={},
        _base_url=base_url,
    )
    si = objects.setup_intent(
        customer_id=customer_id,
        payment_method_id=None,
        usage="off_session",
        metadata={k: v for k, v in get_metadata(data).items() if v},
        description=get_str(data, "description"),
        payment_method_types=["card"],
    )
    store.add(si)
    store.emit("setup_intent.created", si)
    session["setup_intent"] = si["id"]
    store.add(session)
    return session


def _session_extras(store: Store, session: dict[str, Any], params: dict[str, Any]) -> None:
    """Automatic tax, a discount or promotion codes, and an invoice on completion."""
    tax = get_dict(params, "automatic_tax")
    check_known(tax, ("enabled", "liability"), "automatic_tax")
    if get_bool(tax, "enabled"):
        # https://docs.stripe.com/tax/checkout: tax is added to the subtotal after discounts;
        # the rate is the fake's --tax-rate-bps at the time the session is made.
        session["automatic_tax"] = {
            "enabled": True,
            "liability": {"type": "self"},
            "provider": "stripe",
            "status": "complete",
        }
        session["_tax_rate_bps"] = store.tax_rate_bps
    allow = get_bool(params, "allow_promotion_codes")
    raw = get_list(params, "discounts")
    if allow and raw:
        raise invalid_param(
            "discounts", "You may only specify one of these parameters: allow_promotion_codes, discounts."
        )
    session["allow_promotion_codes"] = True if allow else None
    if len(raw) > 1:
        raise invalid_param("discounts", "Checkout Sessions only support one discount.")
    if raw:
        entry = raw[0]
        if not isinstance(entry, dict):
            raise invalid_param("discounts[0]", "Invalid object: discounts[0] must be a hash")
        check_known(entry, ("coupon", "promotion_code"), "discounts[0]")
        if bool(get_str(entry, "coupon")) == bool(get_str(entry, "promotion_code")):
            raise invalid_param(
                "discounts[0]", "Pass exactly one of discounts[0][coupon], discounts[0][promotion_code]."
            )
        subtotal = sum(i["amount_subtotal"] for i in session["_line_items"])
        if get_str(entry, "promotion_code"):
            label = "discounts[0][promotion_code]"
            promo = discounts.lookup(store, "promotion_code", get_str(entry, "promotion_code"), label)
            c = discounts.check_promotion_code(
                store,
                promo,
                currency=session["currency"],
                subtotal=subtotal,
                customer_id=session["customer"],
                param=label,
            )
            session["_discount"] = {"coupon": c["id"], "promotion_code": promo["id"]}
        else:
            label = "discounts[0][coupon]"
            c = discounts.check_coupon(
                discounts.lookup(store, "coupon", get_str(entry, "coupon"), label),
                currency=session["currency"],
                param=label,
            )
            session["_discount"] = {"coupon": c["id"], "promotion_code": None}
    creation = get_dict(params, "invoice_creation")
    check_known(creation, ("enabled", "invoice_data"), "invoice_creation")
    if get_bool(creation, "enabled"):
        # https://docs.stripe.com/payments/checkout/receipts#paid-invoices
        data = get_dict(creation, "invoice_data")
        check_known(data, INVOICE_DATA_PARAMS, "invoice_creation[invoice_data]")
        session["invoice_creation"] = {
            "enabled": True,
            "invoice_data": {
                "account_tax_ids": None,
                "custom_fields": None,
                "description": get_str(data, "description"),
                "footer": get_str(data, "footer"),
                "issuer": None,
                "metadata": {k: v for k, v in get_metadata(data).items() if v},
                "rendering_options": None,
            },
        }
    apply_totals(store, session)


def _spread(items: list[dict[str, Any]], field: str, total: int) -> None:
    # Each line takes its share of a session-wide amount; the last takes the rounding remainder.
    subtotal = sum(i["amount_subtotal"] for i in items)
    left = total
    for n, item in enumerate(items):
        share = (
            left if n == len(items) - 1 else (total * item["amount_subtotal"] // subtotal if subtotal else 0)
        )
        item[field] = share
        left -= share


def apply_totals(store: Store, session: dict[str, Any]) -> None:
    """``amount_total = amount_subtotal - amount_discount + amount_tax``, with the discount and
    tax in ``total_details`` (https://docs.stripe.com/api/checkout/sessions/object#checkout_session_object-total_details)."""
    items = session["_line_items"]
    subtotal = sum(i["amount_subtotal"] for i in items)
    chosen = session.get("_discount")
    discount = discounts.discount_amount(store.objects[chosen["coupon"]], subtotal) if chosen else 0
    tax = 0
    if session["automatic_tax"]["enabled"]:
        tax = invoicing.tax_amount(subtotal - discount, session.get("_tax_rate_bps", store.tax_rate_bps))
    _spread(items, "amount_discount", discount)
    _spread(items, "amount_tax", tax)
    for item in items:
        item["amount_total"] = item["amount_subtotal"] - item["amount_discount"] + item["amount_tax"]
    session.update(amount_subtotal=subtotal, amount_total=subtotal - discount + tax)
    session["total_details"] = {"amount_discount": discount, "amount_shipping": 0, "amount_tax": tax}
    session["discounts"] = [dict(chosen)] if chosen else []
    pi = store.objects.get(session["payment_intent"] or "")
    if pi is not None and pi["status"] != "succeeded":
        pi["amount"] = session["amount_total"]


def apply_promotion_code(store: Store, session: dict[str, Any], code: str) -> dict[str, Any]:
    """The customer types a code into the hosted page (``allow_promotion_codes=true``)."""
    _require_open(session)
    if not session["allow_promotion_codes"]:
        raise invalid_param("promotion_code", "This Checkout Session does not accept promotion codes.")
    promo = discounts.promotion_code_by_text(store, code, "promotion_code")
    c = discounts.check_promotion_code(
        store,
        promo,
        currency=session["currency"],
        subtotal=session["amount_subtotal"],
        customer_id=session["customer"],
        param="promotion_code",
    )
    session["_discount"] = {"coupon": c["id"], "promotion_code": promo["id"]}
    apply_totals(store, session)
    return session


def _check_discount(store: Store, session: dict[str, Any]) -> None:
    # A code can run out between being applied and the payment: Stripe refuses it then too.
    chosen = session.get("_discount")
    if not chosen:
        return
    if chosen["promotion_code"]:
        discounts.check_promotion_code(
            store,
            store.objects[chosen["promotion_code"]],
            currency=session["currency"],
            subtotal=session["amount_subtotal"],
            customer_id=session["customer"],
            param="promotion_code",
        )
    else:
        discounts.check_coupon(
            store.objects[chosen["coupon"]], currency=session["currency"], param="discounts"
        )


def _redeem(store: Store, session: dict[str, Any]) -> None:
    chosen = session.get("_discount")
    if chosen:
        promo = store.objects.get(chosen["promotion_code"] or "")
        discounts.redeem(store, store.objects[chosen["coupon"]], promo)


def line_items_page(store: Store, session: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    items = session["_line_items"]
    limit = get_int(params, "limit") or 10
    after = get_str(params, "starting_after")
    ids = [i["id"] for i in items]
    start = ids.index(after) + 1 if after in ids else 0
    chosen = items[start : start + limit]
    expand = [p[len("data.") :] for p in get_list(params, "expand") if p.startswith("data.")]
    rendered = []
    for item in chosen:
        out = dict(item)
        for path in expand:
            store._expand(out, path.split("."), "data." + path)
        rendered.append(out)
    return {
        "object": "list",
        "data": rendered,
        "has_more": start + limit < len(items),
        "url": f"/v1/checkout/sessions/{session['id']}/line_items",
    }


def _require_open(session: dict[str, Any]) -> None:
    if session["status"] != "open":
        raise StripeError(
            f'Only Checkout Sessions with a status in ["open"] can be expired or paid. '
            f"This Checkout Session has status {session['status']!r}.",
            code="checkout_session_not_open" if session["status"] else None,
        )


def expire_session(store: Store, session: dict[str, Any]) -> dict[str, Any]:
    # "A Checkout Session can be expired when it is in one of these statuses: open. After it
    # expires, a customer can't complete a Checkout Session" (POST /v1/checkout/sessions/:id/expire,
    # https://docs.stripe.com/api/checkout/sessions/expire); an expiry, asked for or at
    # `expires_at`, sends `checkout.session.expired`, "Occurs when a Checkout Session is expired"
    # (https://docs.stripe.com/api/checkout/sessions, Events).
    _require_open(session)
    session["status"] = "expired"
    session["url"] = None
    pi = store.objects.get(session["payment_intent"] or "")
    if pi and pi["status"] == "requires_payment_method":
        pi["status"] = "canceled"
        pi["canceled_at"] = now()
        pi["cancellation_reason"] = "abandoned"
        store.emit("payment_intent.canceled", pi)
    store.emit("checkout.session.expired", session)
    return session


def expire_due_sessions(store: Store) -> None:
    current = now()
    for session in store.find("checkout.session", status="open"):
        if session["expires_at"] <= current:
            with store.batch():
                expire_session(store, session)


def _customer_for(
    store: Store, session: dict[str, Any], email: str, name: str | None, *, needed: bool = False
) -> str | None:
    """The session's Customer; one is created with ``customer_creation=always`` or when the card
    is to be saved (``setup_future_usage``), which needs a Customer to attach it to
    (https://docs.stripe.com/api/checkout/sessions/create#create_checkout_session-customer_creation)."""
    if session["customer"]:
        return session["customer"]
    if session["customer_creation"] == "always" or needed:
        cus = create_customer(store, {"email": email, "name": name or ""})
        session["customer"] = cus["id"]
        return cus["id"]
    return None


def _payment_intent_for(store: Store, session: dict[str, Any], method_type: str) -> dict[str, Any]:
    """The session's PaymentIntent, created on the first attempt and reused by later ones."""
    existing = store.objects.get(session["payment_intent"] or "")
    if existing is not None:
        existing["payment_method_types"] = [method_type]
        return existing
    pi_data = session["_payment_intent_data"]
    pi = objects.payment_intent(
        amount=session["amount_total"],
        currency=session["currency"],
        customer_id=session["customer"],
        metadata=dict(pi_data.get("metadata") or {}),
        description=pi_data.get("description") or None,
        receipt_email=pi_data.get("receipt_email") or None,
        setup_future_usage=pi_data.get("setup_future_usage") or None,
        method_type=method_type,
    )
    store.add(pi)
    session["payment_intent"] = pi["id"]
    store.emit("payment_intent.created", pi)
    return pi


def _session_email(session: dict[str, Any], store: Store, email: str | None) -> str:
    if email:
        return email
    if session["customer_email"]:
        return session["customer_email"]
    cus = store.objects.get(session["customer"] or "")
    return (cus or {}).get("email") or DEFAULT_EMAIL


def _complete(store: Store, session: dict[str, Any], email: str, name: str | None) -> None:
    session["status"] = "complete"
    session["url"] = None
    session["customer_details"] = {
        "address": {
            "city": None,
            "country": "US",
            "line1": None,
            "line2": None,
            "postal_code": "10001",
            "state": None,
        },
        "business_name": None,
        "email": email,
        "individual_name": None,
        "name": name,
        "phone": None,
        "tax_exempt": "none",
        "tax_ids": [],
    }


def _new_charge(
    store: Store,
    pi: dict[str, Any],
    *,
    status: str,
    method_type: str,
    email: str,
    name: str | None,
    declined: bool = False,
    pm: dict[str, Any] | None = None,
) -> dict[str, Any]:
    pi["payment_method"] = pm["id"] if pm else new_id("pm_1")
    card = objects.charge_card(pm) if pm else (objects.DECLINED_CARD if declined else None)
    ch = objects.charge(pi=pi, status=status, method_type=method_type, email=email, name=name, card=card)
    ch["payment_method"] = pi["payment_method"]
    ch["outcome"] = dict(objects.DECLINED_OUTCOME if declined else objects.APPROVED_OUTCOME)
    store.add(ch)
    pi["latest_charge"] = ch["id"]
    return ch


def _card_for(store: Store, card: str | None, email: str, name: str | None) -> dict[str, Any]:
    pm = payments.card_pm(store, card)
    pm["billing_details"].update(email=email, name=name)
    return pm


def pay_session(
    store: Store,
    session: dict[str, Any],
    *,
    email: str | None = None,
    name: str | None = None,
    card: str | None = None,
    promotion_code: str | None = None,
) -> dict[str, Any]:
    """The customer pays (or, in setup mode, saves) with ``card``, a test card (default 4242).

    A card that declines ends like :func:`decline_session` and raises the card error; a card
    that asks for 3D Secure is authenticated on the page, as the customer is there. With
    ``setup_future_usage`` the card is attached to the customer
    (https://docs.stripe.com/payments/checkout/save-during-payment); with ``invoice_creation``
    a paid Invoice is made (https://docs.stripe.com/payments/checkout/receipts#paid-invoices):
    invoice.created, invoice.finalized, invoice_payment.paid, invoice.paid,
    invoice.payment_succeeded, before checkout.session.completed.
    """
    _require_open(session)
    if promotion_code:
        apply_promotion_code(store, session, promotion_code)
    _check_discount(store, session)
    email = _session_email(session, store, email)
    if session["mode"] == "setup":
        return _complete_setup(store, session, email=email, name=name, card=card)
    pm = _card_for(store, card, email, name)
    if pm["_behaviour"] in ("decline", "decline_charge"):
        error = decline_session(store, session, email=email, pm=pm)
        fields = {k: v for k, v in error.items() if k not in ("type", "code", "message", "doc_url")}
        raise StripeError(
            error["message"], status=402, type="card_error", code=error["code"], keep_effects=True, **fields
        )
    sfu = session["_payment_intent_data"].get("setup_future_usage")
    _customer_for(store, session, email, name, needed=bool(sfu))
    pi = _payment_intent_for(store, session, "card")
    pi["customer"] = session["customer"]
    if sfu and session["customer"]:
        payments.attach(store, pm, session["customer"])
    ch = _new_charge(store, pi, status="succeeded", method_type="card", email=email, name=name, pm=pm)
    pi.update(status="succeeded", amount_received=pi["amount"], last_payment_error=None)
    _complete(store, session, email, name)
    session["payment_status"] = "paid"
    _redeem(store, session)
    store.emit("charge.succeeded", ch)
    store.emit("payment_intent.succeeded", pi)
    if session["invoice_creation"]["enabled"]:
        session["invoice"] = invoicing.invoice_for_session(store, session, pi)["id"]
    store.emit("checkout.session.completed", session)
    return session


def _complete_setup(
    store: Store, session: dict[str, Any], *, email: str, name: str | None, card: str | None
) -> dict[str, Any]:
    """Setup mode: the SetupIntent succeeds and the card is attached to the customer; events
    setup_intent.succeeded, payment_method.attached, checkout.session.completed."""
    _customer_for(store, session, email, name)
    si = store.objects[session["setup_intent"]]
    si["customer"] = session["customer"]
    pm = _card_for(store, card, email, name)
    si["payment_method"] = pm["id"]
    # The customer is on the page, so a 3D Secure card is authenticated there.
    payments.confirm_setup_intent(store, si, authenticated=True)
    _complete(store, session, email, name)
    store.emit("checkout.session.completed", session)
    return session


DECLINE_MESSAGE = "Your card was declined."


def decline_session(
    store: Store, session: dict[str, Any], *, email: str | None = None, pm: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The customer's card is declined; the session stays open for another attempt."""
    _require_open(session)
    email = _session_email(session, store, email)
    pm = pm or _card_for(store, "pm_card_chargeDeclined", email, None)
    if session["mode"] == "setup":
        si = store.objects[session["setup_intent"]]
        si["payment_method"] = pm["id"]
        try:
            payments.confirm_setup_intent(store, si, authenticated=True)
        except StripeError as exc:
            return {"type": exc.type, "code": exc.code, "message": exc.message, **exc.extra}
        raise StripeError("This card was not declined.")
    pi = _payment_intent_for(store, session, "card")
    ch = _new_charge(
        store, pi, status="failed", method_type="card", email=email, name=None, declined=True, pm=pm
    )
    ch.update(failure_code="card_declined", failure_message=DECLINE_MESSAGE)
    error = {
        "charge": ch["id"],
        "code": "card_declined",
        "decline_code": "generic_decline",
        "doc_url": "https://docs.stripe.com/error-codes/card-declined",
        "message": DECLINE_MESSAGE,
        "payment_method": public(pm),
        "type": "card_error",
    }
    pi.update(status="requires_payment_method", last_payment_error=error)
    store.emit("charge.failed", ch)
    store.emit("payment_intent.payment_failed", pi)
    return {**error, "payment_intent": public(pi)}


ASYNC_METHOD = "us_bank_account"


def pay_session_later(
    store: Store, session: dict[str, Any], *, email: str | None = None, name: str | None = None
) -> dict[str, Any]:
    """A delayed-notification method (bank debit): complete now, money arrives or not later."""
    _require_open(session)
    if session["mode"] == "setup":
        raise invalid_param("mode", "A setup-mode Checkout Session takes no payment.")
    _check_discount(store, session)
    email = _session_email(session, store, email)
    _customer_for(store, session, email, name)
    pi = _payment_intent_for(store, session, ASYNC_METHOD)
    pi["customer"] = session["customer"]
    ch = _new_charge(store, pi, status="pending", method_type=ASYNC_METHOD, email=email, name=name)
    pi.update(status="processing", last_payment_error=None)
    _complete(store, session, email, name)
    _redeem(store, session)
    store.emit("charge.pending", ch)
    store.emit("payment_intent.processing", pi)
    store.emit("checkout.session.completed", session)
    return session


def settle_session(store: Store, session: dict[str, Any], *, succeed: bool) -> dict[str, Any]:
    """The delayed payment of a "pay later" session lands or bounces."""
    pi = store.objects.get(session["payment_intent"] or "")
    if session["status"] != "complete" or pi is None or pi["status"] != "processing":
        raise StripeError(
            "This Checkout Session has no payment waiting to settle.", code="payment_intent_unexpected_state"
        )
    ch = store.objects[pi["latest_charge"]]
    if succeed:
        ch.update(
            status="succeeded",
            paid=True,
            captured=True,
            amount_captured=ch["amount"],
            balance_transaction=new_id("txn_3"),
        )
        pi.update(status="succeeded", amount_received=pi["amount"])
        session["payment_status"] = "paid"
        store.emit("charge.succeeded", ch)
        store.emit("payment_intent.succeeded", pi)
        if session["invoice_creation"]["enabled"] and not session["invoice"]:
            # The invoice is paid when the money arrives.
            session["invoice"] = invoicing.invoice_for_session(store, session, pi)["id"]
        store.emit("checkout.session.async_payment_succeeded", session)
    else:
        message = "The customer's account has insufficient funds to cover this payment."
        ch.update(
            status="failed",
            failure_code="insufficient_funds",
            failure_message=message,
            outcome={**objects.DECLINED_OUTCOME, "reason": "insufficient_funds", "seller_message": message},
        )
        pi.update(
            status="requires_payment_method",
            last_payment_error={
                "code": "insufficient_funds",
                "message": message,
                "type": "invalid_request_error",
                "charge": ch["id"],
                "payment_method": {
                    "id": pi["payment_method"],
                    "object": "payment_method",
                    "type": ASYNC_METHOD,
                },
            },
        )
        store.emit("charge.failed", ch)
        store.emit("payment_intent.payment_failed", pi)
        store.emit("checkout.session.async_payment_failed", session)
    return session


# --- refunds ---------------------------------------------------------------------------------


def _charge_for(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    charge_id, pi_id = get_str(params, "charge"), get_str(params, "payment_intent")
    if charge_id and pi_id:
        raise invalid_param(
            "payment_intent", "You may only specify one of these parameters: charge, payment_intent."
        )
    if charge_id:
        return store.get("charge", charge_id, "charge")
    if pi_id:
        pi = store.get("payment_intent", pi_id, "payment_intent")
        if pi["status"] != "succeeded" or not pi["latest_charge"]:
            raise StripeError(
                f"This PaymentIntent ({pi_id}) does not have a successful charge to refund.",
                code="charge_not_refundable",
                param="payment_intent",
            )
        return store.objects[pi["latest_charge"]]
    raise StripeError(
        "One of the following params should be provided for this request: payment_intent or charge.",
        code="parameter_missing",
        replayable=False,
    )


def _blocking_dispute(store: Store, ch: dict[str, Any]) -> dict[str, Any] | None:
    for dp in store.find("dispute", charge=ch["id"]):
        if dp["status"] not in ("won", "warning_closed"):
            return dp
    return None


def create_refund(
    store: Store, params: dict[str, Any], *, status: str = "succeeded", allow_unknown: bool = False
) -> dict[str, Any]:
    if not allow_unknown:
        check_known(params, REFUND_PARAMS)
    ch = _charge_for(store, params)
    if ch["status"] != "succeeded":
        raise StripeError(
            f"Charge {ch['id']} has not succeeded; it cannot be refunded.",
            code="charge_not_refundable",
            param="charge",
        )
    if _blocking_dispute(store, ch):
        raise StripeError(
            f"Charge {ch['id']} has been charged back; cannot issue a refund.",
            code="charge_disputed",
            param="charge",
        )
    remaining = ch["amount_captured"] - ch["amount_refunded"]
    if remaining <= 0:
        raise StripeError(
            f"Charge {ch['id']} has already been refunded.", code="charge_already_refunded", param="charge"
        )
    amount = get_int(params, "amount")
    if amount is None:
        amount = remaining
    if amount <= 0:
        raise invalid_param("amount", "Invalid positive integer")
    if amount > remaining:
        raise StripeError(
            f"Refund amount ({_money(amount, ch['currency'])}) is greater than unrefunded amount on charge "
            f"({_money(remaining, ch['currency'])})",
            code="amount_too_large",
            param="amount",
        )
    reason = get_str(params, "reason")
    if reason is not None and reason not in REFUND_REASONS:
        raise invalid_param("reason", f"Invalid reason: must be one of {', '.join(sorted(REFUND_REASONS))}")
    metadata = {k: v for k, v in get_metadata(params).items() if v}
    re = objects.refund(charge_obj=ch, amount=amount, reason=reason, status=status, metadata=metadata)
    store.add(re)
    previous = {"amount_refunded": ch["amount_refunded"], "refunded": ch["refunded"]}
    ch["amount_refunded"] += amount
    ch["refunded"] = ch["amount_refunded"] >= ch["amount_captured"]
    store.emit("refund.created", re)
    store.emit("charge.refunded", ch, previous)
    return re


def _money(amount: int, currency: str) -> str:
    symbol = {"usd": "$", "eur": "€", "gbp": "£"}.get(currency, currency.upper() + " ")
    return f"{symbol}{amount / 100:.2f}"


def fail_refund(store: Store, re: dict[str, Any], reason: str | None) -> dict[str, Any]:
    """The bank returns a refund: the money goes back to the merchant's balance."""
    if re["status"] not in ("pending", "succeeded", "requires_action"):
        raise StripeError(
            f"Refund {re['id']} is {re['status']} and cannot fail.", code="refund_unexpected_state"
        )
    previous = {"status": re["status"], "failure_reason": None}
    re.update(
        status="failed",
        failure_reason=reason or "expired_or_canceled_card",
        failure_balance_transaction=new_id("txn_3"),
    )
    ch = store.objects[re["charge"]]
    ch["amount_refunded"] -= re["amount"]
    ch["refunded"] = ch["amount_refunded"] >= ch["amount_captured"]
    store.emit("refund.updated", re, previous)
    store.emit("charge.refund.updated", re, previous)
    store.emit("refund.failed", re)
    return re


def succeed_refund(store: Store, re: dict[str, Any]) -> dict[str, Any]:
    if re["status"] != "pending":
        raise StripeError(
            f"Refund {re['id']} is {re['status']}, not pending.", code="refund_unexpected_state"
        )
    previous = {"status": "pending", "balance_transaction": None}
    re.update(status="succeeded", balance_transaction=new_id("txn_3"))
    store.emit("refund.updated", re, previous)
    store.emit("charge.refund.updated", re, previous)
    return re


# --- disputes --------------------------------------------------------------------------------


def create_dispute(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    ch = _charge_for(store, params)
    if ch["status"] != "succeeded":
        raise StripeError(f"Charge {ch['id']} has not succeeded; it cannot be disputed.")
    if ch["disputed"]:
        raise StripeError(f"Charge {ch['id']} is already disputed.", code="charge_disputed")
    disputable = ch["amount_captured"] - ch["amount_refunded"]
    amount = get_int(params, "amount")
    amount = disputable if amount is None else amount
    if not 0 < amount <= disputable:
        raise invalid_param("amount", f"A dispute amount must be between 1 and {disputable}.")
    reason = get_str(params, "reason") or "fraudulent"
    if reason not in DISPUTE_REASONS:
        raise invalid_param("reason", f"Invalid dispute reason: {reason}")
    inquiry = get_bool(params, "inquiry")
    dp = objects.dispute(
        charge_obj=ch,
        amount=amount,
        reason=reason,
        status="warning_needs_response" if inquiry else "needs_response",
    )
    store.add(dp)
    ch["disputed"] = True
    store.emit("charge.dispute.created", dp)
    if not inquiry:
        dp["balance_transactions"] = [new_id("txn_1")]
        store.emit("charge.dispute.funds_withdrawn", dp)
    return dp


def close_dispute(store: Store, dp: dict[str, Any], status: str) -> dict[str, Any]:
    if dp["status"] in ("won", "lost", "warning_closed"):
        raise StripeError(
            f"Dispute {dp['id']} is already closed ({dp['status']}).", code="dispute_already_closed"
        )
    inquiry = dp["status"].startswith("warning_")
    allowed = ("warning_closed", "won", "lost") if inquiry else ("won", "lost")
    if status not in allowed:
        raise invalid_param("status", f"status must be one of {', '.join(allowed)}")
    previous = {"status": dp["status"]}
    dp["status"] = status
    if status == "won" and not inquiry:
        dp["balance_transactions"].append(new_id("txn_1"))
        store.emit("charge.dispute.funds_reinstated", dp)
    store.emit("charge.dispute.closed", dp, previous)
    return dp


# --- webhook endpoints ----------------------------------------------------------------------


def create_webhook_endpoint(
    store: Store, params: dict[str, Any], *, secret: str | None = None, strict: bool = True
) -> dict[str, Any]:
    if strict:
        check_known(params, WEBHOOK_PARAMS)
    _check_url(params, "url")
    url = get_str(params, "url", required=True)
    events = [str(e) for e in get_list(params, "enabled_events")]
    if not events:
        if strict:
            raise missing_param("enabled_events")
        events = ["*"]
    we = objects.webhook_endpoint(
        url=url or "",
        enabled_events=events,
        secret=secret or new_id("whsec_", 32),
        api_version=get_str(params, "api_version"),
        description=get_str(params, "description"),
        metadata=get_metadata(params),
    )
    store.add(we)
    return we


def update_webhook_endpoint(store: Store, we: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    check_known(params, WEBHOOK_UPDATE_PARAMS)
    if "url" in params:
        _check_url(params, "url")
        we["url"] = get_str(params, "url", required=True)
    if "enabled_events" in params:
        we["enabled_events"] = [str(e) for e in get_list(params, "enabled_events")]
    if "disabled" in params:
        we["status"] = "disabled" if get_bool(params, "disabled") else "enabled"
    if "description" in params:
        we["description"] = get_str(params, "description")
    if "metadata" in params:
        _merge_metadata(we, get_metadata(params))
    return we
