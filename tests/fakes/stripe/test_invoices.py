"""Invoices through stripe-python: draft → open → paid / void, off-session payment by the saved
card, the hosted invoice page (on-session payment) and its PDF."""

import re

import httpx
import pytest
import stripe

pytestmark = pytest.mark.filterwarnings("ignore:Use .content=:DeprecationWarning")


@pytest.fixture
def customer(client):
    return client.v1.customers.create(params={"email": "alice@example.com", "name": "Alice"})


def save_card(client, customer, token="pm_card_visa"):
    pm = client.v1.payment_methods.attach(token, params={"customer": customer.id})
    client.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": pm.id}})
    return pm


def draft(client, customer, *, tax=False, amount=2000):
    inv = client.v1.invoices.create(
        params={
            "customer": customer.id,
            "auto_advance": False,
            "collection_method": "charge_automatically",
            "currency": "usd",
            "description": "Credit top-up",
            "metadata": {"user_id": "42", "topup": "7"},
            "automatic_tax": {"enabled": tax},
            "pending_invoice_items_behavior": "exclude",
        }
    )
    client.v1.invoice_items.create(
        params={
            "customer": customer.id,
            "invoice": inv.id,
            "amount": amount,
            "currency": "usd",
            "description": "2000 credits",
            "metadata": {"pack": "m"},
        }
    )
    return inv


def test_invoice_goes_draft_open_paid_with_the_saved_card(fake_stripe, client, customer, hooked):
    pm = save_card(client, customer)
    inv = draft(client, customer)
    inv = client.v1.invoices.retrieve(inv.id)
    assert (inv.status, inv.number, inv.subtotal, inv.total, inv.amount_due) == (
        "draft",
        None,
        2000,
        2000,
        2000,
    )
    assert inv.lines.data[0].description == "2000 credits"
    assert inv.lines.data[0].parent.invoice_item_details.invoice_item.startswith("ii_")

    inv = client.v1.invoices.finalize_invoice(inv.id)
    assert inv.status == "open"
    assert re.fullmatch(r"[A-Z0-9]{8}-0001", inv.number)
    assert inv.hosted_invoice_url.endswith(f"/i/{inv.id}")

    inv = client.v1.invoices.pay(inv.id, params={"off_session": True})
    assert (inv.status, inv.amount_paid, inv.amount_remaining) == ("paid", 2000, 0)
    full = client.v1.invoices.retrieve(inv.id, params={"expand": ["payments.data.payment.payment_intent"]})
    (payment,) = full.payments.data
    assert (payment.status, payment.amount_paid) == ("paid", 2000)
    pi = payment.payment.payment_intent
    assert (pi.status, pi.payment_method, pi.customer) == ("succeeded", pm.id, customer.id)
    listed = client.v1.invoice_payments.list(params={"invoice": inv.id})
    assert [p.id for p in listed.data] == [payment.id]
    by_pi = client.v1.invoice_payments.list(
        params={"payment": {"type": "payment_intent", "payment_intent": pi.id}}
    )
    assert by_pi.data[0].invoice == inv.id
    assert [i.id for i in client.v1.invoices.list(params={"customer": customer.id}).data] == [inv.id]
    assert client.v1.invoices.line_items.list(inv.id).data[0].amount == 2000

    fake_stripe.wait_for_deliveries()
    types = [t for t in hooked.types() if t.startswith(("invoice", "payment_intent", "charge"))]
    assert types == [
        "invoice.created",
        "invoiceitem.created",
        "invoice.finalized",
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.succeeded",
        "invoice_payment.paid",
        "invoice.paid",
        "invoice.payment_succeeded",
    ]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.pay(inv.id)


def test_automatic_tax_on_an_invoice(fake_stripe, client, customer):
    fake_stripe.configure(tax_rate_bps=825)
    inv = draft(client, customer, tax=True, amount=1999)
    inv = client.v1.invoices.finalize_invoice(inv.id)
    # 1999 * 8.25% = 164.9175 -> 165 (half up)
    assert (inv.subtotal, inv.total_excluding_tax, inv.total, inv.amount_due) == (1999, 1999, 2164, 2164)
    assert inv.automatic_tax.enabled is True
    (tax,) = inv.total_taxes
    assert (tax.amount, tax.taxable_amount, tax.tax_behavior) == (165, 1999, "exclusive")
    assert inv.lines.data[0].taxes[0].amount == 165


