"""Stripe webhook events: receive (store, unique by event id), process (claim, dispatch to the
handler of its type, record the outcome), retry.

Handlers re-read Stripe's current state where order matters (checkout sessions are always
retrieved), so events arriving twice or out of order reach the same end state.

Processing runs in a Celery task (`billing.tasks.process_stripe_event_task`). The task module
imports this one, never the reverse: the functions that enqueue take `enqueue`, the task's
`.delay`, from their caller and call it with the event's primary key after commit.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from billing import locks, stripe_client
from billing.models import StripeEvent
from billing.services import checkout, refunds, topups
from billing.stripe_client import StripeObject
from realtime_saas.logging import log_context

if TYPE_CHECKING:
    from accounts.models import User

logger = logging.getLogger(__name__)

Enqueue = Callable[[int], object]
"""Called with a StripeEvent's primary key after commit: `process_stripe_event_task.delay`."""

ASYNC_FAILURE_REASON = "The bank payment failed; nothing was charged."


# --- handlers, by event type -------------------------------------------------------------------


def _checkout(obj: StripeObject) -> str:
    purchase = checkout.fulfil_checkout(session_id=obj["id"])
    return f"purchase {purchase.public_id} {purchase.status}" if purchase else "not our checkout session"


def _checkout_failed(obj: StripeObject) -> str:
    purchase = checkout.fail_checkout(session_id=obj["id"], reason=ASYNC_FAILURE_REASON)
    return f"purchase {purchase.public_id} {purchase.status}" if purchase else "not our checkout session"


def _charge_refunded(obj: StripeObject) -> str:
    rows = refunds.apply_charge_refunds(charge=obj)
    return f"{len(rows)} refund(s) applied" if rows else "no purchase matched"


def _refund(obj: StripeObject) -> str:
    row = refunds.apply_refund(refund=obj)
    return f"refund {row.stripe_refund_id} {row.status}, {row.credits} credits" if row else "no purchase matched"


def _dispute(obj: StripeObject) -> str:
    row = refunds.apply_dispute(dispute=obj)
    return f"dispute {row.stripe_dispute_id} {row.status}" if row else "no purchase matched"


def _invoice(obj: StripeObject) -> str:
    # Fills in an invoice's links for whichever purchase stored its id (a checkout's or a top-up's).
    # `invoice.finalized` is enough: the links exist from finalization on, and every invoice
    # Stripe makes for a checkout or a top-up is finalized (then paid) once.
    purchase = checkout.record_invoice(invoice=obj)
    return f"invoice of purchase {purchase.public_id}" if purchase else "not the invoice of a purchase"


def _checkout_completed(obj: StripeObject) -> str:
    if obj.get("mode") == "setup":  # a card saved for auto top-up (billing.services.topups)
        wallet = topups.save_card_from_setup(session_id=obj["id"])
        return f"card saved for wallet {wallet.pk}" if wallet else "not a setup session of ours"
    return _checkout(obj)


def _top_up_intent(obj: StripeObject) -> str:
    return topups.payment_intent_event(obj)


def _invoice_payment_succeeded(obj: StripeObject) -> str:
    # A top-up's invoice paid on its hosted page after a decline credits the top-up. Stripe sends
    # `invoice.paid` with it ("invoice.payment_succeeded: whenever an invoice payment attempt
    # succeeds"); one of the two is enough, and this one is about a payment.
    return topups.invoice_paid(obj)


HANDLERS: dict[str, Callable[[StripeObject], str]] = {
    "checkout.session.completed": _checkout_completed,
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
    "invoice.finalized": _invoice,
    "invoice.payment_succeeded": _invoice_payment_succeeded,
    "payment_intent.succeeded": _top_up_intent,
    "payment_intent.payment_failed": _top_up_intent,
}

HANDLED_TYPES = sorted(HANDLERS)


def dispatch(event: StripeObject) -> tuple[str, str]:
    """Run the handler for one event; returns (StripeEvent status, note)."""
    handler = HANDLERS.get(event.get("type", ""))
    if handler is None:
        return "ignored", "event type not handled"
    return "processed", handler(event["data"]["object"])


# --- receive, process, retry -------------------------------------------------------------------


