"""Checkout for the credit lifecycle: setup mode, saving the card while paying, the card choice
on the hosted page, invoices, automatic tax, coupons and promotion codes."""

import httpx
import pytest
import stripe

from fakes.stripe.pytest_plugin import FakeStripeError

pytestmark = pytest.mark.filterwarnings("ignore:Use .content=:DeprecationWarning")


@pytest.fixture
def customer(client):
    return client.v1.customers.create(params={"email": "alice@example.com"})


def setup_session(client, customer, **extra):
    return client.v1.checkout.sessions.create(
        params={
            "mode": "setup",
            "currency": "usd",
            "customer": customer.id,
            "setup_intent_data": {"metadata": {"user_id": "42"}},
            "success_url": "http://shop.test/billing/card?session_id={CHECKOUT_SESSION_ID}",
            "cancel_url": "http://shop.test/billing/",
            "client_reference_id": "42",
            "metadata": {"user_id": "42", "purpose": "save_card"},
            **extra,
        }
    )


def test_setup_mode_saves_a_card_that_later_fails(fake_stripe, client, customer, hooked):
    session = setup_session(client, customer)
    assert (session.mode, session.status, session.amount_total) == ("setup", "open", None)
    assert session.setup_intent.startswith("seti_")
    done = fake_stripe.pay(session.id, card="pm_card_chargeCustomerFail")
    assert (done["status"], done["payment_status"], done["setup_intent"]) == (
        "complete",
        "no_payment_required",
        session.setup_intent,
    )
    si = client.v1.setup_intents.retrieve(session.setup_intent)
    assert (si.status, si.customer, si.metadata.to_dict()) == ("succeeded", customer.id, {"user_id": "42"})
    pm = client.v1.payment_methods.retrieve(si.payment_method)
    assert (pm.customer, pm.card.last4) == (customer.id, "0341")
    fake_stripe.wait_for_deliveries()
    assert hooked.types() == [
        "setup_intent.created",
        "setup_intent.succeeded",
        "payment_method.attached",
        "checkout.session.completed",
    ]
    completed = hooked.events("whsec_fake")[-1]
    assert completed.data.object.setup_intent == si.id

    # The saved card attaches fine but every charge of it is declined.
    with pytest.raises(stripe.CardError) as exc:
        client.v1.payment_intents.create(
            params={
                "amount": 1000,
                "currency": "usd",
                "customer": customer.id,
                "payment_method": pm.id,
                "off_session": True,
                "confirm": True,
            }
        )
    assert exc.value.code == "card_declined"

    with pytest.raises(stripe.InvalidRequestError) as bad:
        client.v1.checkout.sessions.create(
            params={"mode": "setup", "currency": "usd", "line_items": [{"price": "price_x", "quantity": 1}]}
        )
    assert bad.value.param == "line_items"


def test_setup_mode_on_the_hosted_page(fake_stripe, client, customer):
    session = setup_session(client, customer)
    page = httpx.get(session.url)
    assert "name=card data-testid=card" in page.text and "Save card" in page.text
    declined = httpx.post(session.url, data={"action": "pay", "card": "pm_card_chargeDeclined"})
    assert declined.status_code == 402 and "Your card was declined." in declined.text
    assert client.v1.setup_intents.retrieve(session.setup_intent).status == "requires_payment_method"
    saved = httpx.post(session.url, data={"action": "pay", "card": "pm_card_authenticationRequired"})
    assert saved.status_code == 303
    assert saved.headers["location"] == f"http://shop.test/billing/card?session_id={session.id}"
    [pm] = client.v1.customers.payment_methods.list(customer.id).data
    assert pm.card.last4 == "3184"


def test_payment_mode_with_setup_future_usage_saves_the_card(
    fake_stripe, client, customer, make_session, hooked
):
    session = make_session(
        customer=customer.id,
        payment_intent_data={"setup_future_usage": "off_session", "metadata": {"user_id": "42"}},
    )
    fake_stripe.pay(session.id, card="pm_card_authenticationRequired")
    pi = client.v1.payment_intents.retrieve(client.v1.checkout.sessions.retrieve(session.id).payment_intent)
    assert (pi.status, pi.setup_future_usage, pi.customer) == ("succeeded", "off_session", customer.id)
    pm = client.v1.payment_methods.retrieve(pi.payment_method)
    assert (pm.customer, pm.card.last4) == (customer.id, "3184")
    assert client.v1.charges.retrieve(pi.latest_charge).payment_method == pm.id
    fake_stripe.wait_for_deliveries()
    assert hooked.types() == [
        "payment_intent.created",
        "payment_method.attached",
        "charge.succeeded",
        "payment_intent.succeeded",
        "checkout.session.completed",
    ]


