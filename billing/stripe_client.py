"""The only module that imports `stripe`.

One `StripeClient` per process, built from settings: pinned API version, httpx transport with a
timeout, 2 network retries (stripe-python reuses the idempotency key across them), and the base
address of fakes/stripe when `STRIPE_API_BASE` is set. Every SDK error leaves here as one of ours;
every Stripe object leaves here as a plain dict.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import stripe
from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from billing.exceptions import (
    CardDeclined,
    InvalidWebhook,
    PaymentsNotConfigured,
    StripeFailure,
    StripeUnavailable,
)

API_VERSION = "2026-10-28.endive"  # what stripe-python 16.1 speaks; webhook endpoints must match
NETWORK_RETRIES = 2
SIGNATURE_TOLERANCE_SECONDS = 300

_lock = threading.Lock()
StripeObject = dict[str, Any]
"""A Stripe object (or event) as plain JSON: what leaves this module."""

_client: stripe.StripeClient | None = None
_client_config: tuple[str, str, float] | None = None


def ensure_configured() -> None:
    if not settings.STRIPE_SECRET_KEY:
        raise PaymentsNotConfigured("Payments are not configured (STRIPE_SECRET_KEY is empty).")


def livemode() -> bool:
    """Whether the configured key is a live one; events of the other mode are ignored."""
    key: str = settings.STRIPE_SECRET_KEY
    return key.startswith(("sk_live_", "rk_live_"))


@sensitive_variables("config")
def get_client() -> stripe.StripeClient:
    """The process's client; rebuilt when the settings it came from change (tests override them)."""
    global _client, _client_config
    ensure_configured()
    config = (settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE, settings.STRIPE_TIMEOUT_SECONDS)
    with _lock:
        if _client is None or _client_config != config:
            _client = stripe.StripeClient(
                settings.STRIPE_SECRET_KEY,
                stripe_version=API_VERSION,
                base_addresses={"api": settings.STRIPE_API_BASE.rstrip("/")} if settings.STRIPE_API_BASE else None,
                max_network_retries=NETWORK_RETRIES,
                http_client=stripe.HTTPXClient(timeout=settings.STRIPE_TIMEOUT_SECONDS, allow_sync_methods=True),
            )
            _client_config = config
        return _client


def _plain(obj: Any) -> StripeObject:
    plain: StripeObject = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return plain


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
        raise StripeUnavailable(f"Stripe is unreachable or busy: {exc.user_message or type(exc).__name__}") from exc
    except stripe.APIError as exc:
        raise StripeUnavailable(f"Stripe had a server error (HTTP {exc.http_status})") from exc
    except stripe.CardError as exc:
        # 402 `card_error`: declined, or 3D Secure needed off-session (`authentication_required`);
        # the body embeds the PaymentIntent it left behind (docs.stripe.com/api/errors).
        body: dict[str, Any] = exc.json_body if isinstance(exc.json_body, dict) else {}
        error: dict[str, Any] = body.get("error") or {}
        intent = error.get("payment_intent") or {}
        raise CardDeclined(
            exc.user_message or "The card was declined.", code=str(exc.code or error.get("code") or "card_declined"),
            decline_code=str(error.get("decline_code") or ""),
            payment_intent_id=intent.get("id") if isinstance(intent, dict) else None,
        ) from exc
    except stripe.StripeError as exc:
        # Bad parameters, authentication, idempotency conflicts: a retry will not help.
        raise StripeFailure(f"Stripe refused the request: {exc.user_message or type(exc).__name__}") from exc


def create_customer(*, email: str, name: str, user_id: int, idempotency_key: str) -> str:
    customer = _call(
        get_client().v1.customers.create,
        params={"email": email, "name": name, "metadata": {"user_id": str(user_id)}},
        options={"idempotency_key": idempotency_key},
    )
    customer_id: str = customer["id"]
    return customer_id


def create_checkout_session(*, params: StripeObject, idempotency_key: str) -> StripeObject:
    session = _call(
        get_client().v1.checkout.sessions.create, params=params, options={"idempotency_key": idempotency_key}
    )
    return _plain(session)


def retrieve_checkout_session(session_id: str) -> StripeObject:
    session = _call(
        get_client().v1.checkout.sessions.retrieve, session_id, params={"expand": ["line_items"]}
    )
    return _plain(session)


def expire_checkout_session(session_id: str) -> StripeObject:
    """POST /v1/checkout/sessions/:id/expire: only an `open` session can be expired; Stripe then
    sends `checkout.session.expired`."""
    return _plain(_call(get_client().v1.checkout.sessions.expire, session_id))


def retrieve_payment_intent(payment_intent_id: str, *, expand: list[str] | None = None) -> StripeObject:
    params = {"expand": expand} if expand else None
    return _plain(_call(get_client().v1.payment_intents.retrieve, payment_intent_id, params=params))


def retrieve_invoice(invoice_id: str) -> StripeObject:
    """An invoice; `hosted_invoice_url` and `invoice_pdf` are set once it is finalized."""
    return _plain(_call(get_client().v1.invoices.retrieve, invoice_id))


def list_charge_refunds(charge_id: str) -> list[StripeObject]:
    page = _call(get_client().v1.refunds.list, params={"charge": charge_id, "limit": 100})
    return [_plain(refund) for refund in page.data]


# --- saved cards and auto top-ups (billing.services.topups) ---------------------------------------


def retrieve_setup_intent(setup_intent_id: str) -> StripeObject:
    """A SetupIntent with its PaymentMethod expanded (the card's brand and last four digits)."""
    return _plain(_call(get_client().v1.setup_intents.retrieve, setup_intent_id,
                        params={"expand": ["payment_method"]}))


