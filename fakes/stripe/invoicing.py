"""Invoices, invoice items and invoice payments: a receipt with a number for every top-up.

An invoice goes draft → open (``finalize``: a number, a hosted page and a PDF) → paid or
void. Paying it charges the customer's saved card through a PaymentIntent, so the card's
behaviour (:mod:`fakes.stripe.cards`) decides the outcome, exactly as for an off-session
PaymentIntent. In API version 2026-10-28 an invoice has no ``payment_intent`` field: the
payments live in InvoicePayment objects (``payments`` on the invoice, with ``expand``, and
``GET /v1/invoice_payments``), https://docs.stripe.com/api/invoice-payment.
"""

from __future__ import annotations

from typing import Any

from . import objects, payments
from .errors import StripeError, invalid_param, missing_param
from .forms import check_known, get_bool, get_dict, get_int, get_metadata, get_str
from .store import Store, new_id, now

INVOICE_PARAMS = {
    "account_tax_ids",
    "application_fee_amount",
    "auto_advance",
    "automatic_tax",
    "automatically_finalizes_at",
    "collection_method",
    "currency",
    "custom_fields",
    "customer",
    "customer_account",
    "days_until_due",
    "default_payment_method",
    "default_source",
    "default_tax_rates",
    "description",
    "discounts",
    "due_date",
    "effective_at",
    "footer",
    "from_invoice",
    "issuer",
    "metadata",
    "number",
    "on_behalf_of",
    "payment_settings",
    "pending_invoice_items_behavior",
    "rendering",
    "shipping_cost",
    "shipping_details",
    "statement_descriptor",
    "subscription",
    "transfer_data",
}
INVOICE_ITEM_PARAMS = {
    "amount",
    "currency",
    "customer",
    "customer_account",
    "description",
    "discountable",
    "discounts",
    "invoice",
    "metadata",
    "period",
    "price_data",
    "pricing",
    "quantity",
    "quantity_decimal",
    "subscription",
    "tax_behavior",
    "tax_code",
    "tax_rates",
    "unit_amount_decimal",
}
INVOICE_PAY_PARAMS = {"forgive", "mandate", "off_session", "paid_out_of_band", "payment_method", "source"}


def tax_amount(amount: int, bps: int) -> int:
    """Tax on ``amount`` at ``bps`` basis points, rounded half up to the minor unit."""
    return (amount * bps + 5000) // 10000


def _require_status(inv: dict[str, Any], *allowed: str, doing: str) -> None:
    if inv["status"] not in allowed:
        raise StripeError(
            f"You can only {doing} an invoice whose status is {' or '.join(allowed)}; "
            f"invoice {inv['id']} is {inv['status']}.",
            code="invoice_not_editable" if inv["status"] != "draft" else None,
        )


# --- totals ---------------------------------------------------------------------------------------


