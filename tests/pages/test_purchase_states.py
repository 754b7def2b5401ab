"""Purchases end in an honest state: a checkout the buyer cancels is Canceled, one abandoned is
Expired (by Stripe's `checkout.session.expired` event, or by the sweep when that event is lost),
an open one can be resumed, and a failure has one note."""

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from billing import services, tasks
from billing.models import Purchase
from tests.billing.conftest import fake_events, start_purchase

pytestmark = pytest.mark.django_db


def _purchases_page(client) -> str:
    response = client.get(reverse("billing_purchases"))
    assert response.status_code == 200
    return response.content.decode()


def test_a_checkout_records_when_stripe_expires_it(stripe_settings, alice, pack):
    purchase = start_purchase(alice)
    session = stripe_settings.get(purchase.checkout_session_id)
    assert purchase.expires_at is not None
    assert int(purchase.expires_at.timestamp()) == session["expires_at"]


def test_the_expired_event_makes_an_abandoned_checkout_expired(stripe_settings, alice, alice_client, pack, deliver):
    purchase = start_purchase(alice)
    stripe_settings.expire(purchase.checkout_session_id)
    (event,) = fake_events(stripe_settings, "checkout.session.expired")
    assert deliver(event, secret=stripe_settings.webhook_secret).status_code == 200
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.EXPIRED
    body = _purchases_page(alice_client)
    assert ">Expired</span>" in body
    assert "Waiting for payment" not in body
    assert 'data-testid="resume-checkout"' not in body


def test_an_open_checkout_can_be_resumed(stripe_settings, alice, alice_client, pack):
    purchase = start_purchase(alice)
    body = _purchases_page(alice_client)
    assert f'href="{purchase.checkout_url}" data-testid="resume-checkout"' in body


def test_the_sweep_expires_checkouts_past_their_expiry(stripe_settings, alice, bob, pack):
    stale = start_purchase(alice)
    fresh = start_purchase(bob)
    assert stale.expires_at is not None
    # As if bob's checkout had started an hour later (the fake's clock is not ours to move).
    Purchase.objects.filter(pk=fresh.pk).update(expires_at=stale.expires_at + timedelta(hours=1))
    with time_machine.travel(stale.expires_at + timedelta(seconds=5), tick=False):
        assert services.stale_checkouts() == [stale.pk]
        assert tasks.expire_stale_checkouts.apply().get() == 1
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == Purchase.Status.EXPIRED
    assert fresh.status == Purchase.Status.PENDING
    # Stripe still had it open (its clock is its own): the sweep expired it there too.
    assert stripe_settings.get(stale.checkout_session_id)["status"] == "expired"
    assert stripe_settings.get(fresh.checkout_session_id)["status"] == "open"


def test_the_sweep_credits_a_checkout_paid_after_all(stripe_settings, alice, pack):
    purchase = start_purchase(alice)
    stripe_settings.pay(purchase.checkout_session_id)  # its completed event never reached us
    with time_machine.travel(purchase.expires_at + timedelta(seconds=5), tick=False):
        tasks.expire_stale_checkouts.apply().get()
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.PAID
    assert services.get_wallet(alice).balance == pack.credits


def test_the_cancel_link_cancels_the_purchase_and_expires_its_session(
    stripe_settings, alice, alice_client, pack, deliver
):
    purchase = start_purchase(alice)
    response = alice_client.get(reverse("buy_credits"), {"canceled": "1", "purchase": str(purchase.public_id)})
    assert response.status_code == 200
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.CANCELED
    assert stripe_settings.get(purchase.checkout_session_id)["status"] == "expired"
    # Stripe's expired event that follows leaves it canceled.
    (event,) = fake_events(stripe_settings, "checkout.session.expired")
    deliver(event, secret=stripe_settings.webhook_secret)
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.CANCELED
    body = _purchases_page(alice_client)
    assert ">Canceled</span>" in body
    assert "You canceled the checkout; nothing was charged." in body


def test_the_checkout_s_cancel_url_names_its_purchase(stripe_settings, alice, pack):
    purchase = start_purchase(alice)
    session = stripe_settings.get(purchase.checkout_session_id)
    assert session["cancel_url"] == f"http://testserver/billing/buy/?canceled=1&purchase={purchase.public_id}"


def test_cancelling_someone_else_s_purchase_changes_nothing(stripe_settings, alice, bob, client, pack):
    purchase = start_purchase(alice)
    client.force_login(bob)
    client.get(reverse("buy_credits"), {"canceled": "1", "purchase": str(purchase.public_id)})
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.PENDING
    assert stripe_settings.get(purchase.checkout_session_id)["status"] == "open"


def test_a_cancel_link_after_paying_keeps_the_payment(stripe_settings, alice, alice_client, pack):
    purchase = start_purchase(alice)
    stripe_settings.pay(purchase.checkout_session_id)
    alice_client.get(reverse("buy_credits"), {"canceled": "1", "purchase": str(purchase.public_id)})
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.PAID
    assert services.get_wallet(alice).balance == pack.credits


def test_a_failed_payment_has_one_note(stripe_settings, alice, alice_client, pack):
    purchase = start_purchase(alice)
    services.fail_checkout(session_id=purchase.checkout_session_id, reason="The bank payment failed; nothing was charged.")
    body = _purchases_page(alice_client)
    assert body.count("nothing was charged") == 1
    assert body.count("The bank payment failed; nothing was charged.") == 1


def test_amounts_are_formatted_by_the_one_helper(stripe_settings, alice, alice_client, db):
    from tests.billing.factories import CreditPackFactory

    CreditPackFactory.create(key="big", name="Big", credits=75000, price_cents=750000)
    start_purchase(alice, pack_key="big")
    body = _purchases_page(alice_client)
    assert ">75,000</td>" in body
    assert ">$7,500.00</td>" in body


def test_stale_checkouts_skip_those_without_an_expiry(alice, pack):
    Purchase.objects.create(user=alice, pack=pack, credits=1, amount_cents=100, currency="usd", checkout_session_id="cs_x")
    assert services.stale_checkouts(now=timezone.now() + timedelta(days=2)) == []
