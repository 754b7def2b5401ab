"""Saved cards through stripe-python: PaymentMethods, SetupIntents and off-session PaymentIntents."""

import pytest
import stripe

pytestmark = pytest.mark.filterwarnings("ignore:Use .content=:DeprecationWarning")


@pytest.fixture
def customer(client):
    return client.v1.customers.create(params={"email": "alice@example.com"})


def save_card(client, customer, token="pm_card_visa"):
    pm = client.v1.payment_methods.attach(token, params={"customer": customer.id})
    client.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": pm.id}})
    return pm


def test_a_test_token_attaches_as_a_new_card_that_becomes_the_default(fake_stripe, client, customer, hooked):
    pm = save_card(client, customer)
    again = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    assert pm.id.startswith("pm_") and again.id != pm.id
    assert (pm.type, pm.customer, pm.card.brand, pm.card.last4) == ("card", customer.id, "visa", "4242")
    assert (pm.card.exp_month, pm.card.exp_year) == (12, 2034)
    assert pm.card.fingerprint == again.card.fingerprint
    assert client.v1.customers.retrieve(customer.id).invoice_settings.default_payment_method == pm.id

    listed = client.v1.customers.payment_methods.list(customer.id, params={"type": "card"})
    assert {p.id for p in listed.data} == {pm.id, again.id}
    assert {p.id for p in client.v1.payment_methods.list(params={"customer": customer.id}).data} == {
        pm.id,
        again.id,
    }
    assert client.v1.payment_methods.retrieve(pm.id).customer == customer.id

    detached = client.v1.payment_methods.detach(pm.id)
    assert detached.customer is None
    # A detached card stops being the default for invoices.
    assert client.v1.customers.retrieve(customer.id).invoice_settings.default_payment_method is None
    fake_stripe.wait_for_deliveries()
    types = hooked.types()
    assert types.count("payment_method.attached") == 2
    assert types[-2:] == ["customer.updated", "payment_method.detached"]
    detach_event = hooked.events("whsec_fake")[-1]
    assert detach_event.data.previous_attributes.customer == customer.id


def test_the_default_card_must_belong_to_the_customer(fake_stripe, client, customer):
    other = client.v1.customers.create(params={"email": "bob@example.com"})
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": other.id})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.customers.update(
            customer.id, params={"invoice_settings": {"default_payment_method": pm.id}}
        )
    assert exc.value.param == "invoice_settings[default_payment_method]"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_methods.attach(pm.id, params={"customer": customer.id})
    assert exc.value.code == "payment_method_unexpected_state"
    # `payment_method` on create attaches the card to the new customer.
    created = client.v1.customers.create(params={"payment_method": "pm_card_visa"})
    assert [p.card.last4 for p in client.v1.customers.payment_methods.list(created.id).data] == ["4242"]


def test_a_card_that_is_always_declined_cannot_be_saved(fake_stripe, client, customer):
    with pytest.raises(stripe.CardError) as exc:
        client.v1.payment_methods.attach("pm_card_chargeDeclined", params={"customer": customer.id})
    assert exc.value.code == "card_declined"
    assert client.v1.customers.payment_methods.list(customer.id).data == []


def test_off_session_payment_with_a_saved_card_succeeds(fake_stripe, client, customer, hooked):
    pm = save_card(client, customer)
    params = {
        "amount": 2500,
        "currency": "usd",
        "customer": customer.id,
        "payment_method": pm.id,
        "off_session": True,
        "confirm": True,
        "metadata": {"user_id": "42", "kind": "auto_topup"},
        "description": "Automatic top-up",
        "receipt_email": "alice@example.com",
        "payment_method_types": ["card"],
    }
    pi = client.v1.payment_intents.create(params=params, options={"idempotency_key": "topup:1"})
    assert (pi.status, pi.amount_received, pi.payment_method) == ("succeeded", 2500, pm.id)
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.metadata.to_dict() == {"user_id": "42", "kind": "auto_topup"}
    assert charge.payment_method_details.card.last4 == "4242"
    # The same request again (a retry after a lost answer): Stripe replays the first PaymentIntent.
    again = client.v1.payment_intents.create(params=dict(params), options={"idempotency_key": "topup:1"})
    assert again.id == pi.id
    fake_stripe.wait_for_deliveries()
    assert hooked.types()[-3:] == ["payment_intent.created", "charge.succeeded", "payment_intent.succeeded"]

    # The top-up can be refunded and disputed like a Checkout payment, and maps back by metadata.
    refund = client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 500})
    assert refund.status == "succeeded"
    dispute = fake_stripe.create_dispute(payment_intent=pi.id)
    assert dispute["amount"] == 2000
    fake_stripe.wait_for_deliveries()
    events = hooked.events("whsec_fake")
    refunded = next(e for e in events if e.type == "charge.refunded")
    assert refunded.data.object.metadata.kind == "auto_topup"