def test_a_declining_card_chosen_at_checkout(fake_stripe, client, make_session):
    session = make_session()
    with pytest.raises(FakeStripeError) as exc:
        fake_stripe.pay(session.id, card="pm_card_chargeCustomerFail")
    assert exc.value.status == 402
    assert exc.value.body["error"]["code"] == "card_declined"
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"
    page = httpx.get(session.url).text
    for token in (
        "pm_card_visa",
        "pm_card_chargeCustomerFail",
        "pm_card_authenticationRequired",
        "pm_card_chargeDeclined",
    ):
        assert f"value={token}" in page
    for testid in ("pay", "decline", "pay-later", "pay-later-fail", "card"):
        assert f"data-testid={testid}" in page
    assert 'data-testid="promotion-code"' not in page  # not allowed on this session
    resp = httpx.post(session.url, data={"action": "pay", "card": "pm_card_chargeDeclined"})
    assert resp.status_code == 402
    assert httpx.post(session.url, data={"action": "pay"}).status_code == 303  # 4242 by default


def test_invoice_creation_and_automatic_tax(fake_stripe, client, customer, make_session, hooked):
    fake_stripe.configure(tax_rate_bps=2000)
    session = make_session(
        customer=customer.id,
        automatic_tax={"enabled": True},
        invoice_creation={
            "enabled": True,
            "invoice_data": {
                "description": "1000 credits",
                "metadata": {"purchase_id": "p1"},
                "footer": "Thanks",
            },
        },
    )
    assert (session.amount_subtotal, session.total_details.amount_tax, session.amount_total) == (
        1000,
        200,
        1200,
    )
    assert session.automatic_tax.enabled is True
    assert session.invoice_creation.invoice_data.metadata.purchase_id == "p1"
    done = fake_stripe.pay(session.id)
    inv = client.v1.invoices.retrieve(done["invoice"], params={"expand": ["payments"]})
    assert (inv.status, inv.subtotal, inv.total, inv.amount_paid) == ("paid", 1000, 1200, 1200)
    assert (inv.description, inv.footer, inv.metadata.purchase_id) == ("1000 credits", "Thanks", "p1")
    assert sum(t.amount for t in inv.total_taxes) == 200 and inv.automatic_tax.enabled is True
    assert inv.payments.data[0].payment.payment_intent == done["payment_intent"]
    assert client.v1.payment_intents.retrieve(done["payment_intent"]).amount == 1200
    hosted = httpx.get(inv.hosted_invoice_url).text
    assert "$2.00" in hosted and "$12.00" in hosted and inv.number in hosted
    fake_stripe.wait_for_deliveries()
    assert hooked.types()[-8:] == [
        "charge.succeeded",
        "payment_intent.succeeded",
        "invoice.created",
        "invoice.finalized",
        "invoice_payment.paid",
        "invoice.paid",
        "invoice.payment_succeeded",
        "checkout.session.completed",
    ]


def test_tax_is_on_the_amount_after_the_discount_rounded_half_up(fake_stripe, client, make_session):
    fake_stripe.configure(tax_rate_bps=825)
    coupon = client.v1.coupons.create(params={"percent_off": 10, "duration": "once"})
    session = make_session(automatic_tax={"enabled": True}, discounts=[{"coupon": coupon.id}])
    # 1000 - 100 = 900; 900 * 8.25% = 74.25 -> 74
    assert session.total_details.amount_discount == 100
    assert session.total_details.amount_tax == 74
    assert session.amount_total == 974
    assert session.discounts[0].coupon == coupon.id
    items = client.v1.checkout.sessions.line_items.list(session.id).data
    assert (items[0].amount_discount, items[0].amount_tax, items[0].amount_total) == (100, 74, 974)