def recalculate(store: Store, inv: dict[str, Any]) -> None:
    """Subtotal, discount, tax and total of a draft from its lines.

    Automatic tax is one exclusive rate (``store.tax_rate_bps``) on the amount after discounts,
    reported in ``total_taxes`` and each line's ``taxes``
    (https://docs.stripe.com/api/invoices/object#invoice_object-total_taxes).
    """
    lines = inv["lines"]["data"]
    subtotal = sum(line["amount"] for line in lines)
    discount = min(inv.get("_discount_amount", 0), subtotal)
    taxable = subtotal - discount
    bps = inv.get("_tax_rate_bps", store.tax_rate_bps)
    tax = tax_amount(taxable, bps) if inv["automatic_tax"]["enabled"] else 0
    if inv["automatic_tax"]["enabled"]:
        detail = {"tax_rate": f"txr_fake_{bps}bps"}
        inv["total_taxes"] = [
            {
                "amount": tax,
                "tax_behavior": "exclusive",
                "tax_rate_details": detail,
                "taxability_reason": "standard_rated",
                "taxable_amount": taxable,
                "type": "tax_rate_details",
            }
        ]
        # Each line carries its share; the last one takes the rounding remainder.
        left = tax
        for i, line in enumerate(lines):
            share = left if i == len(lines) - 1 else (tax * line["amount"] // subtotal if subtotal else 0)
            left -= share
            line["taxes"] = [
                {
                    "amount": share,
                    "tax_behavior": "exclusive",
                    "tax_rate_details": detail,
                    "taxability_reason": "standard_rated",
                    "taxable_amount": line["amount"],
                    "type": "tax_rate_details",
                }
            ]
    total = taxable + tax
    inv.update(
        subtotal=subtotal,
        subtotal_excluding_tax=subtotal,
        total_excluding_tax=taxable,
        total=total,
        amount_due=total,
        amount_remaining=max(0, total - inv["amount_paid"]),
    )
    inv["lines"]["total_count"] = len(lines)


# --- invoices ---------------------------------------------------------------------------------------


def create_invoice(store: Store, params: dict[str, Any], base_url: str) -> dict[str, Any]:
    """``POST /v1/invoices`` (https://docs.stripe.com/api/invoices/create): a draft; with
    ``pending_invoice_items_behavior=include`` the customer's pending invoice items move in
    (the default is ``exclude``)."""
    check_known(params, INVOICE_PARAMS)
    cus = store.get("customer", get_str(params, "customer", required=True), "customer")
    collection = get_str(params, "collection_method") or "charge_automatically"
    if collection not in ("charge_automatically", "send_invoice"):
        raise invalid_param("collection_method", f"Invalid collection_method: {collection}")
    due_date = get_int(params, "due_date")
    days = get_int(params, "days_until_due")
    if collection == "send_invoice":
        if due_date is None and days is None:
            raise invalid_param(
                "days_until_due",
                "Invoices with `collection_method=send_invoice` need `days_until_due` or `due_date`.",
            )
        due_date = due_date or now() + 86400 * (days or 0)
    elif due_date is not None or days is not None:
        raise invalid_param(
            "days_until_due" if days is not None else "due_date",
            "`days_until_due` and `due_date` can only be set when `collection_method=send_invoice`.",
        )
    behaviour = get_str(params, "pending_invoice_items_behavior") or "exclude"
    if behaviour not in ("exclude", "include"):
        raise invalid_param("pending_invoice_items_behavior", f"Invalid value: {behaviour}")
    pm_id = get_str(params, "default_payment_method")
    if pm_id:
        pm = store.get("payment_method", pm_id, "default_payment_method")
        if pm["customer"] != cus["id"]:
            raise invalid_param(
                "default_payment_method",
                f"The PaymentMethod {pm_id} is not attached to customer {cus['id']}.",
            )
    tax = get_dict(params, "automatic_tax")
    check_known(tax, ("enabled", "liability"), "automatic_tax")
    if params.get("discounts"):
        raise invalid_param("discounts", "This fake applies discounts through Checkout only.")
    currency = (get_str(params, "currency") or cus["currency"] or "usd").lower()
    inv = objects.invoice(
        customer=cus,
        currency=currency,
        collection_method=collection,
        auto_advance=get_bool(params, "auto_advance"),
        description=get_str(params, "description"),
        metadata={k: v for k, v in get_metadata(params).items() if v},
        footer=get_str(params, "footer") or cus["invoice_settings"]["footer"],
        automatic_tax=get_bool(tax, "enabled"),
        default_payment_method=pm_id,
        due_date=due_date,
    )
    inv["lines"]["url"] = f"/v1/invoices/{inv['id']}/lines"
    inv["_base_url"] = base_url
    store.add(inv)
    if behaviour == "include":
        pending = [
            ii
            for ii in store.find("invoiceitem", customer=cus["id"], invoice=None)
            if ii["currency"] == currency
        ]
        for ii in reversed(pending):
            ii["invoice"] = inv["id"]
            inv["lines"]["data"].append(objects.invoice_line(ii, inv["id"]))
    recalculate(store, inv)
    store.emit("invoice.created", inv)
    return inv


def create_invoice_item(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/invoiceitems`` (https://docs.stripe.com/api/invoiceitems/create): ``amount``
    (with ``currency``), ``price_data`` (``currency``, ``product``, ``unit_amount``) or
    ``pricing[price]``; onto a draft ``invoice`` or pending for the customer's next one."""
    check_known(params, INVOICE_ITEM_PARAMS)
    inv = None
    if get_str(params, "invoice"):
        inv = store.get("invoice", get_str(params, "invoice"), "invoice")
        if inv["status"] != "draft":
            raise StripeError(
                f"You can only add invoice items to draft invoices; invoice {inv['id']} is {inv['status']}.",
                code="invoice_not_editable",
                param="invoice",
            )
    customer_id = get_str(params, "customer") or (inv["customer"] if inv else None)
    if not customer_id:
        raise missing_param("customer")
    store.get("customer", customer_id, "customer")
    if inv is not None and inv["customer"] != customer_id:
        raise invalid_param("invoice", f"Invoice {inv['id']} belongs to another customer.")
    quantity = get_int(params, "quantity")
    quantity = 1 if quantity is None else quantity
    if quantity < 1:
        raise invalid_param("quantity", "Quantity must be greater than 0.")
    given = [name for name in ("amount", "price_data", "pricing") if params.get(name) not in (None, "")]
    if len(given) > 1:
        raise invalid_param(given[1], f"You may only specify one of these parameters: {', '.join(given)}.")
    price_id = product_id = None
    description = get_str(params, "description")
    if not given:
        raise missing_param("amount")
    if given[0] == "amount":
        currency = get_str(params, "currency") or (inv["currency"] if inv else None)
        if not currency:
            raise missing_param("currency")
        total = get_int(params, "amount", required=True)
        if quantity != 1:
            raise invalid_param("quantity", "`quantity` cannot be used with `amount`; use `price_data`.")
        unit = total
    elif given[0] == "price_data":
        data = get_dict(params, "price_data")
        check_known(
            data, ("currency", "product", "tax_behavior", "unit_amount", "unit_amount_decimal"), "price_data"
        )
        currency = get_str(data, "currency", required=True, label="price_data[currency]")
        product = store.get(
            "product",
            get_str(data, "product", required=True, label="price_data[product]"),
            "price_data[product]",
        )
        unit = get_int(data, "unit_amount", required=True, label="price_data[unit_amount]")
        price = objects.price(
            currency=currency.lower(), unit_amount=unit, product_id=product["id"], metadata={}, active=False
        )
        store.add(price)
        price_id, product_id = price["id"], product["id"]
        description = description or product["name"]
    else:
        pricing = get_dict(params, "pricing")
        check_known(pricing, ("price",), "pricing")
        price = store.get(
            "price", get_str(pricing, "price", required=True, label="pricing[price]"), "pricing[price]"
        )
        currency, unit = price["currency"], price["unit_amount"]
        price_id, product_id = price["id"], price["product"]
        description = description or store.objects.get(product_id, {}).get("name")
    currency = currency.lower()
    if inv is not None and currency != inv["currency"]:
        raise invalid_param("currency", f"The invoice is in {inv['currency']}, not {currency}.")
    ii = objects.invoice_item(
        customer_id=customer_id,
        invoice_id=inv["id"] if inv else None,
        currency=currency,
        unit_amount=unit,
        quantity=quantity,
        description=description,
        metadata={k: v for k, v in get_metadata(params).items() if v},
        price_id=price_id,
        product_id=product_id,
    )
    store.add(ii)
    if inv is not None:
        inv["lines"]["data"].append(objects.invoice_line(ii, inv["id"]))
        recalculate(store, inv)
    store.emit("invoiceitem.created", ii)
    return ii


def finalize_invoice(
    store: Store, inv: dict[str, Any], params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``POST /v1/invoices/{id}/finalize`` (https://docs.stripe.com/api/invoices/finalize): the
    invoice gets its number (the customer's ``invoice_prefix`` and ``next_invoice_sequence``),
    ``hosted_invoice_url`` and ``invoice_pdf``; an invoice with nothing due is paid at once."""
    check_known(params or {}, ("auto_advance",))
    _require_status(inv, "draft", doing="finalize")
    if params and "auto_advance" in params:
        inv["auto_advance"] = get_bool(params, "auto_advance")
    recalculate(store, inv)
    inv["_tax_rate_bps"] = inv.get("_tax_rate_bps", store.tax_rate_bps)
    cus = store.objects.get(inv["customer"] or "")
    if cus is not None:
        inv["number"] = f"{cus['invoice_prefix']}-{cus['next_invoice_sequence']:04d}"
        cus["next_invoice_sequence"] += 1
    else:
        inv["number"] = f"FAKE-{store.order[inv['id']]:04d}"
    finalized = now()
    base = inv.pop("_base_url", "")
    inv.update(
        status="open",
        effective_at=finalized,
        hosted_invoice_url=f"{base}/i/{inv['id']}",
        invoice_pdf=f"{base}/i/{inv['id']}/pdf",
    )
    inv["status_transitions"]["finalized_at"] = finalized
    store.emit("invoice.finalized", inv)
    if inv["amount_due"] == 0:
        _mark_paid(store, inv, None)
    return inv


def _default_payment_method(store: Store, inv: dict[str, Any]) -> str | None:
    # "If not set, defaults to the default payment method in the customer's invoice settings"
    # (https://docs.stripe.com/api/invoices/object#invoice_object-default_payment_method).
    if inv["default_payment_method"]:
        return str(inv["default_payment_method"])
    cus = store.objects.get(inv["customer"] or "")
    return (cus or {}).get("invoice_settings", {}).get("default_payment_method")


def invoice_payment_intent(store: Store, inv: dict[str, Any], pm_id: str | None) -> dict[str, Any]:
    """The invoice's PaymentIntent: made on the first attempt, reused by later ones, linked
    through an InvoicePayment."""
    payment = next(iter(store.find("invoice_payment", invoice=inv["id"], status="open")), None)
    if payment is not None:
        pi = store.objects[payment["payment"]["payment_intent"]]
        if pm_id:
            pi["payment_method"] = pm_id
        return pi
    pi = objects.payment_intent(
        amount=inv["amount_remaining"],
        currency=inv["currency"],
        customer_id=inv["customer"],
        metadata={},
        description="Payment for Invoice",
        receipt_email=None,
        setup_future_usage=None,
        method_type="card",
    )
    pi["payment_method"] = pm_id
    if pm_id:
        pi["status"] = "requires_confirmation"
    store.add(pi)
    store.add(objects.invoice_payment(invoice_obj=inv, pi=pi, amount=inv["amount_remaining"]))
    inv["confirmation_secret"] = {"client_secret": pi["client_secret"], "type": "payment_intent"}
    store.emit("payment_intent.created", pi)
    return pi


def pay_invoice(
    store: Store,
    inv: dict[str, Any],
    params: dict[str, Any],
    *,
    on_session_card: str | None = None,
) -> dict[str, Any]:
    """``POST /v1/invoices/{id}/pay`` (https://docs.stripe.com/api/invoices/pay), or the customer
    paying on the hosted page (``on_session_card``: saved default or a test card; 3D Secure is
    completed there).

    ``off_session`` defaults to true. A decline answers the PaymentIntent's 402 card error
    after ``invoice.payment_failed``; success sends ``invoice_payment.paid``, ``invoice.paid``
    and ``invoice.payment_succeeded`` after the PaymentIntent's events.
    """
    check_known(params, INVOICE_PAY_PARAMS)
    if inv["status"] == "paid":
        raise StripeError("Invoice is already paid.")
    _require_status(inv, "open", doing="pay")
    if get_bool(params, "paid_out_of_band"):
        _mark_paid(store, inv, None, out_of_band=True)
        return inv
    on_session = on_session_card is not None
    if on_session_card and on_session_card != "saved":
        pm_id: str | None = payments.card_pm(store, on_session_card)["id"]
    elif get_str(params, "payment_method"):
        pm_id = payments.payment_method_for(store, get_str(params, "payment_method"))["id"]
    else:
        pm_id = _default_payment_method(store, inv)
    if not pm_id:
        raise StripeError(
            "This customer has no attached payment source or default payment method. Please consider "
            "adding a default payment method.",
            param="payment_method",
        )
    pi = invoice_payment_intent(store, inv, pm_id)
    if pi["status"] == "requires_action" and not on_session:
        pi["status"] = "requires_confirmation"
    inv["attempted"] = True
    inv["attempt_count"] += 1
    try:
        payments.confirm_payment_intent(
            store,
            pi,
            off_session=not on_session and get_bool(params, "off_session", default=True),
            authenticated=on_session,
        )
    except StripeError as exc:
        if exc.keep_effects:
            store.emit("invoice.payment_failed", inv)
        raise
    if pi["status"] == "requires_action":
        # https://docs.stripe.com/api/events/types#event_types-invoice.payment_action_required
        store.emit("invoice.payment_action_required", inv)
    return inv


def payment_succeeded(store: Store, pi: dict[str, Any]) -> None:
    """A PaymentIntent linked to an invoice succeeded (however it was confirmed): pay the invoice."""
    for payment in store.find("invoice_payment", status="open"):
        if payment["payment"]["payment_intent"] != pi["id"]:
            continue
        inv = store.objects[payment["invoice"]]
        payment.update(status="paid", amount_paid=min(pi["amount_received"], payment["amount_requested"]))
        payment["status_transitions"]["paid_at"] = now()
        store.emit("invoice_payment.paid", payment)
        if inv["status"] == "open":
            _mark_paid(store, inv, payment)


def _mark_paid(
    store: Store, inv: dict[str, Any], payment: dict[str, Any] | None, out_of_band: bool = False
) -> None:
    paid = payment["amount_paid"] if payment else inv["amount_remaining"]
    inv["amount_paid"] += paid
    if out_of_band:
        inv["amount_paid_off_stripe"] += paid
    inv["amount_remaining"] = max(0, inv["amount_due"] - inv["amount_paid"])
    inv["status"] = "paid"
    inv["status_transitions"]["paid_at"] = now()
    store.emit("invoice.paid", inv)
    if not out_of_band:
        # "invoice.payment_succeeded: Occurs whenever an invoice payment attempt succeeds";
        # marking it paid out of band sends only invoice.paid
        # (https://docs.stripe.com/api/events/types#event_types-invoice.paid).
        store.emit("invoice.payment_succeeded", inv)


def attach_payment(store: Store, inv: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/invoices/{id}/attach_payment`` (https://docs.stripe.com/api/invoices/attach_payment):
    a PaymentIntent made elsewhere pays the invoice; one that has not succeeded yet pays it
    when it does."""
    check_known(params, ("payment_intent", "payment_record"))
    if get_str(params, "payment_record"):
        raise invalid_param("payment_record", "This fake only attaches PaymentIntents.")
    pi = store.get("payment_intent", get_str(params, "payment_intent", required=True), "payment_intent")
    _require_status(inv, "open", "draft", doing="attach a payment to")
    if any(p["payment"]["payment_intent"] == pi["id"] for p in store.find("invoice_payment")):
        raise invalid_param("payment_intent", f"PaymentIntent {pi['id']} is already attached to an invoice.")
    if pi["currency"] != inv["currency"]:
        raise invalid_param("payment_intent", "The PaymentIntent's currency differs from the invoice's.")
    payment = objects.invoice_payment(invoice_obj=inv, pi=pi, amount=pi["amount"])
    payment["is_default"] = False
    store.add(payment)
    if pi["status"] == "succeeded" and inv["status"] == "open":
        payment_succeeded(store, pi)
    return inv


def void_invoice(store: Store, inv: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/invoices/{id}/void`` (https://docs.stripe.com/api/invoices/void_invoice): only
    open (or uncollectible) invoices; drafts are deleted instead. An unpaid PaymentIntent of the
    invoice is canceled."""
    _require_status(inv, "open", "uncollectible", doing="void")
    for payment in store.find("invoice_payment", invoice=inv["id"], status="open"):
        pi = store.objects[payment["payment"]["payment_intent"]]
        payment["status"] = "canceled"
        payment["status_transitions"]["canceled_at"] = now()
        if pi["status"] not in ("succeeded", "canceled", "processing"):
            payments.cancel_payment_intent(store, pi, {})
    inv["status"] = "void"
    inv["amount_remaining"] = 0
    inv["status_transitions"]["voided_at"] = now()
    store.emit("invoice.voided", inv)
    return inv


def invoice_for_session(store: Store, session: dict[str, Any], pi: dict[str, Any]) -> dict[str, Any]:
    """The paid Invoice Checkout makes with ``invoice_creation[enabled]=true``
    (https://docs.stripe.com/payments/checkout/receipts#paid-invoices): the session's lines,
    discount and tax, ``invoice_data``'s description, metadata and footer, paid by the
    session's PaymentIntent."""
    cus = store.objects.get(session["customer"] or "")
    data = session["invoice_creation"]["invoice_data"]
    inv = objects.invoice(
        customer=cus,
        currency=session["currency"],
        collection_method="charge_automatically",
        auto_advance=False,
        description=data.get("description"),
        metadata=dict(data.get("metadata") or {}),
        footer=data.get("footer"),
        automatic_tax=session["automatic_tax"]["enabled"],
        default_payment_method=None,
        due_date=None,
    )
    details = session["customer_details"] or {}
    inv.update(
        customer_email=details.get("email") or inv["customer_email"],
        customer_name=details.get("name") or inv["customer_name"],
    )
    inv["lines"]["url"] = f"/v1/invoices/{inv['id']}/lines"
    inv["_base_url"] = session["_base_url"]
    if "_tax_rate_bps" in session:
        inv["_tax_rate_bps"] = session["_tax_rate_bps"]
    store.add(inv)
    for item in session["_line_items"]:
        price = item["price"]
        ii = objects.invoice_item(
            customer_id=inv["customer"],
            invoice_id=inv["id"],
            currency=inv["currency"],
            unit_amount=price["unit_amount"],
            quantity=item["quantity"],
            description=item["description"],
            metadata={},
            price_id=price["id"],
            product_id=price["product"],
        )
        store.add(ii)
        inv["lines"]["data"].append(objects.invoice_line(ii, inv["id"]))
    discount = session["total_details"]["amount_discount"]
    if discount:
        inv["_discount_amount"] = discount
        inv["discounts"] = [new_id("di_")]
        inv["total_discount_amounts"] = [{"amount": discount, "discount": inv["discounts"][0]}]
    recalculate(store, inv)
    store.emit("invoice.created", inv)
    finalize_invoice(store, inv)
    if inv["status"] == "open":
        payment = objects.invoice_payment(invoice_obj=inv, pi=pi, amount=inv["amount_remaining"])
        store.add(payment)
        payment_succeeded(store, pi)
    return inv
