"""Celery tasks of billing: they take primary keys, re-fetch, and call a service.

This module sits above `billing.services` (it imports them; they never import it): a service that
enqueues processing takes the task's `.delay` from its caller.
"""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from billing.exceptions import StripeUnavailable
from billing.models import StripeEvent
from billing.services import checkout, promos, stripe_events, topups
from billing.services.crossings import enqueue_with as _enqueue_top_ups_with
from billing.services.topups import run_auto_top_up

logger = logging.getLogger(__name__)

# One retry policy (STYLE.md rule 18): Celery's own, for named transient errors only. Retry n
# (0…5) waits a delay drawn uniformly from [0, min(15 s · 2^n, 30 min)] (full jitter), so at most
# 15 s … 8 min. Eager Celery (tests) never waits: with CELERY_TASK_EAGER_PROPAGATES the retry
# surfaces as celery.exceptions.Retry from apply()/delay() (tests/billing/test_tasks.py).
TRANSIENT_ERRORS = (StripeUnavailable,)
MAX_RETRIES = 6
RETRY_BACKOFF_SECONDS = 15
RETRY_BACKOFF_MAX_SECONDS = 1800


# acks_late: processing claims the row by a conditional UPDATE and every ledger entry it writes has
# a unique idempotency key, so a re-delivered run finds the event done (or re-claims a failed one)
# and writes nothing twice. Stripe calls time out after STRIPE_TIMEOUT_SECONDS, far below the limits.
@shared_task(
    name="billing.process_stripe_event",
    acks_late=True,
    soft_time_limit=60,
    time_limit=90,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=RETRY_BACKOFF_SECONDS,
    retry_backoff_max=RETRY_BACKOFF_MAX_SECONDS,
    retry_jitter=True,
    max_retries=MAX_RETRIES,
)
def process_stripe_event_task(event_pk: int) -> None:
    """Process one stored Stripe event. Transient Stripe failures are retried (the policy above);
    when they run out, or on any other failure, the event stays failed (status, last_error) for
    Stripe's redelivery, the sweep or staff (admin) to process again, until its attempts reach
    STRIPE_EVENT_MAX_ATTEMPTS: then it is dead, and only staff retry it (docs/operations.md)."""
    try:
        stripe_events.process_stripe_event(event_pk=event_pk)
    except TRANSIENT_ERRORS:
        if stripe_events.is_dead(event_pk=event_pk):
            logger.error("stripe event %s is dead; kept for a retry from the admin", event_pk)
            return
        raise  # to autoretry_for
    except Exception:
        logger.exception("stripe event %s failed; kept for a retry from the admin", event_pk)


# Not acks_late: a run lost with its worker before the claim leaves the crossing's purchase pending,
# and the next settlement below the threshold enqueues the crossing again (the purchase is charged
# then, with the same idempotency key); lost after the claim, it is left processing and
# `sweep_stuck_top_ups` re-drives it. A retry after a network failure charges with that key too.
@shared_task(
    name="billing.auto_top_up",
    soft_time_limit=60,
    time_limit=90,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=RETRY_BACKOFF_SECONDS,
    retry_backoff_max=RETRY_BACKOFF_MAX_SECONDS,
    retry_jitter=True,
    max_retries=MAX_RETRIES,
)
def auto_top_up(wallet_id: int, crossing: int) -> str | None:
    """Buy the wallet's auto top-up pack for this crossing of its threshold, once
    (billing.services.topups.run_auto_top_up). Returns the purchase's id, or None: nothing to buy."""
    purchase = run_auto_top_up(wallet_id=wallet_id, crossing=crossing)
    return str(purchase.public_id) if purchase is not None else None


_enqueue_top_ups_with(auto_top_up.delay)  # the trigger, below the services, enqueues through it


# Periodic (beat) tasks are not acks_late: a run lost with its worker is replaced by the next one.
@shared_task(name="billing.sweep_stripe_events", soft_time_limit=120, time_limit=150)
def sweep_stripe_events(stuck_after_seconds: int = 900) -> int:
    """Re-enqueue events that no task finished (lost from the broker, or a worker died) and failed
    ones whose retries ran out, until they succeed or their attempts make them dead."""
    cutoff = timezone.now() - timedelta(seconds=stuck_after_seconds)
    stuck = StripeEvent.objects.filter(
        status__in=[StripeEvent.Status.RECEIVED, StripeEvent.Status.PROCESSING, StripeEvent.Status.FAILED],
        updated_at__lt=cutoff,
    )
    count = 0
    for event in stuck:
        if event.status in (StripeEvent.Status.PROCESSING, StripeEvent.Status.FAILED):
            stripe_events.retry_stripe_event(event=event, enqueue=process_stripe_event_task.delay)
        else:
            process_stripe_event_task.delay(event.pk)
        count += 1
    return count


@shared_task(name="billing.reconcile_purchases", soft_time_limit=240, time_limit=300)
def reconcile_purchases(older_than_seconds: int = 3600) -> int:
    """Bring purchases that are still pending an hour later up to date from Stripe (a webhook
    may never have come)."""
    done = 0
    for session_id in checkout.stale_purchases_to_reconcile(older_than_seconds=older_than_seconds):
        try:
            checkout.fulfil_checkout(session_id=session_id)
            done += 1
        except StripeUnavailable:
            logger.warning("could not reconcile %s now; next sweep will", session_id)
    return done


@shared_task(name="billing.expire_stale_checkouts")
def expire_stale_checkouts() -> int:
    """Purchases still waiting for payment after their checkout session's `expires_at` (an
    abandoned checkout whose `checkout.session.expired` event was lost): each is brought up to date
    from Stripe, and so ends Expired (or Paid, if it was paid after all). Returns how many."""
    done = 0
    for purchase_id in checkout.stale_checkouts():
        try:
            checkout.expire_stale_checkout(purchase_id=purchase_id)
            done += 1
        except StripeUnavailable:
            logger.warning("could not expire stale purchase %s now; the next sweep will", purchase_id)
    return done


@shared_task(name="billing.sweep_stuck_top_ups", soft_time_limit=100, time_limit=115)
def sweep_stuck_top_ups() -> int:
    """Finish auto top-ups left processing for longer than AUTO_TOP_UP_STUCK_SECONDS: their worker
    died between the claim and Stripe's answer, and nothing else would ever charge, credit or fail
    them (billing.services.topups.redrive_top_up: the same idempotency keys, so a payment Stripe
    already made is replayed, not made again). A run killed half-way leaves the one it was on
    processing, re-claimed, for a later run. Returns how many were re-driven."""
    done = 0
    stuck_after = settings.AUTO_TOP_UP_STUCK_SECONDS
    for purchase_id in topups.stuck_top_ups(stuck_after_seconds=stuck_after):
        try:
            if topups.redrive_top_up(purchase_id=purchase_id, stuck_after_seconds=stuck_after) is not None:
                done += 1
        except StripeUnavailable:
            logger.warning("could not re-drive top-up %s now; the next sweep will", purchase_id)
    return done


@shared_task(name="billing.expire_credit_grants", soft_time_limit=240, time_limit=300)
def expire_credit_grants() -> int:
    """Expire what is left of every credit grant past its expiry: one EXPIRY ledger entry per grant
    (`expiry:grant:<id>`, so a rerun or a second worker writes nothing twice), keeping what active
    holds need (billing.services.promos.expire_grant). Returns the entries written."""
    return promos.expire_due_grants()