def test_coupons_and_promotion_codes(fake_stripe, client):
    coupon = client.v1.coupons.create(
        params={
            "amount_off": 300,
            "currency": "usd",
            "duration": "once",
            "max_redemptions": 5,
            "name": "Three off",
        }
    )
    assert (coupon.amount_off, coupon.valid, coupon.times_redeemed) == (300, True, 0)
    assert client.v1.coupons.retrieve(coupon.id).name == "Three off"
    assert [c.id for c in client.v1.coupons.list().data] == [coupon.id]
    promo = client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "WELCOME", "max_redemptions": 1}
    )
    assert (promo.code, promo.active, promo.promotion.coupon, promo.promotion.type) == (
        "WELCOME",
        True,
        coupon.id,
        "coupon",
    )
    assert [p.id for p in client.v1.promotion_codes.list(params={"code": "WELCOME"}).data] == [promo.id]
    assert client.v1.promotion_codes.list(params={"active": False}).data == []
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.promotion_codes.create(
            params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "WELCOME"}
        )
    assert exc.value.param == "code"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.coupons.create(params={"percent_off": 10, "amount_off": 100, "currency": "usd"})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.promotion_codes.create(params={"coupon": coupon.id})  # the pre-endive shape
    assert exc.value.code == "parameter_unknown"
    off = client.v1.promotion_codes.update(promo.id, params={"active": False})
    assert off.active is False


def test_a_promotion_code_on_the_hosted_page(fake_stripe, client, make_session, hooked):
    coupon = client.v1.coupons.create(params={"percent_off": 25, "duration": "once"})
    promo = client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "SPRING", "max_redemptions": 1}
    )
    session = make_session(allow_promotion_codes=True)
    page = httpx.get(session.url).text
    assert "name=promotion_code data-testid=promotion-code" in page
    wrong = httpx.post(session.url, data={"action": "apply", "promotion_code": "NOPE"})
    assert wrong.status_code == 400 and "This promotion code is invalid." in wrong.text
    applied = httpx.post(session.url, data={"action": "apply", "promotion_code": "spring"})
    assert applied.status_code == 200 and "−$2.50" in applied.text and "$7.50" in applied.text
    s = client.v1.checkout.sessions.retrieve(session.id)
    assert (s.amount_total, s.total_details.amount_discount) == (750, 250)
    assert s.discounts[0].promotion_code == promo.id
    assert httpx.post(session.url, data={"action": "pay", "promotion_code": "SPRING"}).status_code == 303
    assert client.v1.promotion_codes.retrieve(promo.id).times_redeemed == 1
    assert client.v1.coupons.retrieve(coupon.id).times_redeemed == 1
    assert (
        client.v1.payment_intents.retrieve(
            client.v1.checkout.sessions.retrieve(session.id).payment_intent
        ).amount
        == 750
    )

    # Used up: the next session refuses it, at creation and on the page.
    with pytest.raises(stripe.InvalidRequestError) as exc:
        make_session(discounts=[{"promotion_code": promo.id}])
    assert exc.value.param == "discounts[0][promotion_code]"
    other = make_session(allow_promotion_codes=True)
    with pytest.raises(FakeStripeError) as refused:
        fake_stripe.pay(other.id, promotion_code="SPRING")
    assert "maximum number of redemptions" in refused.value.body["error"]["message"]
    with pytest.raises(stripe.InvalidRequestError) as both:
        make_session(allow_promotion_codes=True, discounts=[{"coupon": coupon.id}])
    assert both.value.param == "discounts"


def test_the_tax_rate_comes_from_the_command_line_and_survives_reset():
    from fakes.stripe.pytest_plugin import TEST_SERVER_ARGS, start_fake_stripe, stop_fake_stripe

    fake = start_fake_stripe(*TEST_SERVER_ARGS, "--tax-rate-bps", "500")
    try:
        assert fake.configure()["tax_rate_bps"] == 500
        assert fake.configure(tax_rate_bps=1000)["tax_rate_bps"] == 1000
        fake.reset()
        assert fake.configure()["tax_rate_bps"] == 500
        with pytest.raises(FakeStripeError):
            fake.configure(tax_rate_bps=20000)
    finally:
        stop_fake_stripe(fake)
