"""billing's one retry policy: Celery retries named transient errors (autoretry_for, exponential
backoff with full jitter, a cap); any other failure is not retried.

Eager Celery with CELERY_TASK_EAGER_PROPAGATES (the test settings) reports a retry by raising
`celery.exceptions.Retry` from `apply()` (and `delay()`), carrying the countdown a worker would
wait (`when`) and the retry's signature (`sig`, with `retries` + 1); `apply(retries=n)` runs the
attempt a worker would run after n retries.
"""

from types import SimpleNamespace

import pytest
from celery.exceptions import Retry

from billing import tasks
from billing.exceptions import StripeUnavailable
from billing.models import LedgerEntry, StripeEvent, Wallet
from billing.services import stripe_events
from tests.billing.conftest import start_purchase

pytestmark = pytest.mark.django_db


@pytest.fixture
def stored_completed_event(alice, pack, stripe_settings) -> StripeEvent:
    """A paid purchase whose checkout.session.completed event is stored and not yet processed."""
    purchase = start_purchase(alice)
    stripe_settings.pay(purchase.checkout_session_id)
    event = stripe_settings.events(type="checkout.session.completed")[-1]
    return StripeEvent.objects.create(event_id=event["id"], type=event["type"], payload=event)


def test_a_transient_stripe_error_is_retried_and_the_retry_succeeds(stored_completed_event, stripe_settings, alice):
    stripe_settings.fail_next(count=3, status=503, path="/v1/checkout/sessions")  # 1 try + 2 network retries
    with pytest.raises(Retry) as retry:
        tasks.process_stripe_event_task.apply(args=[stored_completed_event.pk])
    assert isinstance(retry.value.exc, StripeUnavailable)
    assert 0 <= retry.value.when <= tasks.RETRY_BACKOFF_SECONDS
    assert retry.value.sig.options["retries"] == 1
    row = StripeEvent.objects.get(pk=stored_completed_event.pk)
    assert (row.status, row.attempts, row.processed_at) == ("failed", 1, None)
    assert not LedgerEntry.objects.exists()

    retry.value.sig.apply()  # what the worker runs when the countdown is over
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("processed", 2)
    assert Wallet.objects.get(user=alice).balance == 1000


def test_a_permanent_stripe_error_is_not_retried(stored_completed_event, stripe_settings, caplog):
    stripe_settings.fail_next(count=1, status=400, path="/v1/checkout/sessions")  # Stripe refuses: no retry helps
    result = tasks.process_stripe_event_task.apply(args=[stored_completed_event.pk])
    assert result.state == "SUCCESS"  # no Retry raised: the event keeps the failure for staff
    row = StripeEvent.objects.get(pk=stored_completed_event.pk)
    assert (row.status, row.attempts) == ("failed", 1)
    assert "StripeFailure" in row.last_error
    assert "kept for a retry from the admin" in caplog.text
    assert not LedgerEntry.objects.exists()


def test_retries_back_off_exponentially_up_to_the_cap_then_stop(monkeypatch):
    attempts = []

    def unavailable(*, event_pk):
        attempts.append(tasks.process_stripe_event_task.request.retries)
        raise StripeUnavailable("Stripe is unreachable or busy")

    monkeypatch.setattr(stripe_events, "process_stripe_event", unavailable)
    # Full jitter draws from [0, backoff]; draw the top of the range to see the backoff itself.
    monkeypatch.setattr("celery.utils.time.random", SimpleNamespace(randrange=lambda stop: stop - 1))
    countdowns = []
    for retries in range(tasks.MAX_RETRIES):
        with pytest.raises(Retry) as retry:
            tasks.process_stripe_event_task.apply(args=[7], retries=retries)
        countdowns.append(retry.value.when)
    assert countdowns == [15, 30, 60, 120, 240, 480]
    with pytest.raises(StripeUnavailable):  # the last attempt fails the task; the event stays failed
        tasks.process_stripe_event_task.apply(args=[7], retries=tasks.MAX_RETRIES)
    assert attempts == [0, 1, 2, 3, 4, 5, 6]


def test_an_unexpected_error_is_not_retried_either(monkeypatch, caplog):
    attempts = []

    def broken(*, event_pk):
        attempts.append(event_pk)
        raise KeyError("data")

    monkeypatch.setattr(stripe_events, "process_stripe_event", broken)
    assert tasks.process_stripe_event_task.apply(args=[7]).state == "SUCCESS"
    assert attempts == [7]
    assert "stripe event 7 failed; kept for a retry from the admin" in caplog.text