def receive_stripe_event(*, event: StripeObject, enqueue: Enqueue) -> tuple[StripeEvent, bool]:
    """Store a verified webhook event (unique by its id) and enqueue its processing on commit.

    Returns (row, created). A redelivered event that is not processed yet (or failed) is enqueued
    again: processing claims the row, so two deliveries never process it twice.
    """
    obj = ((event.get("data") or {}).get("object")) or {}
    with transaction.atomic(durable=True):
        try:
            with transaction.atomic():
                row = StripeEvent.objects.create(
                    event_id=event["id"], type=event.get("type", ""), livemode=bool(event.get("livemode")),
                    object_id=str(obj.get("id", ""))[:255], payload=event,
                )
            created = True
        except IntegrityError:
            row = locks.event_for_update(event_pk=StripeEvent.objects.get(event_id=event["id"]).pk)
            row.deliveries = F("deliveries") + 1
            row.save(update_fields=["deliveries", "updated_at"])
            row.refresh_from_db()
            created = False
        if row.status in (StripeEvent.Status.RECEIVED, StripeEvent.Status.FAILED):
            pk = row.pk
            transaction.on_commit(lambda: enqueue(pk))
    return row, created


def process_stripe_event(*, event_pk: int) -> StripeEvent | None:
    """Process one stored event: claim it, run its handler, record the outcome.

    Returns None when another worker holds it or it is already done (or dead). A handler's
    exception is recorded on the row (status failed, last_error) and re-raised for the task to
    retry; the attempt that reaches STRIPE_EVENT_MAX_ATTEMPTS leaves it dead instead (the dead
    letter: only staff retry it). An event whose attempts ran out without recording a failure (its
    worker was killed each time, e.g. by the task's time limit) is marked dead at its next claim.
    """
    max_attempts = settings.STRIPE_EVENT_MAX_ATTEMPTS
    claimable = [StripeEvent.Status.RECEIVED, StripeEvent.Status.FAILED]
    claimed = StripeEvent.objects.filter(pk=event_pk, status__in=claimable, attempts__lt=max_attempts).update(
        status=StripeEvent.Status.PROCESSING, attempts=F("attempts") + 1, updated_at=timezone.now()
    )
    if not claimed:
        if StripeEvent.objects.filter(pk=event_pk, status__in=claimable, attempts__gte=max_attempts).update(
            status=StripeEvent.Status.DEAD, dead_at=timezone.now(), updated_at=timezone.now()
        ):
            logger.error("stripe event %s is dead: %d attempts", event_pk, max_attempts)
        return None
    row = StripeEvent.objects.get(pk=event_pk)
    with log_context(stripe_event=row.event_id):  # on every log line of the handler (LOG_FORMAT=json)
        return _run_claimed(row, max_attempts=max_attempts)


def _run_claimed(row: StripeEvent, *, max_attempts: int) -> StripeEvent:
    status: str
    try:
        if row.livemode != stripe_client.livemode():
            status, note = StripeEvent.Status.IGNORED, "livemode does not match the configured key"
        else:
            status, note = dispatch(row.payload)
    except Exception as exc:
        dead = row.attempts >= max_attempts
        StripeEvent.objects.filter(pk=row.pk).update(
            status=StripeEvent.Status.DEAD if dead else StripeEvent.Status.FAILED,
            dead_at=timezone.now() if dead else None,
            last_error="".join(traceback.format_exception_only(exc)).strip()[:4000],
            updated_at=timezone.now(),
        )
        if dead:
            logger.error("stripe event %s (%s) is dead after %d attempts", row.event_id, row.type, row.attempts)
        raise
    StripeEvent.objects.filter(pk=row.pk).update(
        status=status, note=note[:500], last_error="", processed_at=timezone.now(), updated_at=timezone.now()
    )
    row.refresh_from_db()
    return row


def is_dead(*, event_pk: int) -> bool:
    """Whether the event's attempts ran out (a retry of the task would only find it dead)."""
    return StripeEvent.objects.filter(pk=event_pk, status=StripeEvent.Status.DEAD).exists()


def retry_stripe_event(*, event: StripeEvent, enqueue: Enqueue, actor: User | None = None) -> bool:
    """Process a failed (or stuck) event again: staff (`actor`) or the sweep. Returns whether it was
    enqueued. Staff may also revive a dead event: its attempts start again from zero."""
    with transaction.atomic(durable=True):
        retryable = [StripeEvent.Status.FAILED, StripeEvent.Status.PROCESSING]
        note = f"retry requested by {actor}"[:500] if actor else "retry"
        updated = StripeEvent.objects.filter(pk=event.pk, status__in=retryable).update(
            status=StripeEvent.Status.FAILED, note=note
        )
        if not updated and actor is not None:
            updated = StripeEvent.objects.filter(pk=event.pk, status=StripeEvent.Status.DEAD).update(
                status=StripeEvent.Status.FAILED, attempts=0, dead_at=None, note=note
            )
        if updated:
            pk = event.pk
            transaction.on_commit(lambda: enqueue(pk))
    if updated:
        logger.info("stripe event %s re-enqueued by %s", event.event_id, actor)
    return bool(updated)