def set_default_payment_method(*, customer_id: str, payment_method_id: str) -> None:
    """The Customer's `invoice_settings.default_payment_method`: what its invoices charge."""
    _call(get_client().v1.customers.update, customer_id,
          params={"invoice_settings": {"default_payment_method": payment_method_id}})


def create_payment_intent(*, params: StripeObject, idempotency_key: str) -> StripeObject:
    """POST /v1/payment_intents. With `confirm` and `off_session` a decline raises CardDeclined."""
    return _plain(_call(get_client().v1.payment_intents.create, params=params,
                        options={"idempotency_key": idempotency_key}))


def create_invoice(*, params: StripeObject, idempotency_key: str) -> StripeObject:
    return _plain(_call(get_client().v1.invoices.create, params=params, options={"idempotency_key": idempotency_key}))


def create_invoice_item(*, params: StripeObject, idempotency_key: str) -> StripeObject:
    return _plain(_call(get_client().v1.invoice_items.create, params=params,
                        options={"idempotency_key": idempotency_key}))


def finalize_invoice(invoice_id: str, *, idempotency_key: str) -> StripeObject:
    return _plain(_call(get_client().v1.invoices.finalize_invoice, invoice_id, params={"auto_advance": False},
                        options={"idempotency_key": idempotency_key}))


def attach_invoice_payment(invoice_id: str, *, payment_intent_id: str, idempotency_key: str) -> StripeObject:
    """POST /v1/invoices/:id/attach_payment: a succeeded PaymentIntent pays the invoice at once."""
    return _plain(_call(get_client().v1.invoices.attach_payment, invoice_id,
                        params={"payment_intent": payment_intent_id}, options={"idempotency_key": idempotency_key}))


def mark_invoice_paid_out_of_band(invoice_id: str, *, idempotency_key: str) -> StripeObject:
    """POST /v1/invoices/:id/pay with `paid_out_of_band=true`: the invoice is marked paid and
    nothing is charged (docs.stripe.com/api/invoices/pay: "Boolean representing whether an
    invoice is paid outside of Stripe. This will result in no charge being made.")."""
    return _plain(_call(get_client().v1.invoices.pay, invoice_id, params={"paid_out_of_band": True},
                        options={"idempotency_key": idempotency_key}))


def void_invoice(invoice_id: str, *, idempotency_key: str) -> StripeObject:
    """POST /v1/invoices/:id/void: a finalized invoice that must not be paid stays, marked void
    (docs.stripe.com/api/invoices/void)."""
    return _plain(_call(get_client().v1.invoices.void_invoice, invoice_id, options={"idempotency_key": idempotency_key}))


def list_invoice_payments(invoice_id: str) -> list[StripeObject]:
    """The invoice's InvoicePayments (API 2026-10-28: an invoice names its PaymentIntents here)."""
    page = _call(get_client().v1.invoice_payments.list, params={"invoice": invoice_id, "limit": 100})
    return [_plain(payment) for payment in page.data]


MAX_ID_LENGTH = 255  # StripeEvent.event_id / object_id; Stripe's own ids are far shorter


def _event_shape_error(event: Any) -> str | None:
    """Why a verified body is not an event we can store, or None. The signature proves who sent
    it, not that it is well formed: a malformed body is refused (400), never half-stored."""
    if not isinstance(event, dict):
        return "the body is not a JSON object"
    if event.get("object") != "event":
        return "Not a Stripe event (object is not 'event')"
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id or len(event_id) > MAX_ID_LENGTH:
        return f"id must be a non-empty string of at most {MAX_ID_LENGTH} characters"
    if not isinstance(event.get("type", ""), str):
        return "type must be a string"
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        return "data.object must be a JSON object"
    object_id = obj.get("id", "")
    if not isinstance(object_id, str) or len(object_id) > MAX_ID_LENGTH:
        return f"data.object.id must be a string of at most {MAX_ID_LENGTH} characters"
    return None


@sensitive_variables("secret")
def construct_event(*, payload: bytes, sig_header: str | None) -> StripeObject:
    """Verify a webhook's `Stripe-Signature` (v1 HMAC, 300 s tolerance) and return the event.

    stripe-python checks only that the timestamp is not too old; a timestamp from the future is
    refused here too, so a captured request cannot be replayed later by pre-dating it. The body is
    parsed here, not by `stripe.Webhook.construct_event` (which fails with a TypeError on a
    signed JSON list or string), and its shape checked before anything is stored.
    """
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise InvalidWebhook("STRIPE_WEBHOOK_SECRET is not configured")
    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(text, sig_header or "", secret, tolerance=SIGNATURE_TOLERANCE_SECONDS)
    except (ValueError, stripe.SignatureVerificationError) as exc:
        raise InvalidWebhook(str(exc)) from exc
    timestamps = [p.split("=", 1)[1] for p in (sig_header or "").split(",") if p.startswith("t=")]
    if not timestamps or int(timestamps[0]) > time.time() + SIGNATURE_TOLERANCE_SECONDS:
        raise InvalidWebhook("Timestamp outside the tolerance zone (in the future)")
    try:
        event = json.loads(text)
    except ValueError as exc:
        raise InvalidWebhook(f"the body is not JSON: {exc}") from exc
    problem = _event_shape_error(event)
    if problem:
        raise InvalidWebhook(problem)
    plain: StripeObject = event
    return plain


def signature_header_for_tests(payload: str, secret: str, timestamp: int | None = None) -> str:
    """A valid `Stripe-Signature` for `payload` (stripe-python's own generator)."""
    header: str = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)
    return header
