import time

import pytest
import stripe

from fakes.stripe.pytest_plugin import start_fake_stripe, stop_fake_stripe
from fakes.stripe.webhooks import sign

pytestmark = pytest.mark.filterwarnings("ignore:Use .content=:DeprecationWarning")

WH = "whsec_fake"
PAID = [
    "payment_intent.created",
    "charge.succeeded",
    "payment_intent.succeeded",
    "checkout.session.completed",
]


def test_signatures_verify_with_construct_event_and_only_with_the_right_secret(
    fake_stripe, make_session, hooked
):
    fake_stripe.pay(make_session().id)
    fake_stripe.wait_for_deliveries()
    headers, body = hooked.requests[-1]
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    event = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], WH)
    assert event.type == "checkout.session.completed"
    t = int(headers["Stripe-Signature"].split(",")[0][2:])
    assert abs(t - time.time()) < 5
    assert headers["Stripe-Signature"] == sign(body, WH, t)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, headers["Stripe-Signature"], "whsec_other")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body.replace("paid", "unpaid"), headers["Stripe-Signature"], WH)


def test_webhook_endpoints_api_gives_each_endpoint_its_own_secret(
    fake_stripe, client, make_session, receiver
):
    endpoint = client.v1.webhook_endpoints.create(
        params={
            "url": receiver.url,
            "enabled_events": ["checkout.session.completed", "charge.*"],
            "api_version": stripe.api_version,
        }
    )
    assert endpoint.id.startswith("we_")
    assert endpoint.secret.startswith("whsec_") and endpoint.secret != WH
    assert "secret" not in client.v1.webhook_endpoints.retrieve(endpoint.id)
    assert [e.id for e in client.v1.webhook_endpoints.list().data] == [endpoint.id]

    fake_stripe.pay(make_session().id)
    fake_stripe.wait_for_deliveries()
    assert [e.type for e in receiver.events(endpoint.secret)] == [
        "charge.succeeded",
        "checkout.session.completed",
    ]

    client.v1.webhook_endpoints.update(endpoint.id, params={"disabled": True})
    fake_stripe.pay(make_session().id)
    fake_stripe.wait_for_deliveries()
    assert len(receiver.requests) == 2

    deleted = client.v1.webhook_endpoints.delete(endpoint.id)
    assert deleted.deleted is True
    assert client.v1.webhook_endpoints.list().data == []


def test_duplicates_send_every_event_twice_with_fresh_signatures(fake_stripe, make_session, hooked):
    fake_stripe.set_delivery_mode(duplicates=True)
    fake_stripe.pay(make_session().id)
    fake_stripe.wait_for_deliveries()
    events = hooked.events(WH)
    assert len(events) == 2 * len(PAID)
    ids = [e.id for e in events]
    assert all(ids.count(i) == 2 for i in ids)
    assert {d["copy"] for d in fake_stripe.deliveries()} == {0, 1}


def test_out_of_order_reverses_each_actions_events(fake_stripe, make_session, hooked):
    fake_stripe.set_delivery_mode(out_of_order=True)
    fake_stripe.pay(make_session().id)
    fake_stripe.wait_for_deliveries()
    assert hooked.types() == PAID[::-1]


def test_held_deliveries_released_in_reverse_put_the_refund_before_the_purchase(
    fake_stripe, client, make_session, hooked
):
    fake_stripe.hold_deliveries()
    session = make_session()
    fake_stripe.pay(session.id)
    pi = client.v1.checkout.sessions.retrieve(session.id).payment_intent
    fake_stripe.refund(pi, 500)
    assert fake_stripe.wait_for_deliveries() and hooked.requests == []  # held ones do not count
    assert {d["status"] for d in fake_stripe.deliveries()} == {"held"}
    fake_stripe.release_deliveries("reverse")
    fake_stripe.wait_for_deliveries()
    types = hooked.types()
    assert types.index("charge.refunded") < types.index("checkout.session.completed")


def test_non_2xx_replies_are_retried_with_backoff_under_the_same_event_id(
    fake_stripe, make_session, receiver
):
    fake_stripe.add_webhook(receiver.url, enabled_events=["checkout.session.completed"])
    receiver.statuses = [500, 400]
    fake_stripe.pay(make_session().id)
    [first] = fake_stripe.wait_for_deliveries()
    assert [a["status"] for a in first["attempts"]] == [500, 400, 200]
    assert first["status"] == "succeeded"
    gaps = [b["at"] - a["at"] for a, b in zip(first["attempts"], first["attempts"][1:], strict=False)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1  # retry_base 0.05, factor 2 under the plugin
    assert [e.id for e in receiver.events(WH)] == [first["event"]] * 3
    # Each attempt is signed at its own time (equal here only because the retries are fast).
    stamps = [int(h["Stripe-Signature"].split(",")[0][2:]) for h, _ in receiver.requests]
    assert stamps == sorted(stamps)


def test_gives_up_after_max_attempts_and_can_resend(fake_stripe, client, make_session, hooked):
    fake_stripe.configure(max_attempts=2, retry_base=0.01)
    hooked.statuses = [500] * 8
    fake_stripe.pay(make_session().id)
    deliveries = fake_stripe.wait_for_deliveries()
    assert {d["status"] for d in deliveries} == {"failed"}
    assert all(len(d["attempts"]) == 2 for d in deliveries)
    completed = next(d for d in deliveries if d["type"] == "checkout.session.completed")
    assert client.v1.events.retrieve(completed["event"]).pending_webhooks == 1

    fake_stripe.resend(completed["event"])
    fake_stripe.wait_for_deliveries()
    assert hooked.types()[-1] == "checkout.session.completed"
    assert client.v1.events.retrieve(completed["event"]).pending_webhooks == 0


def test_unreachable_endpoint_is_recorded_as_failed(fake_stripe, make_session):
    fake_stripe.configure(max_attempts=1)
    fake_stripe.add_webhook("http://127.0.0.1:9/nothing-listens-here")
    fake_stripe.pay(make_session().id)
    deliveries = fake_stripe.wait_for_deliveries()
    assert deliveries[0]["status"] == "failed"
    assert deliveries[0]["attempts"][0]["error"]


def test_reset_forgets_runtime_webhooks_and_switches(fake_stripe, make_session, hooked):
    fake_stripe.set_delivery_mode(duplicates=3, out_of_order=True)
    fake_stripe.reset()
    assert fake_stripe.configure()["duplicates"] == 1
    fake_stripe.pay(make_session().id)
    fake_stripe.wait_for_deliveries()
    assert hooked.requests == []
    assert fake_stripe.events() and fake_stripe.events()[-1]["type"] == "checkout.session.completed"


def test_command_line_webhook_flags(receiver):
    fake = start_fake_stripe(
        "--webhook",
        receiver.url,
        "--webhook-secret",
        "whsec_cli",
        "--log-level",
        "WARNING",
        secret_key="sk_test_cli",
        webhook_secret="whsec_cli",
    )
    try:
        client = fake.client()
        client.v1.customers.create(params={"email": "cli@example.com"})
        fake.wait_for_deliveries()
        [event] = receiver.events("whsec_cli")
        assert event.data.object.email == "cli@example.com"
        fake.reset()  # endpoints from the command line survive a reset
        client.v1.customers.create(params={"email": "again@example.com"})
        fake.wait_for_deliveries()
        assert len(receiver.requests) == 2
    finally:
        stop_fake_stripe(fake)
