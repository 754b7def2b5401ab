"""Saved cards and payments made through the API: PaymentMethods, SetupIntents and PaymentIntents.

A prepaid-credits product saves a card once (Checkout ``mode=setup`` or a SetupIntent) and
then charges it off-session (automatic top-ups, invoices). What each card does is decided by
the test card it was made from (:mod:`fakes.stripe.cards`). Like :mod:`fakes.stripe.actions`,
each function runs inside the caller's ``store.batch()``; card errors raise a
:class:`StripeError` with ``keep_effects`` so the PaymentIntent, its failed Charge and their
events stay, as on Stripe.
"""

from __future__ import annotations

from typing import Any

from . import cards, objects
from .errors import StripeError, invalid_param, missing_param
from .forms import check_known, get_bool, get_dict, get_int, get_list, get_metadata, get_str
from .store import Store, new_id, now, public

PAYMENT_INTENT_PARAMS = {
    "allowed_payment_method_types",
    "amount",
    "amount_details",
    "application_fee_amount",
    "automatic_payment_methods",
    "capture_method",
    "confirm",
    "confirmation_method",
    "confirmation_token",
    "currency",
    "customer",
    "customer_account",
    "description",
    "error_on_requires_action",
    "excluded_payment_method_types",
    "hooks",
    "mandate",
    "mandate_data",
    "metadata",
    "off_session",
    "on_behalf_of",
    "payment_details",
    "payment_method",
    "payment_method_configuration",
    "payment_method_data",
    "payment_method_options",
    "payment_method_types",
    "radar_options",
    "receipt_email",
    "return_url",
    "setup_future_usage",
    "shipping",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "transfer_data",
    "transfer_group",
    "use_stripe_sdk",
}
PAYMENT_INTENT_UPDATE_PARAMS = {
    "amount",
    "currency",
    "customer",
    "description",
    "metadata",
    "payment_method",
    "payment_method_types",
    "receipt_email",
    "setup_future_usage",
    "shipping",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "transfer_group",
}
PAYMENT_INTENT_CONFIRM_PARAMS = {
    "capture_method",
    "confirmation_token",
    "error_on_requires_action",
    "mandate",
    "mandate_data",
    "off_session",
    "payment_method",
    "payment_method_data",
    "payment_method_options",
    "payment_method_types",
    "radar_options",
    "receipt_email",
    "return_url",
    "setup_future_usage",
    "shipping",
    "use_stripe_sdk",
}
CANCELLATION_REASONS = {"abandoned", "duplicate", "fraudulent", "requested_by_customer"}
SETUP_INTENT_PARAMS = {
    "allowed_payment_method_types",
    "attach_to_self",
    "automatic_payment_methods",
    "confirm",
    "confirmation_token",
    "customer",
    "customer_account",
    "description",
    "excluded_payment_method_types",
    "flow_directions",
    "mandate_data",
    "metadata",
    "on_behalf_of",
    "payment_method",
    "payment_method_configuration",
    "payment_method_data",
    "payment_method_options",
    "payment_method_types",
    "return_url",
    "single_use",
    "usage",
    "use_stripe_sdk",
}
SETUP_INTENT_CONFIRM_PARAMS = {
    "confirmation_token",
    "mandate_data",
    "payment_method",
    "payment_method_data",
    "payment_method_options",
    "return_url",
    "use_stripe_sdk",
}
# Stripe's minimum charge amounts (https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts).
MINIMUM_AMOUNT = {"usd": 50, "eur": 50, "gbp": 30}
DECLINE_MESSAGE = "Your card was declined."
AUTHENTICATION_MESSAGE = "Your card was declined. This transaction requires authentication."

# --- PaymentMethods -------------------------------------------------------------------------


def payment_method_for(store: Store, value: str | None, param: str = "payment_method") -> dict[str, Any]:
    """The PaymentMethod ``value`` names; a test token (``pm_card_visa``) makes a new one.

    "pm_card_visa ... Using a test token creates a new PaymentMethod each time"
    (https://docs.stripe.com/testing#cards, "PaymentMethods").
    """
    if not value:
        raise missing_param(param)
    card = cards.TEST_CARDS.get(value)
    if card is not None:
        return store.add(objects.payment_method(card=card))
    return store.get("payment_method", value, param)


