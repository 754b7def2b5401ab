"""Celery tasks of billing: they take primary keys, re-fetch, and call a service.

This module sits above `billing.services` (it imports them; they never import it): a service that
enqueues processing takes the task's `.delay` from its caller.
"""

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from billing.exceptions import StripeUnavailable
from billing.models import StripeEvent
from billing.services import checkout, stripe_events

logger = logging.getLogger(__name__)

MAX_RETRIES = 6


def backoff_seconds(retries: int) -> int:
    return min(15 * 2**retries, 1800)


@shared_task(bind=True, name="billing.process_stripe_event", max_retries=MAX_RETRIES, acks_late=True)
def process_stripe_event_task(self, event_pk: int) -> None:
    """Process one stored Stripe event. Transient Stripe failures are retried with backoff; any
    other failure stays on the event (status failed, last_error) for staff to retry from admin."""
    try:
        stripe_events.process_stripe_event(event_pk=event_pk)
    except StripeUnavailable as exc:
        if self.request.is_eager or self.request.retries >= MAX_RETRIES:
            # Eager (tests, embedded mode): Stripe's own redelivery or the sweep tries again.
            logger.warning("stripe event %s failed transiently: %s", event_pk, exc)
            return
        raise self.retry(exc=exc, countdown=backoff_seconds(self.request.retries)) from exc
    except Exception:
        logger.exception("stripe event %s failed; kept for a retry from the admin", event_pk)


@shared_task(name="billing.sweep_stripe_events")
def sweep_stripe_events(stuck_after_seconds: int = 900) -> int:
    """Re-enqueue events that no task finished: lost from the broker, or a worker died."""
    cutoff = timezone.now() - timedelta(seconds=stuck_after_seconds)
    stuck = StripeEvent.objects.filter(
        status__in=[StripeEvent.Status.RECEIVED, StripeEvent.Status.PROCESSING], updated_at__lt=cutoff
    )
    count = 0
    for event in stuck:
        if event.status == StripeEvent.Status.PROCESSING:
            stripe_events.retry_stripe_event(event=event, enqueue=process_stripe_event_task.delay)
        else:
            process_stripe_event_task.delay(event.pk)
        count += 1
    return count


@shared_task(name="billing.reconcile_purchases")
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
