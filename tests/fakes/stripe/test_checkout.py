import time

import httpx
import pytest
import stripe

from fakes.stripe.pytest_plugin import FakeStripeError

pytestmark = pytest.mark.filterwarnings("ignore:Use .content=:DeprecationWarning")

WH = "whsec_fake"


def test_pack_purchase_with_price_paid_by_card(fake_stripe, client, hooked):
    customer = client.v1.customers.create(
        params={"email": "alice@example.com", "metadata": {"user_id": "42"}}
    )
    price = client.v1.prices.create(
        params={"currency": "usd", "unit_amount": 500, "product_data": {"name": "500 credits"}}
    )
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "customer": customer.id,
            "line_items": [{"price": price.id, "quantity": 2}],
            "client_reference_id": "42",
            "metadata": {"purchase": "p1"},
            "payment_intent_data": {"metadata": {"purchase": "p1"}},
            "success_url": "http://shop.test/ok?session_id={CHECKOUT_SESSION_ID}",
            "cancel_url": "http://shop.test/",
        },
        options={"idempotency_key": "checkout:42:p1"},
    )
    assert session.id.startswith("cs_test_")
    assert (session.status, session.payment_status, session.amount_total) == ("open", "unpaid", 1000)
    assert session.success_url == "http://shop.test/ok?session_id={CHECKOUT_SESSION_ID}"
    assert session.url == f"{fake_stripe.api_base}/c/pay/{session.id}"
    assert session.payment_intent is None
    assert "line_items" not in session

    paid = fake_stripe.pay(session.id)
    assert (paid["status"], paid["payment_status"]) == ("complete", "paid")

    again = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["line_items"]})
    assert again.customer == customer.id
    assert again.customer_details.email == "alice@example.com"
    assert again.url is None
    item = again.line_items.data[0]
    assert (item.price.id, item.quantity, item.amount_subtotal, item.description) == (
        price.id,
        2,
        1000,
        "500 credits",
    )
    listed = client.v1.checkout.sessions.line_items.list(session.id)
    assert [li.id for li in listed.data] == [item.id]

    pi = client.v1.payment_intents.retrieve(again.payment_intent)
    assert pi.id.startswith("pi_")
    assert (pi.status, pi.amount_received, pi.customer) == ("succeeded", 1000, customer.id)
    assert pi.metadata.to_dict() == {"purchase": "p1"}
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.id.startswith("ch_")
    assert (charge.paid, charge.amount_captured, charge.amount_refunded) == (True, 1000, 0)
    assert charge.metadata["purchase"] == "p1"

    fake_stripe.wait_for_deliveries()
    events = hooked.events(WH)
    assert [e.type for e in events] == [
        "customer.created",
        "price.created",
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.succeeded",
        "checkout.session.completed",
    ]
    completed = events[-1]
    assert completed.id.startswith("evt_")
    assert completed.data.object.id == session.id
    assert completed.data.object.payment_status == "paid"
    assert completed.data.object.client_reference_id == "42"
    assert completed.request.idempotency_key is None  # the customer paid, not an API call
    assert client.v1.events.retrieve(completed.id).data.object.id == session.id


def test_hosted_page_pay_redirects_to_success_url(fake_stripe, make_session, hooked):
    session = make_session()
    page = httpx.get(session.url)
    assert page.status_code == 200
    for button in ("id=pay ", "id=decline ", "id=pay-later ", "id=pay-later-fail "):
        assert button in page.text
    assert "$10.00" in page.text

    resp = httpx.post(session.url, data={"action": "pay", "email": "bob@example.com"})
    assert resp.status_code == 303
    assert resp.headers["location"] == f"http://shop.test/billing/success?session_id={session.id}"
    assert fake_stripe.get(session.id)["customer_details"]["email"] == "bob@example.com"
    fake_stripe.wait_for_deliveries()
    assert hooked.types()[-1] == "checkout.session.completed"
    assert "complete" in httpx.get(session.url).text


def test_decline_keeps_the_session_open_and_a_retry_can_pay(fake_stripe, client, make_session, hooked):
    session = make_session()
    resp = httpx.post(session.url, data={"action": "decline"})
    assert resp.status_code == 402
    assert "Your card was declined." in resp.text
    retrieved = client.v1.checkout.sessions.retrieve(session.id)
    assert (retrieved.status, retrieved.payment_status) == ("open", "unpaid")
    pi = client.v1.payment_intents.retrieve(retrieved.payment_intent)
    assert pi.status == "requires_payment_method"
    assert pi.last_payment_error.code == "card_declined"

    declined = fake_stripe.decline(session.id)
    assert declined["error"]["decline_code"] == "generic_decline"

    fake_stripe.pay(session.id)
    after = client.v1.payment_intents.retrieve(retrieved.payment_intent)
    assert after.status == "succeeded"  # the same PaymentIntent, as Checkout reuses it
    fake_stripe.wait_for_deliveries()
    assert hooked.types() == [
        "payment_intent.created",
        "charge.failed",
        "payment_intent.payment_failed",
        "charge.failed",
        "payment_intent.payment_failed",
        "charge.succeeded",
        "payment_intent.succeeded",
        "checkout.session.completed",
    ]


