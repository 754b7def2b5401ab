"""Tax on auto top-ups (issue 15, items 1 and 4): with STRIPE_AUTOMATIC_TAX on, a top-up's
invoice is made first with `automatic_tax[enabled]=true`, finalized, and its off-session
PaymentIntent charges the invoice's `amount_due`; the purchase stores subtotal, tax and what was
charged, credits the whole pack, and the spending cap counts the tax. Against fakes/stripe as a
real server with its tax rate set (`POST /_fake/config tax_rate_bps`)."""

from datetime import timedelta

import httpx
import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from billing import tasks
from billing.models import CreditGrant, CreditPack, LedgerEntry, Purchase, Wallet
from billing.services import caps, topups
from tests.billing.conftest import post_event
from tests.billing.test_topups import payment_intents, save_card, spend, switch_on
from tests.factories import fund, wallet_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def topup_pack(pack):
    CreditPack.objects.exclude(pk=pack.pk).update(active=False)
    return pack


@pytest.fixture
def taxed(settings, stripe_settings):
    """STRIPE_AUTOMATIC_TAX on; the fake's Stripe Tax charges 20%."""
    settings.STRIPE_AUTOMATIC_TAX = True
    stripe_settings.configure(tax_rate_bps=2000)
    return stripe_settings


def test_a_taxed_top_up_charges_the_invoice_with_its_tax_and_credits_the_whole_pack(alice, client, taxed, topup_pack):
    save_card(alice, taxed, client)
    fund(alice, 600)
    switch_on(alice, topup_pack, threshold=500, cap_cents=5000)
    mail.outbox.clear()

    spend(alice, 200, "a")

    [purchase] = Purchase.objects.filter(source=Purchase.Source.AUTO_TOP_UP)
    assert (purchase.status, purchase.credits) == (Purchase.Status.PAID, 1000)
    assert (purchase.subtotal_cents, purchase.discount_cents, purchase.tax_cents, purchase.amount_cents) == (
        1000, 0, 200, 1200)
    invoice = taxed.get(purchase.invoice_id)
    assert invoice["automatic_tax"]["enabled"] is True
    assert (invoice["status"], invoice["subtotal"], invoice["total"], invoice["amount_paid"]) == ("paid", 1000, 1200, 1200)
    assert sum(tax["amount"] for tax in invoice["total_taxes"]) == 200
    [intent] = payment_intents(taxed)
    assert (intent["amount"], intent["status"], intent["metadata"]["purchase_id"]) == (
        1200, "succeeded", str(purchase.public_id))
    assert purchase.payment_intent_id == intent["id"]
    hosted = httpx.get(purchase.invoice_url, timeout=10)
    assert hosted.status_code == 200 and "$2.00" in hosted.text and "$12.00" in hosted.text
    # Stripe's events of the payment, twice each: credited once, the whole pack.
    for event in taxed.events("payment_intent.succeeded") + taxed.events("invoice.payment_succeeded"):
        assert post_event(client, event).status_code == 200
        assert post_event(client, event).status_code == 200
    wallet = wallet_of(alice)
    assert wallet.balance == 600 - 200 + 1000
    assert LedgerEntry.objects.get(wallet=wallet, reference=f"purchase:{purchase.public_id}").credits == 1000
    assert CreditGrant.objects.get(purchase=purchase).credits == 1000
    # The money meter counts what was charged, tax included.
    assert caps.cap_status(wallet).charged_cents == 1200
    client.force_login(alice)
    history = client.get(reverse("billing_purchases")).content.decode()
    assert "$12.00" in history and "$10.00 + $2.00 tax" in history
    [receipt] = mail.outbox
    assert "($10.00 + $2.00 tax)" in receipt.body


def test_the_cap_refuses_a_top_up_its_tax_would_take_over_and_voids_its_invoice(alice, client, taxed, topup_pack):
    save_card(alice, taxed, client)
    fund(alice, 600)
    switch_on(alice, topup_pack, threshold=500, cap_cents=1100)  # $10.00 fits, $12.00 does not

    spend(alice, 200, "a")

    [purchase] = Purchase.objects.filter(source=Purchase.Source.AUTO_TOP_UP)
    assert (purchase.status, purchase.failure_code) == (Purchase.Status.FAILED, "spending_cap")
    assert "to $12.00, over your cap of $11.00" in purchase.failure_reason
    assert payment_intents(taxed) == []
    assert taxed.get(purchase.invoice_id)["status"] == "void"
    wallet = wallet_of(alice)
    assert wallet.auto_topup_enabled  # not a decline
    assert wallet.balance == 400
    assert caps.cap_status(wallet).charged_cents == 0