@pytest.mark.parametrize(
    ("token", "code", "types"),
    [
        (
            "pm_card_chargeCustomerFail",
            "card_declined",
            [
                "payment_intent.created",
                "charge.failed",
                "payment_intent.payment_failed",
                "invoice.payment_failed",
            ],
        ),
        (
            "pm_card_authenticationRequired",
            "authentication_required",
            ["payment_intent.created", "payment_intent.payment_failed", "invoice.payment_failed"],
        ),
    ],
)
def test_a_failed_off_session_invoice_payment_is_paid_on_the_hosted_page(
    fake_stripe, client, customer, hooked, token, code, types
):
    save_card(client, customer, token)
    inv = client.v1.invoices.finalize_invoice(draft(client, customer).id)
    with pytest.raises(stripe.CardError) as exc:
        client.v1.invoices.pay(inv.id, params={"off_session": True})
    assert exc.value.code == code
    assert exc.value.error.payment_intent.status == "requires_payment_method"
    inv = client.v1.invoices.retrieve(inv.id)
    assert (inv.status, inv.attempt_count, inv.amount_remaining) == ("open", 1, 2000)
    fake_stripe.wait_for_deliveries()
    assert hooked.types()[-len(types) :] == types

    page = httpx.get(inv.hosted_invoice_url)
    assert page.status_code == 200
    assert inv.number in page.text and "data-testid=pay" in page.text
    choice = "saved" if token == "pm_card_authenticationRequired" else "pm_card_visa"
    paid = httpx.post(inv.hosted_invoice_url, data={"card": choice, "action": "pay"})
    assert paid.status_code == 303
    inv = client.v1.invoices.retrieve(inv.id, params={"expand": ["payments"]})
    assert (inv.status, inv.amount_paid) == ("paid", 2000)
    # The second attempt reused the invoice's PaymentIntent.
    assert len(inv.payments.data) == 1
    assert "Status: paid" in httpx.get(inv.hosted_invoice_url).text


def test_the_hosted_page_shows_a_decline(fake_stripe, client, customer):
    save_card(client, customer)
    inv = client.v1.invoices.finalize_invoice(draft(client, customer).id)
    resp = httpx.post(inv.hosted_invoice_url, data={"card": "pm_card_chargeDeclined"})
    assert resp.status_code == 402
    assert "Your card was declined." in resp.text
    assert client.v1.invoices.retrieve(inv.id).status == "open"


def test_invoice_pdf(fake_stripe, client, customer):
    fake_stripe.configure(tax_rate_bps=1000)
    inv = client.v1.invoices.finalize_invoice(draft(client, customer, tax=True).id)
    resp = httpx.get(inv.invoice_pdf)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/pdf"
    body = resp.content
    assert body.startswith(b"%PDF-") and body.rstrip().endswith(b"%%EOF")
    for text in (inv.number, "2000 credits", "Tax    $2.00", "Total    $22.00"):
        assert text.encode() in body
    # The cross-reference table points at every object.
    startxref = int(body.rsplit(b"startxref", 1)[1].split()[0])
    assert body[startxref:].startswith(b"xref")
    for match in re.finditer(rb"(\d{10}) 00000 n", body):
        assert re.match(rb"\d+ 0 obj", body[int(match.group(1)) :])


def test_void_paid_out_of_band_and_attach_payment(fake_stripe, client, customer, hooked):
    save_card(client, customer)
    voided = client.v1.invoices.void_invoice(
        client.v1.invoices.finalize_invoice(draft(client, customer).id).id
    )
    assert voided.status == "void"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.void_invoice(draft(client, customer).id)

    oob = client.v1.invoices.pay(
        client.v1.invoices.finalize_invoice(draft(client, customer).id).id, params={"paid_out_of_band": True}
    )
    assert (oob.status, oob.amount_paid_off_stripe) == ("paid", 2000)

    pi = client.v1.payment_intents.create(
        params={
            "amount": 2000,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    inv = client.v1.invoices.finalize_invoice(draft(client, customer).id)
    inv = client.v1.invoices.attach_payment(inv.id, params={"payment_intent": pi.id})
    assert inv.status == "paid"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.invoices.attach_payment(
            client.v1.invoices.finalize_invoice(draft(client, customer).id).id,
            params={"payment_intent": pi.id},
        )
    assert exc.value.param == "payment_intent"


def test_pending_invoice_items_and_price_data(fake_stripe, client, customer):
    product = client.v1.products.create(params={"name": "Credits"})
    client.v1.invoice_items.create(
        params={
            "customer": customer.id,
            "price_data": {"currency": "usd", "product": product.id, "unit_amount": 300},
            "quantity": 2,
        }
    )
    excluded = client.v1.invoices.create(params={"customer": customer.id})
    assert excluded.lines.data == []
    included = client.v1.invoices.create(
        params={"customer": customer.id, "pending_invoice_items_behavior": "include"}
    )
    (line,) = included.lines.data
    assert (line.amount, line.quantity, line.description) == (600, 2, "Credits")
    assert line.pricing.price_details.product == product.id
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.invoice_items.create(params={"customer": customer.id, "amount": 100})
    assert exc.value.param == "currency"
