import pytest
import stripe

from fakes.stripe.pytest_plugin import FakeStripeError

pytestmark = pytest.mark.filterwarnings("ignore:Use .content=:DeprecationWarning")

WH = "whsec_fake"


@pytest.fixture
def paid(fake_stripe, client, make_session):
    """A paid 10.00 USD session; returns its PaymentIntent."""
    session = make_session()
    fake_stripe.pay(session.id)
    return client.v1.payment_intents.retrieve(client.v1.checkout.sessions.retrieve(session.id).payment_intent)


def test_partial_then_full_refund_and_the_cap(fake_stripe, client, paid, hooked):
    first = client.v1.refunds.create(
        params={"payment_intent": paid.id, "amount": 300, "reason": "requested_by_customer"}
    )
    assert first.id.startswith("re_")
    assert (first.status, first.amount, first.charge, first.payment_intent) == (
        "succeeded",
        300,
        paid.latest_charge,
        paid.id,
    )

    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.refunds.create(params={"payment_intent": paid.id, "amount": 701})
    assert (exc.value.http_status, exc.value.code, exc.value.param) == (400, "amount_too_large", "amount")
    assert "$7.00" in exc.value.user_message

    rest = client.v1.refunds.create(params={"charge": paid.latest_charge})  # no amount: what is left
    assert rest.amount == 700
    charge = client.v1.charges.retrieve(paid.latest_charge, params={"expand": ["refunds"]})
    assert (charge.amount_refunded, charge.refunded) == (1000, True)
    assert {r.id for r in charge.refunds.data} == {first.id, rest.id}

    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.refunds.create(params={"payment_intent": paid.id, "amount": 1})
    assert exc.value.code == "charge_already_refunded"

    listed = client.v1.refunds.list(params={"payment_intent": paid.id})
    assert [r.id for r in listed.data] == [rest.id, first.id]
    assert client.v1.refunds.retrieve(first.id).amount == 300

    fake_stripe.wait_for_deliveries()
    refunded = [e for e in hooked.events(WH) if e.type == "charge.refunded"]
    assert [e.data.object.amount_refunded for e in refunded] == [300, 1000]
    assert [e.data.previous_attributes.amount_refunded for e in refunded] == [0, 300]
    assert [len(e.data.object.refunds.data) for e in refunded] == [1, 2]
    assert [e.data.object.metadata["pack"] for e in refunded] == ["small", "small"]
    assert [e.type for e in hooked.events(WH)].count("refund.created") == 2


def test_refund_of_unpaid_payment_intent_is_refused(fake_stripe, client, make_session):
    session = make_session()
    fake_stripe.pay_later(session.id, delay=-1)
    pi_id = client.v1.checkout.sessions.retrieve(session.id).payment_intent
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.refunds.create(params={"payment_intent": pi_id})
    assert exc.value.code == "charge_not_refundable"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.refunds.create(params={})
    assert "payment_intent or charge" in exc.value.user_message


def test_dashboard_refund_that_fails_later(fake_stripe, client, paid, hooked):
    refund = fake_stripe.refund(paid.id, 400)
    assert refund["status"] == "succeeded"
    failed = fake_stripe.fail_refund(refund["id"])
    assert (failed["status"], failed["failure_reason"]) == ("failed", "expired_or_canceled_card")
    charge = client.v1.charges.retrieve(paid.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (0, False)  # the money came back

    fake_stripe.wait_for_deliveries()
    types = [e.type for e in hooked.events(WH)]
    assert types == [
        "refund.created",
        "charge.refunded",
        "refund.updated",
        "charge.refund.updated",
        "refund.failed",
    ]
    failed_event = hooked.events(WH)[-1]
    assert failed_event.data.object.id == refund["id"]
    assert failed_event.request.id is None  # not an API request
    with pytest.raises(FakeStripeError):
        fake_stripe.fail_refund(refund["id"])


def test_pending_refund_succeeds_later(fake_stripe, paid, hooked):
    refund = fake_stripe.refund(paid.id, pending=True)
    assert (refund["status"], refund["amount"]) == ("pending", 1000)
    assert fake_stripe.succeed_refund(refund["id"])["status"] == "succeeded"
    fake_stripe.wait_for_deliveries()
    updated = [e for e in hooked.events(WH) if e.type == "refund.updated"]
    assert updated[0].data.previous_attributes.status == "pending"


@pytest.mark.parametrize("outcome", ["won", "lost"])
def test_dispute_lifecycle(fake_stripe, client, paid, hooked, outcome):
    dispute = fake_stripe.create_dispute(paid.latest_charge)
    assert dispute["id"].startswith("dp_")
    assert (dispute["status"], dispute["amount"], dispute["reason"]) == ("needs_response", 1000, "fraudulent")
    assert client.v1.charges.retrieve(paid.latest_charge).disputed is True
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.refunds.create(params={"payment_intent": paid.id})
    assert exc.value.code == "charge_disputed"
    with pytest.raises(FakeStripeError):
        fake_stripe.create_dispute(payment_intent=paid.id)

    closed = fake_stripe.close_dispute(dispute["id"], outcome)
    assert closed["status"] == outcome
    assert client.v1.disputes.retrieve(dispute["id"]).status == outcome
    with pytest.raises(FakeStripeError):
        fake_stripe.close_dispute(dispute["id"], "won")

    fake_stripe.wait_for_deliveries()
    events = hooked.events(WH)
    expected = ["charge.dispute.created", "charge.dispute.funds_withdrawn"]
    expected += ["charge.dispute.funds_reinstated"] if outcome == "won" else []
    assert [e.type for e in events] == [*expected, "charge.dispute.closed"]
    assert events[0].data.object.payment_intent == paid.id
    assert events[-1].data.object.status == outcome
    assert events[-1].data.previous_attributes.status == "needs_response"


def test_partial_dispute_after_partial_refund(fake_stripe, client, paid):
    client.v1.refunds.create(params={"payment_intent": paid.id, "amount": 600})
    with pytest.raises(FakeStripeError):
        fake_stripe.create_dispute(paid.latest_charge, amount=401)
    dispute = fake_stripe.create_dispute(payment_intent=paid.id, inquiry=True)
    assert (dispute["amount"], dispute["status"]) == (400, "warning_needs_response")
    assert fake_stripe.close_dispute(dispute["id"], "warning_closed")["status"] == "warning_closed"
    listed = client.v1.disputes.list(params={"charge": paid.latest_charge})
    assert [d.id for d in listed.data] == [dispute["id"]]
