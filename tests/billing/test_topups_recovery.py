"""Auto top-ups a dead worker left processing (issue 15, item 1): the task claims the purchase
(pending → processing) and then asks Stripe; a worker killed between the two leaves it processing
with nothing to retry it. The beat sweep `billing.sweep_stuck_top_ups` re-drives those older than
AUTO_TOP_UP_STUCK_SECONDS with the same idempotency key, so a payment Stripe already made is
replayed, never made twice. Against fakes/stripe as a real server."""

from datetime import timedelta

import pytest
from django.utils import timezone

from billing import tasks
from billing.models import CreditPack, LedgerEntry, Purchase, Wallet
from billing.services import topups
from tests.billing.conftest import post_event
from tests.billing.test_topups import payment_intents, save_card, spend
from tests.factories import fund, wallet_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def topup_pack(pack):
    CreditPack.objects.exclude(pk=pack.pk).update(active=False)
    return pack


def claimed_top_up(user, client, fake, pack, card="pm_card_visa") -> tuple[Wallet, Purchase]:
    """A crossing's top-up made and claimed as the task does, then its worker killed before Stripe
    answered: processing, no PaymentIntent stored."""
    save_card(user, fake, client, card=card)
    fund(user, 600)
    spend(user, 200, "a")  # 400 available, auto top-up not yet on: nothing enqueued
    Wallet.objects.filter(user=user).update(auto_topup_enabled=True, auto_topup_threshold=500, auto_topup_pack=pack)
    wallet = wallet_of(user)
    purchase = topups._open_top_up(wallet_id=wallet.pk, crossing=0)
    assert purchase is not None
    assert Purchase.objects.filter(pk=purchase.pk, status=Purchase.Status.PENDING, payment_intent_id__isnull=True
                                   ).update(status=Purchase.Status.PROCESSING, updated_at=timezone.now()) == 1
    return wallet, Purchase.objects.select_related("pack").get(pk=purchase.pk)


def age(purchase: Purchase, seconds: float) -> None:
    Purchase.objects.filter(pk=purchase.pk).update(updated_at=timezone.now() - timedelta(seconds=seconds))


def test_a_top_up_left_processing_before_stripe_was_asked_is_charged_by_the_sweep(
    alice, client, stripe_settings, topup_pack, settings
):
    wallet, purchase = claimed_top_up(alice, client, stripe_settings, topup_pack)
    # Within the bound a worker may still be charging it: the sweep leaves it alone.
    assert tasks.sweep_stuck_top_ups() == 0
    assert payment_intents(stripe_settings) == []
    age(purchase, settings.AUTO_TOP_UP_STUCK_SECONDS + 1)

    assert tasks.sweep_stuck_top_ups() == 1

    [intent] = payment_intents(stripe_settings)
    assert (intent["amount"], intent["status"], intent["metadata"]["purchase_id"]) == (
        1000, "succeeded", str(purchase.public_id))
    purchase.refresh_from_db()
    assert (purchase.status, purchase.payment_intent_id) == (Purchase.Status.PAID, intent["id"])
    assert stripe_settings.get(purchase.invoice_id)["status"] == "paid"
    assert wallet_of(alice).balance == 1400
    assert LedgerEntry.objects.filter(wallet=wallet, reference=f"purchase:{purchase.public_id}").count() == 1
    assert tasks.sweep_stuck_top_ups() == 0  # paid: nothing left to re-drive


def test_a_payment_made_whose_answer_was_lost_is_replayed_not_made_twice(alice, client, stripe_settings, topup_pack,
                                                                        settings):
    wallet, purchase = claimed_top_up(alice, client, stripe_settings, topup_pack)
    # The killed worker's request reached Stripe: the card was charged, the answer never came back.
    topups._charge(purchase, wallet)
    [made] = payment_intents(stripe_settings)
    age(purchase, settings.AUTO_TOP_UP_STUCK_SECONDS + 1)

    assert tasks.sweep_stuck_top_ups() == 1

    [intent] = payment_intents(stripe_settings)  # Stripe replayed its first answer: one payment
    assert intent["id"] == made["id"]
    purchase.refresh_from_db()
    assert (purchase.status, purchase.payment_intent_id) == (Purchase.Status.PAID, made["id"])
    # Stripe's own event of that payment comes too, twice: credited once all the same.
    [succeeded] = stripe_settings.events("payment_intent.succeeded")
    assert post_event(client, succeeded).status_code == 200
    assert post_event(client, succeeded).status_code == 200
    assert wallet_of(alice).balance == 1400
    assert LedgerEntry.objects.filter(wallet=wallet, reference=f"purchase:{purchase.public_id}").count() == 1
    assert stripe_settings.get(purchase.invoice_id)["amount_paid"] == 1000


def test_a_declined_top_up_found_stuck_fails_as_the_task_would(alice, client, stripe_settings, topup_pack, settings):
    wallet, purchase = claimed_top_up(alice, client, stripe_settings, topup_pack, card="pm_card_chargeCustomerFail")
    age(purchase, settings.AUTO_TOP_UP_STUCK_SECONDS + 1)
    assert tasks.sweep_stuck_top_ups() == 1
    purchase.refresh_from_db()
    assert (purchase.status, purchase.failure_code) == (Purchase.Status.FAILED, "card_declined")
    assert not wallet_of(alice).auto_topup_enabled
    assert wallet_of(alice).balance == 400


def test_a_top_up_stuck_past_stripes_idempotency_window_is_given_up_not_charged(
    alice, client, stripe_settings, topup_pack
):
    wallet, purchase = claimed_top_up(alice, client, stripe_settings, topup_pack)
    # Stripe may forget an idempotency key after 24 hours: a charge then could be a second one.
    Purchase.objects.filter(pk=purchase.pk).update(created_at=timezone.now() - timedelta(hours=25))
    age(purchase, 25 * 3600)
    assert tasks.sweep_stuck_top_ups() == 1
    purchase.refresh_from_db()
    assert (purchase.status, purchase.failure_code) == (Purchase.Status.FAILED, "stale")
    assert payment_intents(stripe_settings) == []
    assert wallet_of(alice).auto_topup_enabled  # not a decline
    assert wallet_of(alice).balance == 400


def test_the_sweep_is_on_beat():
    from django.conf import settings

    [entry] = [e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "billing.sweep_stuck_top_ups"]
    assert entry["schedule"] <= settings.AUTO_TOP_UP_STUCK_SECONDS
