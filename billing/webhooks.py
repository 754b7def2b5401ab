"""Stripe webhook events: which service handles which type.

The view (billing/views.py) verifies and stores; a Celery task calls `dispatch` for each stored
event. Handlers re-read Stripe's current state where order matters (checkout sessions are always
retrieved), so events arriving twice or out of order reach the same end state.
"""

from __future__ import annotations

from billing import services

ASYNC_FAILURE_REASON = "The bank payment failed; nothing was charged."


def _checkout(obj: dict) -> str:
    purchase = services.fulfil_checkout(session_id=obj["id"])
    return f"purchase {purchase.public_id} {purchase.status}" if purchase else "not our checkout session"


def _checkout_failed(obj: dict) -> str:
    purchase = services.fail_checkout(session_id=obj["id"], reason=ASYNC_FAILURE_REASON)
    return f"purchase {purchase.public_id} {purchase.status}" if purchase else "not our checkout session"


def _charge_refunded(obj: dict) -> str:
    rows = services.apply_charge_refunds(charge=obj)
    return f"{len(rows)} refund(s) applied" if rows else "no purchase matched"


def _refund(obj: dict) -> str:
    row = services.apply_refund(refund=obj)
    return f"refund {row.stripe_refund_id} {row.status}, {row.credits} credits" if row else "no purchase matched"


def _dispute(obj: dict) -> str:
    row = services.apply_dispute(dispute=obj)
    return f"dispute {row.stripe_dispute_id} {row.status}" if row else "no purchase matched"


HANDLERS = {
    "checkout.session.completed": _checkout,
    "checkout.session.async_payment_succeeded": _checkout,
    "checkout.session.expired": _checkout,
    "checkout.session.async_payment_failed": _checkout_failed,
    "charge.refunded": _charge_refunded,
    "refund.created": _refund,
    "refund.updated": _refund,
    "refund.failed": _refund,
    "charge.refund.updated": _refund,
    "charge.dispute.created": _dispute,
    "charge.dispute.updated": _dispute,
    "charge.dispute.closed": _dispute,
    "charge.dispute.funds_withdrawn": _dispute,
    "charge.dispute.funds_reinstated": _dispute,
}

HANDLED_TYPES = sorted(HANDLERS)


def dispatch(event: dict) -> tuple[str, str]:
    """Run the handler for one event; returns (StripeEvent status, note)."""
    handler = HANDLERS.get(event.get("type", ""))
    if handler is None:
        return "ignored", "event type not handled"
    return "processed", handler(event["data"]["object"])
