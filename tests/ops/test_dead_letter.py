"""The dead letter for Stripe webhooks (issue 13, item 4): an event whose processing keeps failing
is retried until STRIPE_EVENT_MAX_ATTEMPTS, then marked dead; nothing retries it by itself any
more, the admin lists it under status "Dead" and its "Retry processing" action revives it."""

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse

from billing import tasks
from billing.models import LedgerEntry, StripeEvent, Wallet
from tests.billing.conftest import start_purchase

pytestmark = pytest.mark.django_db


@pytest.fixture
def stored_event(alice, pack, stripe_settings, settings) -> StripeEvent:
    """A paid purchase's stored checkout.session.completed event; 3 attempts make it dead."""
    settings.STRIPE_EVENT_MAX_ATTEMPTS = 3
    purchase = start_purchase(alice)
    stripe_settings.pay(purchase.checkout_session_id)
    event = stripe_settings.events(type="checkout.session.completed")[-1]
    return StripeEvent.objects.create(event_id=event["id"], type=event["type"], payload=event)


@pytest.fixture
def failing_event(stored_event, stripe_settings) -> StripeEvent:
    """The same, and Stripe refuses to confirm the session (400) the next 3 times."""
    stripe_settings.fail_next(count=3, status=400, path="/v1/checkout/sessions")
    return stored_event


@pytest.fixture
def sweep_later(django_capture_on_commit_callbacks):
    """Run the sweep `minutes` from now, and the processing it enqueues (on commit)."""

    def sweep(minutes: int) -> int:
        with time_machine.travel(timedelta(minutes=minutes)), django_capture_on_commit_callbacks(execute=True):
            return tasks.sweep_stripe_events.apply().get()

    return sweep


def test_a_failed_event_is_retried_by_the_sweep_then_dead_after_its_attempts(failing_event, sweep_later):
    tasks.process_stripe_event_task.apply(args=[failing_event.pk])
    failing_event.refresh_from_db()
    assert (failing_event.status, failing_event.attempts, failing_event.dead_at) == ("failed", 1, None)

    assert sweep_later(20) == 1  # the sweep retries a failure (attempt 2)
    failing_event.refresh_from_db()
    assert (failing_event.status, failing_event.attempts) == ("failed", 2)

    assert sweep_later(40) == 1  # attempt 3 = STRIPE_EVENT_MAX_ATTEMPTS: dead
    failing_event.refresh_from_db()
    assert (failing_event.status, failing_event.attempts) == ("dead", 3)
    assert failing_event.dead_at is not None
    assert "StripeFailure" in failing_event.last_error

    assert sweep_later(80) == 0  # nothing retries a dead event by itself
    tasks.process_stripe_event_task.apply(args=[failing_event.pk])  # a stray re-delivery
    failing_event.refresh_from_db()
    assert (failing_event.status, failing_event.attempts) == ("dead", 3)
    assert not LedgerEntry.objects.exists()


def test_an_event_whose_worker_died_each_time_is_dead_at_its_next_claim(failing_event):
    # Killed by its time limit three times: claimed (attempts counted) but no failure recorded.
    StripeEvent.objects.filter(pk=failing_event.pk).update(status="failed", attempts=3)
    tasks.process_stripe_event_task.apply(args=[failing_event.pk])
    failing_event.refresh_from_db()
    assert (failing_event.status, failing_event.attempts) == ("dead", 3)
    assert failing_event.dead_at is not None


def test_staff_find_dead_events_in_the_admin_and_retry_them(stored_event, staff_client, alice,
                                                            django_capture_on_commit_callbacks):
    failing_event = stored_event
    StripeEvent.objects.filter(pk=failing_event.pk).update(status="dead", attempts=3, last_error="StripeFailure: x")
    other = StripeEvent.objects.create(event_id="evt_other", type="charge.refunded", payload={}, status="processed")
    changelist = reverse("admin:billing_stripeevent_changelist")

    page = staff_client.get(changelist, {"status__exact": "dead"})
    assert page.status_code == 200
    assert failing_event.event_id in page.content.decode()
    assert other.event_id not in page.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(changelist, {"action": "retry_processing", "_selected_action": [failing_event.pk]},
                                     follow=True)
    assert "Re-enqueued 1 event(s); 0 were not failed, dead or stuck." in response.content.decode()
    failing_event.refresh_from_db()
    assert failing_event.status == "processed"
    assert failing_event.attempts == 1  # counted again from zero
    assert failing_event.dead_at is None
    assert Wallet.objects.get(user=alice).balance == 1000
