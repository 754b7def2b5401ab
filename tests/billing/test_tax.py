"""Stripe Tax at checkout (STRIPE_AUTOMATIC_TAX, issue 15, item 4): pack prices are before tax,
the buyer is charged price + tax and credited the whole pack, the tax is on the invoice and on the
Purchases page, and refunds measure against what was charged. Against fakes/stripe as a real
server with its tax rate set (`POST /_fake/config tax_rate_bps`)."""

import httpx
import pytest
from django.core import mail
from django.urls import reverse

from billing.models import LedgerEntry, Purchase
from tests.billing.conftest import balance, only, start_purchase

pytestmark = pytest.mark.django_db




@pytest.fixture
def taxed(settings, stripe_settings):
    """STRIPE_AUTOMATIC_TAX on; the fake's Stripe Tax charges 20%."""
    settings.STRIPE_AUTOMATIC_TAX = True
    stripe_settings.configure(tax_rate_bps=2000)
    return stripe_settings


def paid(user, fake, deliver) -> Purchase:
    purchase = start_purchase(user)
    fake.pay(purchase.checkout_session_id)
    deliver(only(fake, "checkout.session.completed", purchase.checkout_session_id))
    purchase.refresh_from_db()
    return purchase


def test_a_taxed_purchase_credits_the_whole_pack_and_shows_the_tax(alice, alice_client, pack, taxed, deliver):
    purchase = start_purchase(alice)
    session = taxed.get(purchase.checkout_session_id, expand=["line_items"])
    assert session["automatic_tax"]["enabled"] is True
    assert session["line_items"]["data"][0]["price"]["tax_behavior"] == "exclusive"
    taxed.pay(purchase.checkout_session_id)
    deliver(only(taxed, "checkout.session.completed", purchase.checkout_session_id))

    purchase.refresh_from_db()
    assert (purchase.status, purchase.credits, balance(alice)) == (Purchase.Status.PAID, 1000, 1000)
    assert (purchase.subtotal_cents, purchase.discount_cents, purchase.tax_cents, purchase.amount_cents) == (
        1000, 0, 200, 1200)
    assert taxed.get(purchase.payment_intent_id)["amount"] == 1200
    invoice = taxed.get(purchase.invoice_id)
    assert (invoice["subtotal"], invoice["total"], invoice["amount_paid"]) == (1000, 1200, 1200)
    assert sum(tax["amount"] for tax in invoice["total_taxes"]) == 200
    hosted = httpx.get(purchase.invoice_url, timeout=10)
    assert hosted.status_code == 200 and "$2.00" in hosted.text and "$12.00" in hosted.text

    history = alice_client.get(reverse("billing_purchases")).content.decode()
    assert "$12.00" in history and "$10.00 + $2.00 tax" in history
    [receipt] = mail.outbox
    assert "Paid:      $12.00 ($10.00 + $2.00 tax)" in receipt.body
    assert LedgerEntry.objects.get(wallet__user=alice).credits == 1000


def test_pack_prices_are_shown_before_tax_on_the_buy_page_and_in_the_api(alice_client, pack, taxed):
    page = alice_client.get(reverse("buy_credits")).content.decode()
    assert "$10.00 <span class=\"muted small\" data-testid=\"before-tax\">before tax</span>" in page
    assert "Prices are before tax" in page
    packs = alice_client.get("/api/billing/packs/").json()
    assert {(p["key"], p["price_cents"], p["price_before_tax"]) for p in packs if p["key"] == "testpack"} == {
        ("testpack", 1000, True)}
    assert all(p["price_before_tax"] for p in packs)


def test_without_the_setting_there_is_no_tax_and_no_before_tax(alice, alice_client, pack, stripe_settings, deliver):
    stripe_settings.configure(tax_rate_bps=2000)  # Stripe Tax would charge, were it asked
    purchase = paid(alice, stripe_settings, deliver)
    session = stripe_settings.get(purchase.checkout_session_id, expand=["line_items"])
    assert session["automatic_tax"]["enabled"] is False
    assert not session.get("allow_promotion_codes")
    assert (purchase.tax_cents, purchase.amount_cents) == (0, 1000)
    assert "before tax" not in alice_client.get(reverse("buy_credits")).content.decode()
    assert not any(p["price_before_tax"] for p in alice_client.get("/api/billing/packs/").json())


def test_a_full_refund_of_a_taxed_purchase_takes_back_all_its_credits_a_partial_one_its_share(
    alice, bob, pack, taxed, deliver
):
    full = paid(alice, taxed, deliver)
    taxed.refund(full.payment_intent_id)  # what is left: all 1200
    deliver(only(taxed, "charge.refunded"))
    full.refresh_from_db()
    assert (full.refunded_amount_cents, full.refunded_credits, balance(alice)) == (1200, 1000, 0)

    part = paid(bob, taxed, deliver)
    taxed.refund(part.payment_intent_id, amount=600)  # half of what was charged
    deliver(only(taxed, "refund.created"))
    part.refresh_from_db()
    assert (part.refunded_amount_cents, part.refunded_credits, balance(bob)) == (600, 500, 500)
    taxed.refund(part.payment_intent_id)  # the other half
    deliver(only(taxed, "refund.created"))
    part.refresh_from_db()
    assert (part.refunded_amount_cents, part.refunded_credits, balance(bob)) == (1200, 1000, 0)


def test_a_taxed_session_whose_subtotal_is_not_the_pack_is_rejected(alice, pack, taxed, deliver):
    purchase = start_purchase(alice)
    # Made elsewhere for 50 cents + tax; its metadata claims our purchase.
    forged = taxed.client().v1.checkout.sessions.create(params={
        "mode": "payment", "client_reference_id": str(alice.pk), "automatic_tax": {"enabled": True},
        "line_items": [{"price_data": {"currency": "usd", "unit_amount": 50, "product_data": {"name": "x"},
                                       "tax_behavior": "exclusive"}, "quantity": 1}],
        "metadata": {"purchase_id": str(purchase.public_id)},
        "success_url": "http://testserver/ok",
    })
    Purchase.objects.filter(pk=purchase.pk).update(checkout_session_id=forged.id)
    taxed.pay(forged.id)
    deliver(only(taxed, "checkout.session.completed", forged.id))
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.REJECTED
    assert "amount_subtotal 50 is not 1000" in purchase.failure_reason
    assert not LedgerEntry.objects.exists()