def card_pm(store: Store, card: str | None) -> dict[str, Any]:
    """A new PaymentMethod for the card a customer picked on a hosted page (token or number)."""
    found = cards.find(card or cards.DEFAULT_CARD)
    if found is None:
        raise invalid_param("card", f"Unknown test card {card!r}; use one of {', '.join(cards.TEST_CARDS)}.")
    return store.add(objects.payment_method(card=found))


def _card_error(
    code: str,
    message: str,
    *,
    pm: dict[str, Any],
    charge_id: str | None = None,
    intent: dict[str, Any] | None = None,
    decline_code: str | None = None,
) -> dict[str, Any]:
    """The ``error`` hash of a card error, as the API returns it and ``last_payment_error`` keeps it
    (https://docs.stripe.com/api/errors: type, code, decline_code, message, charge, payment_method)."""
    error: dict[str, Any] = {
        "type": "card_error",
        "code": code,
        "decline_code": decline_code or code,
        "doc_url": f"https://docs.stripe.com/error-codes/{code.replace('_', '-')}",
        "message": message,
        "payment_method": public(pm),
    }
    if code == "card_declined":
        error["decline_code"] = decline_code or "generic_decline"
        error["advice_code"] = "try_again_later"
    if charge_id:
        error["charge"] = charge_id
    if intent is not None:
        error[intent["object"]] = intent
    return error


def _raise_card_error(error: dict[str, Any]) -> None:
    # 402 card_error is what stripe-python maps onto stripe.CardError; the error carries the
    # intent (https://docs.stripe.com/api/errors: "payment_intent: The PaymentIntent object for
    # errors returned on a request involving a PaymentIntent").
    fields = {k: v for k, v in error.items() if k not in ("type", "code", "message", "doc_url")}
    raise StripeError(
        error["message"], status=402, type="card_error", code=error["code"], keep_effects=True, **fields
    )


def attach(store: Store, pm: dict[str, Any], customer_id: str | None) -> dict[str, Any]:
    """``POST /v1/payment_methods/{id}/attach`` (https://docs.stripe.com/api/payment_methods/attach)."""
    if not customer_id:
        raise missing_param("customer")
    store.get("customer", customer_id, "customer")
    if pm["customer"] == customer_id:
        return pm
    if pm["customer"]:
        raise StripeError(
            "The payment method you provided has already been attached to a customer.",
            code="payment_method_unexpected_state",
            param="payment_method",
        )
    if pm["_behaviour"] == "decline":
        # Attaching checks the card with the issuer; 4000 0000 0000 0002 fails that check,
        # whereas 0341 is documented to attach and fail only when charged.
        _raise_card_error(_card_error("card_declined", DECLINE_MESSAGE, pm=pm))
    pm["customer"] = customer_id
    store.emit("payment_method.attached", pm)
    return pm