def test_a_declined_taxed_top_up_leaves_its_taxed_invoice_open_to_pay_on_session(alice, client, taxed, topup_pack):
    save_card(alice, taxed, client, card="pm_card_chargeCustomerFail")
    fund(alice, 600)
    switch_on(alice, topup_pack, threshold=500)
    mail.outbox.clear()

    spend(alice, 200, "a")

    [purchase] = Purchase.objects.filter(source=Purchase.Source.AUTO_TOP_UP)
    assert (purchase.status, purchase.failure_code, purchase.amount_cents) == (Purchase.Status.FAILED,
                                                                               "card_declined", 1200)
    assert not wallet_of(alice).auto_topup_enabled
    invoice = taxed.get(purchase.invoice_id)
    assert (invoice["status"], invoice["amount_due"]) == ("open", 1200)
    [email] = mail.outbox
    assert purchase.invoice_url in email.body
    paid = httpx.post(purchase.invoice_url, data={"card": "pm_card_visa"}, timeout=10)
    assert paid.status_code in (200, 303), paid.text
    [succeeded] = taxed.events("invoice.payment_succeeded")
    assert post_event(client, succeeded).status_code == 200
    assert post_event(client, succeeded).status_code == 200
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.PAID
    assert wallet_of(alice).balance == 1400


def test_a_taxed_top_up_left_processing_after_its_payment_is_replayed_once(alice, client, taxed, topup_pack, settings):
    save_card(alice, taxed, client)
    fund(alice, 600)
    spend(alice, 200, "a")
    Wallet.objects.filter(user=alice).update(auto_topup_enabled=True, auto_topup_threshold=500,
                                             auto_topup_pack=topup_pack)
    wallet = wallet_of(alice)
    purchase = topups._open_top_up(wallet_id=wallet.pk, crossing=0)
    assert purchase is not None
    Purchase.objects.filter(pk=purchase.pk).update(status=Purchase.Status.PROCESSING)
    # The worker made the invoice and the payment, then died before Stripe's answer reached it.
    invoice = topups._open_taxed_invoice(purchase, wallet)
    assert invoice is not None
    purchase.refresh_from_db()
    topups._charge(purchase, wallet)
    Purchase.objects.filter(pk=purchase.pk).update(
        updated_at=timezone.now() - timedelta(seconds=settings.AUTO_TOP_UP_STUCK_SECONDS + 1))
    settings.STRIPE_AUTOMATIC_TAX = False  # switched off meanwhile: the invoice made first still decides

    assert tasks.sweep_stuck_top_ups() == 1

    [intent] = payment_intents(taxed)
    purchase.refresh_from_db()
    assert (purchase.status, purchase.amount_cents, purchase.tax_cents, purchase.payment_intent_id) == (
        Purchase.Status.PAID, 1200, 200, intent["id"])
    assert intent["amount"] == 1200
    assert [i["id"] for i in taxed.client().v1.invoices.list(params={"limit": 10}).data] == [invoice["id"]]
    assert taxed.get(invoice["id"])["amount_paid"] == 1200
    assert wallet_of(alice).balance == 1400


def test_without_the_setting_a_top_up_has_no_tax(alice, client, stripe_settings, topup_pack):
    stripe_settings.configure(tax_rate_bps=2000)  # Stripe Tax would charge, were it asked
    save_card(alice, stripe_settings, client)
    fund(alice, 600)
    switch_on(alice, topup_pack, threshold=500)
    spend(alice, 200, "a")
    [purchase] = Purchase.objects.filter(source=Purchase.Source.AUTO_TOP_UP)
    assert (purchase.status, purchase.tax_cents, purchase.amount_cents) == (Purchase.Status.PAID, 0, 1000)
    invoice = stripe_settings.get(purchase.invoice_id)
    assert (invoice["automatic_tax"]["enabled"], invoice["total"], invoice["amount_paid"]) == (False, 1000, 1000)
