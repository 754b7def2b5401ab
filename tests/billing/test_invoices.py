"""Every purchase has a Stripe invoice (issue 15, item 4): Checkout's `invoice_creation`, the
invoice's id stored at fulfilment and its links (Stripe's hosted page and PDF) on the Purchases
page and in the receipt, whatever the order of the events, however often they come, and without
ever holding fulfilment up. Against fakes/stripe as a real server, events posted signed."""

import httpx
import pytest
from django.core import mail
from django.urls import reverse

from billing import services
from billing.models import LedgerEntry, Purchase, StripeEvent
from billing.notifications import send_purchase_receipt_task
from tests.billing.conftest import only, start_purchase

pytestmark = pytest.mark.django_db



def invoice_event(fake, event_type, purchase):
    """The fake's `invoice.*` event of the invoice made for this purchase's session."""
    session = fake.get(purchase.checkout_session_id)
    assert session["invoice"], "the paid session names no invoice"
    return only(fake, event_type, session["invoice"])


def test_a_paid_checkout_has_an_invoice_whose_page_and_pdf_answer(alice, alice_client, pack, stripe_settings, deliver):
    purchase = start_purchase(alice)
    session = stripe_settings.get(purchase.checkout_session_id)
    assert session["invoice_creation"]["enabled"] is True
    assert session["invoice_creation"]["invoice_data"]["metadata"]["purchase_id"] == str(purchase.public_id)
    stripe_settings.pay(purchase.checkout_session_id)
    deliver(only(stripe_settings, "checkout.session.completed", purchase.checkout_session_id))

    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.PAID
    invoice = stripe_settings.get(purchase.invoice_id)
    assert (invoice["object"], invoice["status"], invoice["total"]) == ("invoice", "paid", 1000)
    assert (purchase.invoice_url, purchase.invoice_pdf) == (invoice["hosted_invoice_url"], invoice["invoice_pdf"])
    page = httpx.get(purchase.invoice_url, timeout=10)
    assert page.status_code == 200 and invoice["number"] in page.text
    pdf = httpx.get(purchase.invoice_pdf, timeout=10)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")

    history = alice_client.get(reverse("billing_purchases")).content.decode()
    assert f'href="{purchase.invoice_url}"' in history and ">Invoice</a>" in history
    assert f'href="{purchase.invoice_pdf}"' in history and ">PDF</a>" in history
    [receipt] = mail.outbox
    assert f"Invoice:   {purchase.invoice_url}" in receipt.body
    assert f"PDF:       {purchase.invoice_pdf}" in receipt.body
    # No tax and no discount: the amount is the pack's price and nothing breaks it down.
    assert (purchase.subtotal_cents, purchase.discount_cents, purchase.tax_cents, purchase.amount_cents) == (
        1000, 0, 0, 1000)
    assert 'data-testid="purchase-charge"' not in history
    api = alice_client.get("/api/billing/purchases/").json()["results"][0]
    assert (api["invoice_url"], api["invoice_pdf"], api["tax_cents"]) == (purchase.invoice_url, purchase.invoice_pdf, 0)


def test_the_invoice_event_before_the_session_event_credits_once_and_fills_the_links(alice, pack, stripe_settings,
                                                                                    deliver):
    purchase = start_purchase(alice)
    stripe_settings.pay(purchase.checkout_session_id)
    finalized = invoice_event(stripe_settings, "invoice.finalized", purchase)
    deliver(finalized)
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.PAID and purchase.invoice_id == finalized["data"]["object"]["id"]
    assert purchase.invoice_url == finalized["data"]["object"]["hosted_invoice_url"]

    # The session's own event and replays of both change nothing.
    for event in (only(stripe_settings, "checkout.session.completed", purchase.checkout_session_id), finalized):
        deliver(event)
        deliver(event)
    assert LedgerEntry.objects.filter(wallet__user=alice).count() == 1
    assert len(mail.outbox) == 1
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {"processed"}
    again = Purchase.objects.get(pk=purchase.pk)
    assert (again.invoice_id, again.invoice_url, again.invoice_pdf, again.amount_cents) == (
        purchase.invoice_id, purchase.invoice_url, purchase.invoice_pdf, 1000)


def test_stripe_failing_on_the_invoice_does_not_hold_the_credits_up(alice, alice_client, pack, stripe_settings, deliver):
    purchase = start_purchase(alice)
    stripe_settings.pay(purchase.checkout_session_id)
    # Every attempt to read the invoice fails (the client's two network retries included).
    stripe_settings.fail_next(count=3, status=500, path="/v1/invoices/")
    deliver(only(stripe_settings, "checkout.session.completed", purchase.checkout_session_id))
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.PAID and purchase.invoice_id
    assert (purchase.invoice_url, purchase.invoice_pdf) == ("", "")
    assert "Being prepared" in alice_client.get(reverse("billing_purchases")).content.decode()
    [receipt] = mail.outbox
    assert "Invoice:" not in receipt.body and "Your purchases:" in receipt.body

    deliver(invoice_event(stripe_settings, "invoice.finalized", purchase))
    purchase.refresh_from_db()
    assert purchase.invoice_url and purchase.invoice_pdf.startswith(stripe_settings.api_base)
    assert f'href="{purchase.invoice_url}"' in alice_client.get(reverse("billing_purchases")).content.decode()