@pytest.mark.parametrize(
    ("succeed", "last"),
    [
        (True, "checkout.session.async_payment_succeeded"),
        (False, "checkout.session.async_payment_failed"),
    ],
)
def test_pay_later_completes_unpaid_then_settles(fake_stripe, client, make_session, hooked, succeed, last):
    session = make_session()
    fake_stripe.pay_later(session.id, succeed=succeed, delay=0.2)
    now = client.v1.checkout.sessions.retrieve(session.id)
    assert (now.status, now.payment_status) == ("complete", "unpaid")
    assert client.v1.payment_intents.retrieve(now.payment_intent).status == "processing"

    fake_stripe.wait_for_deliveries()
    events = hooked.events(WH)
    types = [e.type for e in events]
    assert types.index("checkout.session.completed") < types.index(last)
    assert events[types.index("checkout.session.completed")].data.object.payment_status == "unpaid"
    assert events[-1].type == last
    final = client.v1.checkout.sessions.retrieve(session.id)
    assert final.payment_status == ("paid" if succeed else "unpaid")
    pi = client.v1.payment_intents.retrieve(final.payment_intent)
    assert pi.status == ("succeeded" if succeed else "requires_payment_method")


def test_hosted_page_pay_later_fails_after_the_configured_delay(fake_stripe, make_session, hooked):
    fake_stripe.configure(async_delay=0.1)
    session = make_session()
    resp = httpx.post(session.url, data={"action": "pay_later_fail"})
    assert resp.status_code == 303
    fake_stripe.wait_for_deliveries()
    assert hooked.types()[-1] == "checkout.session.async_payment_failed"


def test_manual_settlement(fake_stripe, make_session, hooked):
    session = make_session()
    fake_stripe.pay_later(session.id, delay=-1)
    fake_stripe.wait_for_deliveries()
    assert "checkout.session.async_payment_succeeded" not in hooked.types()
    assert fake_stripe.settle(session.id)["payment_status"] == "paid"
    with pytest.raises(FakeStripeError):
        fake_stripe.settle(session.id)


def test_expire(fake_stripe, client, make_session, hooked):
    session = make_session()
    expired = client.v1.checkout.sessions.expire(session.id)
    assert (expired.status, expired.url) == ("expired", None)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.expire(session.id)
    with pytest.raises(FakeStripeError) as exc:
        fake_stripe.pay(session.id)
    assert exc.value.status == 400
    fake_stripe.wait_for_deliveries()
    assert hooked.types() == ["checkout.session.expired"]
    assert "expired" in httpx.get(session.url).text


def test_expires_at_must_be_between_30_minutes_and_24_hours(fake_stripe, make_session):
    expires_at = int(time.time()) + 1800
    assert make_session(expires_at=expires_at).expires_at == expires_at
    with pytest.raises(stripe.InvalidRequestError) as exc:
        make_session(expires_at=int(time.time()) + 60)
    assert exc.value.param == "expires_at"
    with pytest.raises(stripe.InvalidRequestError):
        make_session(expires_at=int(time.time()) + 2 * 86400)


def test_sessions_expire_by_themselves_at_expires_at(fake_stripe, client, make_session, hooked):
    soon = make_session(expires_at=int(time.time()) + 1800)
    later = make_session()
    fake_stripe.advance_clock(1801)
    assert client.v1.checkout.sessions.retrieve(soon.id).status == "expired"
    assert client.v1.checkout.sessions.retrieve(later.id).status == "open"
    fake_stripe.wait_for_deliveries()
    assert hooked.types() == ["checkout.session.expired"]
    fake_stripe.reset()
    assert fake_stripe.advance_clock(0) == pytest.approx(time.time(), abs=2)


def test_customer_creation_always_creates_a_customer_on_payment(fake_stripe, client, make_session):
    session = make_session(customer_creation="always", customer_email="carol@example.com")
    fake_stripe.pay(session.id)
    done = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["customer"]})
    assert done.customer.id.startswith("cus_")
    assert done.customer.email == "carol@example.com"


def test_guest_checkout_has_no_customer(fake_stripe, client, make_session):
    session = make_session(customer_email="dave@example.com")
    fake_stripe.pay(session.id)
    done = client.v1.checkout.sessions.retrieve(session.id)
    assert done.customer is None
    assert done.customer_details.email == "dave@example.com"


def test_price_data_with_several_line_items(fake_stripe, client, make_session):
    session = make_session(
        line_items=[
            {
                "price_data": {"currency": "eur", "unit_amount": 250, "product_data": {"name": "a"}},
                "quantity": 3,
            },
            {
                "price_data": {"currency": "eur", "unit_amount": 100, "product_data": {"name": "b"}},
                "quantity": 1,
            },
        ]
    )
    assert (session.amount_total, session.currency) == (850, "eur")
    items = client.v1.checkout.sessions.line_items.list(session.id, params={"limit": 1})
    assert items.has_more is True
    assert items.data[0].price.unit_amount == 250
    with pytest.raises(stripe.InvalidRequestError, match="same currency"):
        make_session(
            line_items=[
                {
                    "price_data": {"currency": "eur", "unit_amount": 1, "product_data": {"name": "a"}},
                    "quantity": 1,
                },
                {
                    "price_data": {"currency": "usd", "unit_amount": 1, "product_data": {"name": "b"}},
                    "quantity": 1,
                },
            ]
        )


async def test_async_client_over_httpx(fake_stripe, make_session):
    client = fake_stripe.client(http_client=stripe.HTTPXClient())
    customer = await client.v1.customers.create_async(params={"email": "async@example.com"})
    fetched = await client.v1.customers.retrieve_async(customer.id)
    assert fetched.email == "async@example.com"


def test_default_http_client_and_module_level_api(fake_stripe, make_session, monkeypatch):
    session = make_session()
    assert fake_stripe.client().v1.checkout.sessions.retrieve(session.id).id == session.id
    monkeypatch.setattr(stripe, "api_key", fake_stripe.secret_key)
    monkeypatch.setattr(stripe, "api_base", fake_stripe.api_base)
    assert stripe.checkout.Session.retrieve(session.id).amount_total == 1000