def detach(store: Store, pm: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/payment_methods/{id}/detach`` (https://docs.stripe.com/api/payment_methods/detach):
    the card can no longer be used, and it stops being the customer's default."""
    customer_id = pm["customer"]
    if not customer_id:
        raise StripeError(
            "The payment method you provided is not attached to a customer so detachment is impossible.",
            code="payment_method_unexpected_state",
        )
    pm["customer"] = None
    cus = store.objects.get(customer_id)
    if cus and cus["invoice_settings"]["default_payment_method"] == pm["id"]:
        previous = {"invoice_settings": dict(cus["invoice_settings"])}
        cus["invoice_settings"]["default_payment_method"] = None
        store.emit("customer.updated", cus, previous)
    store.emit("payment_method.detached", pm, {"customer": customer_id})
    return pm


def list_payment_methods(
    store: Store, customer_id: str | None, method_type: str | None
) -> list[dict[str, Any]]:
    found = (
        store.find("payment_method", customer=customer_id) if customer_id else store.find("payment_method")
    )
    return [pm for pm in found if not method_type or pm["type"] == method_type]


def apply_customer_payment_settings(
    store: Store, cus: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    """``payment_method`` (create only) and ``invoice_settings[default_payment_method]`` of a Customer.

    Returns the previous attributes that changed. "default_payment_method: ID of a payment
    method that's attached to the customer, to be used as the customer's default payment
    method for invoices" (https://docs.stripe.com/api/customers/update).
    """
    previous: dict[str, Any] = {}
    if get_str(params, "payment_method"):
        attach(store, payment_method_for(store, get_str(params, "payment_method")), cus["id"])
    settings = get_dict(params, "invoice_settings")
    check_known(
        settings,
        {"custom_fields", "default_payment_method", "footer", "rendering_options"},
        "invoice_settings",
    )
    if "default_payment_method" in settings:
        label = "invoice_settings[default_payment_method]"
        pm_id = get_str(settings, "default_payment_method", label=label)
        if pm_id:
            pm = store.get("payment_method", pm_id, label)
            if pm["customer"] != cus["id"]:
                raise invalid_param(
                    label,
                    f"The customer does not have a payment method with the ID {pm_id}. The payment "
                    "method must be attached to the customer.",
                )
        previous["invoice_settings"] = dict(cus["invoice_settings"])
        cus["invoice_settings"]["default_payment_method"] = pm_id
    if "footer" in settings:
        previous.setdefault("invoice_settings", dict(cus["invoice_settings"]))
        cus["invoice_settings"]["footer"] = get_str(settings, "footer")
    return previous


# --- PaymentIntents -----------------------------------------------------------------------------


def _off_session(params: dict[str, Any]) -> bool:
    # off_session is a boolean or "one_off" / "recurring"
    # (https://docs.stripe.com/api/payment_intents/create#create_payment_intent-off_session).
    raw = params.get("off_session")
    if raw in ("one_off", "recurring"):
        return True
    return get_bool(params, "off_session")


def _amount(params: dict[str, Any], currency: str) -> int:
    amount = get_int(params, "amount", required=True)
    minimum = MINIMUM_AMOUNT.get(currency, 1)
    if amount < minimum:
        raise StripeError(
            f"Amount must be at least {minimum} {currency} cents.", code="amount_too_small", param="amount"
        )
    return amount


def create_payment_intent(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/payment_intents`` (https://docs.stripe.com/api/payment_intents/create).

    With ``confirm=true`` it is also confirmed; ``off_session=true`` "indicates that the
    customer is not in your checkout flow", so a card that needs authentication fails instead
    of asking (https://docs.stripe.com/payments/save-and-reuse#charge-saved-payment-method).
    """
    check_known(params, PAYMENT_INTENT_PARAMS)
    currency = get_str(params, "currency", required=True).lower()
    amount = _amount(params, currency)
    customer_id = get_str(params, "customer")
    if customer_id:
        store.get("customer", customer_id, "customer")
    confirm = get_bool(params, "confirm")
    off_session = _off_session(params)
    if params.get("off_session") not in (None, "") and not confirm:
        raise invalid_param("off_session", "You can only use `off_session` when `confirm` is true.")
    if get_str(params, "capture_method") == "manual":
        raise invalid_param("capture_method", "This fake only implements capture_method=automatic.")
    sfu = get_str(params, "setup_future_usage")
    if sfu not in (None, "on_session", "off_session"):
        raise invalid_param("setup_future_usage", f"Invalid setup_future_usage: {sfu}")
    types = [str(t) for t in get_list(params, "payment_method_types")] or ["card"]
    if types != ["card"]:
        raise invalid_param("payment_method_types", "This fake only implements card payments.")
    pm = (
        payment_method_for(store, get_str(params, "payment_method"))
        if get_str(params, "payment_method")
        else None
    )
    if pm is not None and pm["customer"] and customer_id and pm["customer"] != customer_id:
        raise invalid_param(
            "payment_method",
            f"The provided PaymentMethod {pm['id']} belongs to a different Customer than {customer_id}.",
        )
    pi = objects.payment_intent(
        amount=amount,
        currency=currency,
        customer_id=customer_id,
        metadata={k: v for k, v in get_metadata(params).items() if v},
        description=get_str(params, "description"),
        receipt_email=get_str(params, "receipt_email"),
        setup_future_usage=sfu,
        method_type="card",
    )
    pi["capture_method"] = get_str(params, "capture_method") or "automatic_async"
    if pm is not None:
        pi["payment_method"] = pm["id"]
        pi["status"] = "requires_confirmation"
    store.add(pi)
    store.emit("payment_intent.created", pi)
    if confirm:
        confirm_payment_intent(
            store,
            pi,
            off_session=off_session,
            error_on_requires_action=get_bool(params, "error_on_requires_action"),
        )
    return pi


def update_payment_intent(store: Store, pi: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/payment_intents/{id}`` (https://docs.stripe.com/api/payment_intents/update):
    metadata merges; a finished PaymentIntent only takes metadata, description and the like."""
    check_known(params, PAYMENT_INTENT_UPDATE_PARAMS)
    finished = pi["status"] in ("succeeded", "canceled", "processing")
    for name in ("amount", "currency", "payment_method", "customer", "setup_future_usage"):
        if name in params and finished:
            raise StripeError(
                f"You cannot update {name} on a PaymentIntent with status {pi['status']}.",
                code="payment_intent_unexpected_state",
                param=name,
            )
    if "amount" in params:
        pi["amount"] = _amount(params, pi["currency"])
    if "customer" in params:
        pi["customer"] = store.get("customer", get_str(params, "customer"), "customer")["id"]
    if get_str(params, "payment_method"):
        pi["payment_method"] = payment_method_for(store, get_str(params, "payment_method"))["id"]
        pi["status"] = "requires_confirmation"
    for name in ("description", "receipt_email", "setup_future_usage", "statement_descriptor_suffix"):
        if name in params:
            pi[name] = get_str(params, name)
    if "metadata" in params:
        for key, value in get_metadata(params).items():
            if value:
                pi["metadata"][key] = value
            else:
                pi["metadata"].pop(key, None)
    return pi


def confirm_params(store: Store, pi: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/payment_intents/{id}/confirm`` (https://docs.stripe.com/api/payment_intents/confirm)."""
    check_known(params, PAYMENT_INTENT_CONFIRM_PARAMS)
    if get_str(params, "payment_method"):
        pi["payment_method"] = payment_method_for(store, get_str(params, "payment_method"))["id"]
    if "setup_future_usage" in params:
        pi["setup_future_usage"] = get_str(params, "setup_future_usage")
    if "receipt_email" in params:
        pi["receipt_email"] = get_str(params, "receipt_email")
    return confirm_payment_intent(
        store,
        pi,
        off_session=_off_session(params),
        error_on_requires_action=get_bool(params, "error_on_requires_action"),
    )


def _charge(store: Store, pi: dict[str, Any], pm: dict[str, Any], *, succeeded: bool) -> dict[str, Any]:
    ch = objects.charge(
        pi=pi,
        status="succeeded" if succeeded else "failed",
        method_type="card",
        email=pm["billing_details"]["email"] or pi["receipt_email"],
        name=pm["billing_details"]["name"],
        card=objects.charge_card(pm),
    )
    ch["outcome"] = dict(objects.APPROVED_OUTCOME if succeeded else objects.DECLINED_OUTCOME)
    if not succeeded:
        ch.update(failure_code="card_declined", failure_message=DECLINE_MESSAGE)
    store.add(ch)
    pi["latest_charge"] = ch["id"]
    return ch


def confirm_payment_intent(
    store: Store,
    pi: dict[str, Any],
    *,
    off_session: bool,
    authenticated: bool = False,
    error_on_requires_action: bool = False,
) -> dict[str, Any]:
    """Charge the PaymentIntent's card; what happens is the test card's behaviour.

    * succeeds: a Charge, ``charge.succeeded``, ``payment_intent.succeeded``; with
      ``setup_future_usage`` the card is attached to the customer
      (https://docs.stripe.com/payments/save-during-payment).
    * declined: 402 ``card_declined``, a failed Charge, ``charge.failed``,
      ``payment_intent.payment_failed``, status back to ``requires_payment_method``
      (https://docs.stripe.com/declines/codes).
    * needs 3D Secure: on-session the status becomes ``requires_action``; off-session the
      error code is ``authentication_required`` and "Off-session PaymentIntents that fail
      confirmation due to Strong Customer Authentication (SCA) requirements have a status of
      requires_payment_method"
      (https://support.stripe.com/questions/manual-confirmation-for-off-session-payments-requiring-strong-customer-authentication-sca;
      https://docs.stripe.com/payments/save-and-reuse, "Charge the saved payment method later").
    """
    if pi["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
        raise StripeError(
            f"This PaymentIntent's status is {pi['status']}, so it cannot be confirmed. You can only "
            "confirm a PaymentIntent whose status is requires_payment_method, requires_confirmation "
            "or requires_action.",
            code="payment_intent_unexpected_state",
        )
    pm = store.objects.get(pi["payment_method"] or "")
    if pm is None:
        raise StripeError(
            "You cannot confirm this PaymentIntent because it's missing a payment method. To confirm "
            "the PaymentIntent with a payment method, provide `payment_method`.",
            code="payment_intent_unexpected_state",
            param="payment_method",
        )
    behaviour = pm["_behaviour"]
    pi["next_action"] = None
    if behaviour == "authenticate" and not authenticated:
        if off_session or error_on_requires_action:
            pi["status"] = "requires_payment_method"
            error = _card_error("authentication_required", AUTHENTICATION_MESSAGE, pm=pm)
            pi["last_payment_error"] = error
            store.emit("payment_intent.payment_failed", pi)
            _raise_card_error({**error, "payment_intent": store.render(pi)})
        pi["status"] = "requires_action"
        # "next_action.type: use_stripe_sdk ... Stripe.js handles it"
        # (https://docs.stripe.com/api/payment_intents/object#payment_intent_object-next_action).
        pi["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect"}}
        store.emit("payment_intent.requires_action", pi)
        return pi
    if behaviour in ("decline", "decline_charge"):
        ch = _charge(store, pi, pm, succeeded=False)
        error = _card_error("card_declined", DECLINE_MESSAGE, pm=pm, charge_id=ch["id"])
        pi.update(status="requires_payment_method", last_payment_error=error)
        store.emit("charge.failed", ch)
        store.emit("payment_intent.payment_failed", pi)
        _raise_card_error({**error, "payment_intent": store.render(pi)})
    ch = _charge(store, pi, pm, succeeded=True)
    pi.update(status="succeeded", amount_received=pi["amount"], last_payment_error=None)
    if pi["setup_future_usage"] and pi["customer"] and not pm["customer"]:
        attach(store, pm, pi["customer"])
    store.emit("charge.succeeded", ch)
    store.emit("payment_intent.succeeded", pi)
    # An invoice this PaymentIntent pays (its own, or one it was attached to) is paid now.
    from . import invoicing

    invoicing.payment_succeeded(store, pi)
    return pi


def fail_authentication(store: Store, pi: dict[str, Any]) -> dict[str, Any]:
    """The customer fails or abandons 3D Secure: back to ``requires_payment_method``."""
    if pi["status"] != "requires_action":
        raise StripeError(f"PaymentIntent {pi['id']} is {pi['status']}, not requires_action.")
    pm = store.objects[pi["payment_method"]]
    pi.update(
        status="requires_payment_method",
        next_action=None,
        last_payment_error={
            **_card_error(
                "payment_intent_authentication_failure",
                "The provided PaymentMethod has failed authentication.",
                pm=pm,
            ),
            "type": "invalid_request_error",
        },
    )
    store.emit("payment_intent.payment_failed", pi)
    return pi


def cancel_payment_intent(store: Store, pi: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/payment_intents/{id}/cancel`` (https://docs.stripe.com/api/payment_intents/cancel):
    "You can cancel a PaymentIntent object when it's in one of these statuses:
    requires_payment_method, requires_capture, requires_confirmation, requires_action or,
    in rare cases, processing"."""
    check_known(params, ("cancellation_reason",))
    reason = get_str(params, "cancellation_reason")
    if reason is not None and reason not in CANCELLATION_REASONS:
        raise invalid_param("cancellation_reason", f"Invalid cancellation_reason: {reason}")
    if pi["status"] in ("succeeded", "canceled"):
        raise StripeError(
            f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}. Only a "
            "PaymentIntent with one of the following statuses may be canceled: requires_payment_method, "
            "requires_capture, requires_confirmation, requires_action, processing.",
            code="payment_intent_unexpected_state",
        )
    pi.update(status="canceled", canceled_at=now(), cancellation_reason=reason, next_action=None)
    store.emit("payment_intent.canceled", pi)
    return pi


# --- SetupIntents -------------------------------------------------------------------------------


def create_setup_intent(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/setup_intents`` (https://docs.stripe.com/api/setup_intents/create)."""
    check_known(params, SETUP_INTENT_PARAMS)
    customer_id = get_str(params, "customer")
    if customer_id:
        store.get("customer", customer_id, "customer")
    usage = get_str(params, "usage") or "off_session"
    if usage not in ("off_session", "on_session"):
        raise invalid_param("usage", f"Invalid usage: {usage}")
    types = [str(t) for t in get_list(params, "payment_method_types")] or ["card"]
    if types != ["card"]:
        raise invalid_param("payment_method_types", "This fake only implements cards.")
    pm = (
        payment_method_for(store, get_str(params, "payment_method"))
        if get_str(params, "payment_method")
        else None
    )
    si = objects.setup_intent(
        customer_id=customer_id,
        payment_method_id=pm["id"] if pm else None,
        usage=usage,
        metadata={k: v for k, v in get_metadata(params).items() if v},
        description=get_str(params, "description"),
        payment_method_types=types,
    )
    store.add(si)
    store.emit("setup_intent.created", si)
    if get_bool(params, "confirm"):
        confirm_setup_intent(store, si)
    return si


def confirm_setup_params(store: Store, si: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/setup_intents/{id}/confirm`` (https://docs.stripe.com/api/setup_intents/confirm)."""
    check_known(params, SETUP_INTENT_CONFIRM_PARAMS)
    if get_str(params, "payment_method"):
        si["payment_method"] = payment_method_for(store, get_str(params, "payment_method"))["id"]
    return confirm_setup_intent(store, si)


def confirm_setup_intent(store: Store, si: dict[str, Any], *, authenticated: bool = False) -> dict[str, Any]:
    """Set the card up: ``setup_intent.succeeded`` and the card attached to the customer;
    3D Secure cards first need the customer (``requires_action``); 0002 is declined
    (``setup_intent.setup_failed``) — https://docs.stripe.com/payments/setup-intents#setup-intent-statuses."""
    if si["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
        raise StripeError(
            f"You cannot confirm this SetupIntent because it has a status of {si['status']}.",
            code="setup_intent_unexpected_state",
        )
    pm = store.objects.get(si["payment_method"] or "")
    if pm is None:
        raise StripeError(
            "You cannot confirm this SetupIntent because it's missing a payment method.",
            code="setup_intent_unexpected_state",
            param="payment_method",
        )
    si["next_action"] = None
    if pm["_behaviour"] == "decline":
        error = _card_error("card_declined", DECLINE_MESSAGE, pm=pm)
        si.update(status="requires_payment_method", last_setup_error=error)
        store.emit("setup_intent.setup_failed", si)
        _raise_card_error({**error, "setup_intent": store.render(si)})
    if pm["_behaviour"] == "authenticate" and not authenticated:
        si["status"] = "requires_action"
        si["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect"}}
        store.emit("setup_intent.requires_action", si)
        return si
    si.update(status="succeeded", last_setup_error=None, latest_attempt=new_id("setatt_1"))
    store.emit("setup_intent.succeeded", si)
    if si["customer"] and pm["customer"] != si["customer"]:
        attach(store, pm, si["customer"])
    return si


def fail_setup_authentication(store: Store, si: dict[str, Any]) -> dict[str, Any]:
    if si["status"] != "requires_action":
        raise StripeError(f"SetupIntent {si['id']} is {si['status']}, not requires_action.")
    pm = store.objects[si["payment_method"]]
    si.update(
        status="requires_payment_method",
        next_action=None,
        last_setup_error={
            **_card_error(
                "setup_intent_authentication_failure",
                "The latest attempt to set up the payment method has failed because authentication failed.",
                pm=pm,
            ),
            "type": "invalid_request_error",
        },
    )
    store.emit("setup_intent.setup_failed", si)
    return si