def test_an_invoice_of_no_purchase_is_ignored_and_one_naming_another_purchase_gives_it_nothing(
    alice, bob, pack, stripe_settings, deliver
):
    alices = start_purchase(alice)
    stripe_settings.pay(alices.checkout_session_id)
    event = invoice_event(stripe_settings, "invoice.finalized", alices)
    # A signed invoice event whose metadata names Bob's purchase: Bob's session is still open at
    # Stripe, so nothing is credited and the invoice is not Bob's.
    bobs = start_purchase(bob)
    event["id"] = "evt_forged_names_bob"
    event["data"]["object"]["metadata"] = {"purchase_id": str(bobs.public_id)}
    deliver(event)
    bobs.refresh_from_db()
    assert (bobs.status, bobs.invoice_id, bobs.invoice_url) == (Purchase.Status.PENDING, "", "")
    assert StripeEvent.objects.get(event_id="evt_forged_names_bob").note == "not the invoice of a purchase"
    assert not LedgerEntry.objects.exists()


def test_a_purchase_made_before_subtotals_were_stored_is_checked_against_its_amount(alice, alice_client, pack,
                                                                                     stripe_settings):
    """Purchases started before this change have no subtotal: their amount was the pack's price.
    One without an invoice id shows no invoice link."""
    purchase = start_purchase(alice)
    Purchase.objects.filter(pk=purchase.pk).update(subtotal_cents=None)
    stripe_settings.pay(purchase.checkout_session_id)
    services.fulfil_checkout(session_id=purchase.checkout_session_id)
    purchase.refresh_from_db()
    assert (purchase.status, purchase.subtotal_cents, purchase.amount_cents) == (Purchase.Status.PAID, 1000, 1000)
    Purchase.objects.filter(pk=purchase.pk).update(invoice_id="", invoice_url="", invoice_pdf="")
    history = alice_client.get(reverse("billing_purchases")).content.decode()
    assert 'data-testid="invoice-link"' not in history and "Being prepared" not in history


def test_a_top_ups_invoice_is_linked_from_purchases_once_finalized(alice, alice_client, pack, stripe_settings, deliver):
    """Auto top-ups store the id of the invoice they make; `invoice.finalized` brings its links."""
    client = stripe_settings.client()
    customer = client.v1.customers.create(params={"email": alice.email})
    invoice = client.v1.invoices.create(params={"customer": customer.id, "auto_advance": False})
    client.v1.invoice_items.create(params={"customer": customer.id, "invoice": invoice.id, "amount": 1000,
                                           "currency": "usd", "description": "Test pack: 1,000 credits"})
    top_up = Purchase.objects.create(
        user=alice, pack=pack, source=Purchase.Source.AUTO_TOP_UP, topup_key="wallet:test:1", credits=1000,
        amount_cents=1000, subtotal_cents=1000, currency="usd", status=Purchase.Status.PENDING, invoice_id=invoice.id,
    )
    client.v1.invoices.finalize_invoice(invoice.id)
    finalized = only(stripe_settings, "invoice.finalized", invoice.id)
    deliver(finalized)
    deliver(finalized)
    top_up.refresh_from_db()
    assert top_up.invoice_url == finalized["data"]["object"]["hosted_invoice_url"]
    assert httpx.get(top_up.invoice_pdf, timeout=10).content.startswith(b"%PDF-")
    row = alice_client.get(reverse("billing_purchases")).content.decode()
    assert f'href="{top_up.invoice_url}"' in row and f'href="{top_up.invoice_pdf}"' in row


def test_the_receipt_goes_out_without_links_when_stripe_cannot_be_asked(settings, alice, pack, stripe_settings):
    purchase = start_purchase(alice)
    stripe_settings.pay(purchase.checkout_session_id)
    services.fulfil_checkout(session_id=purchase.checkout_session_id)  # the receipt queued on commit is not run
    Purchase.objects.filter(pk=purchase.pk).update(invoice_url="", invoice_pdf="")
    settings.STRIPE_SECRET_KEY = ""  # payments switched off since
    send_purchase_receipt_task(purchase.pk)
    [receipt] = mail.outbox
    assert "Thank you for your purchase." in receipt.body and "Invoice:" not in receipt.body