@pytest.mark.parametrize("token", ["pm_card_chargeCustomerFail", "pm_card_chargeDeclined"])
def test_a_declined_off_session_payment_raises_card_error_with_the_payment_intent(
    fake_stripe, client, customer, hooked, token
):
    if token == "pm_card_chargeDeclined":
        pm_id = token  # cannot be attached; charged straight from the token
        params_customer = {}
    else:
        pm_id = save_card(client, customer, token).id
        params_customer = {"customer": customer.id}
    with pytest.raises(stripe.CardError) as exc:
        client.v1.payment_intents.create(
            params={
                "amount": 2500,
                "currency": "usd",
                **params_customer,
                "payment_method": pm_id,
                "off_session": True,
                "confirm": True,
                "metadata": {"user_id": "42"},
            }
        )
    err = exc.value
    assert (err.http_status, err.code, err.error.decline_code) == (402, "card_declined", "generic_decline")
    pi = err.error.payment_intent
    assert pi.status == "requires_payment_method"
    assert pi.last_payment_error.code == "card_declined"
    assert client.v1.payment_intents.retrieve(pi.id).status == "requires_payment_method"
    assert client.v1.charges.retrieve(err.error.charge).status == "failed"
    fake_stripe.wait_for_deliveries()
    assert hooked.types()[-3:] == ["payment_intent.created", "charge.failed", "payment_intent.payment_failed"]

    canceled = client.v1.payment_intents.cancel(pi.id, params={"cancellation_reason": "abandoned"})
    assert canceled.status == "canceled"
    with pytest.raises(stripe.InvalidRequestError) as cancel_again:
        client.v1.payment_intents.cancel(pi.id)
    assert cancel_again.value.code == "payment_intent_unexpected_state"


def test_a_card_needing_authentication_fails_off_session_and_asks_on_session(
    fake_stripe, client, customer, hooked
):
    pm = save_card(client, customer, "pm_card_authenticationRequired")
    with pytest.raises(stripe.CardError) as exc:
        client.v1.payment_intents.create(
            params={
                "amount": 2500,
                "currency": "usd",
                "customer": customer.id,
                "payment_method": pm.id,
                "off_session": True,
                "confirm": True,
            }
        )
    assert exc.value.code == "authentication_required"
    pi = exc.value.error.payment_intent
    assert pi.status == "requires_payment_method"
    fake_stripe.wait_for_deliveries()
    assert hooked.types()[-2:] == ["payment_intent.created", "payment_intent.payment_failed"]

    # Back on-session, the customer is asked to authenticate, then the payment goes through.
    confirmed = client.v1.payment_intents.confirm(pi.id, params={"payment_method": pm.id})
    assert (confirmed.status, confirmed.next_action.type) == ("requires_action", "use_stripe_sdk")
    done = fake_stripe.authenticate(pi.id)
    assert done["status"] == "succeeded"


def test_payment_intent_metadata_update_and_validation(fake_stripe, client, customer):
    pi = client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd", "metadata": {"a": "1"}})
    assert pi.status == "requires_payment_method"
    updated = client.v1.payment_intents.update(pi.id, params={"metadata": {"b": "2", "a": ""}})
    assert updated.metadata.to_dict() == {"b": "2"}
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.create(params={"amount": 10, "currency": "usd"})
    assert exc.value.code == "amount_too_small"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd", "off_session": True})
    assert exc.value.param == "off_session"


def test_setup_intent_saves_a_card_or_asks_for_authentication(fake_stripe, client, customer, hooked):
    si = client.v1.setup_intents.create(
        params={
            "customer": customer.id,
            "payment_method": "pm_card_chargeCustomerFail",
            "confirm": True,
            "usage": "off_session",
            "payment_method_types": ["card"],
            "metadata": {"user_id": "42"},
        }
    )
    assert si.status == "succeeded"
    assert client.v1.payment_methods.retrieve(si.payment_method).customer == customer.id
    fake_stripe.wait_for_deliveries()
    assert hooked.types()[-3:] == [
        "setup_intent.created",
        "setup_intent.succeeded",
        "payment_method.attached",
    ]

    pending = client.v1.setup_intents.create(params={"customer": customer.id})
    assert pending.status == "requires_payment_method"
    needs = client.v1.setup_intents.confirm(
        pending.id, params={"payment_method": "pm_card_authenticationRequired"}
    )
    assert needs.status == "requires_action"
    assert client.v1.setup_intents.retrieve(pending.id).status == "requires_action"
    assert fake_stripe.authenticate(pending.id)["status"] == "succeeded"

    with pytest.raises(stripe.CardError) as exc:
        client.v1.setup_intents.create(
            params={"customer": customer.id, "payment_method": "pm_card_chargeDeclined", "confirm": True}
        )
    assert exc.value.error.setup_intent.status == "requires_payment_method"
