"""The security and reliability checklist of shared/reference/stripe.md §6, items 1–19 (item 5's
real race is in test_concurrency.py). Events are the fake Stripe's own, posted signed to the
webhook view; every Stripe API call goes through the official library to fakes/stripe."""

import json
import logging
import time

import pytest
from celery.exceptions import Retry
from django.test import Client
from django.urls import reverse

from billing import services, tasks
from billing.exceptions import WalletBlocked
from billing.models import CreditPack, LedgerEntry, Purchase, StripeEvent, Wallet
from tests.billing.conftest import WEBHOOK_URL, make_event, post_event, sign, start_purchase

pytestmark = pytest.mark.django_db


def only(fake, event_type, session_or_object_id=None):
    events = [
        e for e in fake.events(type=event_type)
        if session_or_object_id is None or e["data"]["object"]["id"] == session_or_object_id
    ]
    assert events, f"the fake emitted no {event_type}"
    return events[-1]


def balance(user) -> int:
    return Wallet.objects.get(user=user).balance


def paid_purchase(user, fake, deliver) -> Purchase:
    purchase = start_purchase(user)
    fake.pay(purchase.checkout_session_id)
    deliver(only(fake, "checkout.session.completed", purchase.checkout_session_id))
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.PAID
    return purchase


def nothing_written():
    return not StripeEvent.objects.exists() and not LedgerEntry.objects.exists()


# --- signature and replay -------------------------------------------------------------------------


def test_item01_missing_wrong_tampered_or_v0_signature_is_400_and_writes_nothing(client, stripe_settings):
    event = make_event("checkout.session.completed", {"id": "cs_x", "object": "checkout.session"})
    body = json.dumps(event)
    good = sign(body, "whsec_fake")
    assert client.post(WEBHOOK_URL, data=body, content_type="application/json").status_code == 400
    assert post_event(client, event, secret="whsec_wrong").status_code == 400
    tampered = body.replace("cs_x", "cs_y")
    assert client.post(WEBHOOK_URL, data=tampered, content_type="application/json",
                       HTTP_STRIPE_SIGNATURE=good).status_code == 400
    v0_only = good.replace("v1=", "v0=")
    assert post_event(client, event, header=v0_only).status_code == 400
    assert nothing_written()


def test_item02_stale_timestamp_is_400_and_a_future_one_too(client, stripe_settings):
    event = make_event("checkout.session.completed", {"id": "cs_x", "object": "checkout.session"})
    assert post_event(client, event, timestamp=int(time.time()) - 301).status_code == 400
    # stripe-python accepts future timestamps; we refuse those beyond the same tolerance.
    assert post_event(client, event, timestamp=int(time.time()) + 3600).status_code == 400
    assert nothing_written()
    assert post_event(client, event, timestamp=int(time.time()) - 200).status_code == 200


def test_item03_replayed_and_resigned_deliveries_grant_once(client, alice, pack, stripe_settings,
                                                            django_capture_on_commit_callbacks):
    purchase = start_purchase(alice)
    stripe_settings.pay(purchase.checkout_session_id)
    event = only(stripe_settings, "checkout.session.completed")
    body = json.dumps(event)
    header = sign(body, "whsec_fake")
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(2):  # the exact same request twice
            response = client.post(WEBHOOK_URL, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)
            assert response.status_code == 200
        # Stripe's retry: same event id, fresh timestamp and signature
        assert post_event(client, event, timestamp=int(time.time()) + 1).status_code == 200
    assert LedgerEntry.objects.filter(kind="purchase").count() == 1
    assert balance(alice) == 1000
    row = StripeEvent.objects.get(event_id=event["id"])
    assert (row.status, row.deliveries, row.attempts) == ("processed", 3, 1)


def test_item04_two_v1_signatures_during_secret_rotation_verify(client, stripe_settings):
    event = make_event("customer.created", {"id": "cus_1", "object": "customer"})
    body = json.dumps(event)
    ts = int(time.time())
    old = sign(body, "whsec_old", ts).split("v1=")[1]
    header = sign(body, "whsec_fake", ts) + f",v1={old}"
    response = client.post(WEBHOOK_URL, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)
    assert response.status_code == 200


# --- idempotency and races ---------------------------------------------------------------------


def test_item05_webhook_and_success_page_for_the_same_session_grant_once(alice_client, alice, pack, stripe_settings,
                                                                         deliver):
    purchase = start_purchase(alice)
    stripe_settings.pay(purchase.checkout_session_id)
    page = alice_client.get(reverse("billing_success") + f"?session_id={purchase.checkout_session_id}")
    assert "1,000 credits added." in page.content.decode()
    deliver(only(stripe_settings, "checkout.session.completed"))
    assert LedgerEntry.objects.filter(kind="purchase").count() == 1
    assert balance(alice) == 1000


def test_item06_completed_then_async_payment_succeeded_grant_once(alice, pack, stripe_settings, deliver):
    purchase = start_purchase(alice)
    stripe_settings.pay_later(purchase.checkout_session_id, succeed=True, delay=-1)
    deliver(only(stripe_settings, "checkout.session.completed"))
    stripe_settings.settle(purchase.checkout_session_id, succeed=True)
    succeeded = only(stripe_settings, "checkout.session.async_payment_succeeded")
    deliver(succeeded)
    deliver(only(stripe_settings, "checkout.session.completed"))  # a late duplicate
    deliver(succeeded)
    assert LedgerEntry.objects.filter(kind="purchase").count() == 1
    assert balance(alice) == 1000


def test_item07_failed_fulfilment_leaves_no_processed_marker_and_a_retry_succeeds(client, alice, pack, stripe_settings,
                                                                                  deliver, staff,
                                                                                  django_capture_on_commit_callbacks):
    purchase = start_purchase(alice)
    stripe_settings.pay(purchase.checkout_session_id)
    event = only(stripe_settings, "checkout.session.completed")
    stripe_settings.fail_next(count=3, status=500, path="/v1/checkout/sessions")  # 1 try + 2 network retries
    # The task asks Celery for a retry (a worker waits the backoff; eager Celery raises it here).
    with pytest.raises(Retry), django_capture_on_commit_callbacks(execute=True):
        assert post_event(client, event).status_code == 200  # stored durably; processing is the task's job
    row = StripeEvent.objects.get(event_id=event["id"])
    assert row.status == "failed"
    assert "server error" in row.last_error
    assert row.processed_at is None
    assert not LedgerEntry.objects.exists()
    deliver(event)  # Stripe's redelivery of the same event re-enqueues it
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("processed", 2)
    assert balance(alice) == 1000
    # and the admin's "retry processing" is there for events that exhausted their retries
    with django_capture_on_commit_callbacks(execute=True):
        retried = services.retry_stripe_event(event=row, actor=staff, enqueue=tasks.process_stripe_event_task.delay)
        assert retried is False  # already processed


# --- ordering -------------------------------------------------------------------------------------


def test_item08_refund_before_completed_reaches_the_same_end_state(alice, bob, pack, stripe_settings, deliver):
    def ledger(user):
        return list(LedgerEntry.objects.filter(wallet__user=user).order_by("id").values_list("kind", "credits"))

    for user, refund_first in ((alice, False), (bob, True)):
        purchase = start_purchase(user)
        session = stripe_settings.pay(purchase.checkout_session_id)
        completed = only(stripe_settings, "checkout.session.completed", purchase.checkout_session_id)
        stripe_settings.refund(payment_intent=session["payment_intent"], amount=400)
        refunded = [e for e in stripe_settings.events(type="charge.refunded")
                    if e["data"]["object"]["payment_intent"] == session["payment_intent"]][-1]
        for event in ([refunded, completed] if refund_first else [completed, refunded]):
            deliver(event)
    assert ledger(alice) == ledger(bob) == [("purchase", 1000), ("refund", -400)]
    assert balance(alice) == balance(bob) == 600


def test_item09_unpaid_completion_then_failure_grants_nothing_and_success_grants(alice, pack, stripe_settings,
                                                                                 deliver):
    failing = start_purchase(alice)
    stripe_settings.pay_later(failing.checkout_session_id, succeed=False, delay=-1)
    deliver(only(stripe_settings, "checkout.session.completed", failing.checkout_session_id))
    failing.refresh_from_db()
    assert failing.status == Purchase.Status.PROCESSING
    assert not LedgerEntry.objects.exists()
    stripe_settings.settle(failing.checkout_session_id, succeed=False)
    deliver(only(stripe_settings, "checkout.session.async_payment_failed", failing.checkout_session_id))
    failing.refresh_from_db()
    assert failing.status == Purchase.Status.FAILED
    assert not LedgerEntry.objects.exists()

    succeeding = start_purchase(alice)
    stripe_settings.pay_later(succeeding.checkout_session_id, succeed=True, delay=-1)
    deliver(only(stripe_settings, "checkout.session.completed", succeeding.checkout_session_id))
    assert not LedgerEntry.objects.exists()
    stripe_settings.settle(succeeding.checkout_session_id, succeed=True)
    deliver(only(stripe_settings, "checkout.session.async_payment_succeeded", succeeding.checkout_session_id))
    succeeding.refresh_from_db()
    assert succeeding.status == Purchase.Status.PAID
    assert balance(alice) == 1000


def test_item10_expired_session_marks_the_purchase_expired_without_credits(alice, pack, stripe_settings, deliver):
    purchase = start_purchase(alice)
    stripe_settings.expire(purchase.checkout_session_id)
    deliver(only(stripe_settings, "checkout.session.expired"))
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.EXPIRED
    assert not LedgerEntry.objects.exists()


# --- refunds after credits are spent --------------------------------------------------------------


def test_item11_full_refund_after_spending_takes_the_balance_negative_and_blocks_calls(
    alice_client, alice, pack, stripe_settings, deliver
):
    purchase = paid_purchase(alice, stripe_settings, deliver)
    hold = services.place_hold(user=alice, credits=900, idempotency_key="call-1", reference="session:1")
    services.settle_hold(hold=hold, used_credits=800)
    stripe_settings.refund(payment_intent=purchase.payment_intent_id)
    deliver(only(stripe_settings, "charge.refunded"))
    refund = LedgerEntry.objects.get(kind="refund")
    assert refund.credits == -1000
    assert balance(alice) == -800
    with pytest.raises(WalletBlocked):
        services.place_hold(user=alice, credits=1, idempotency_key="call-2", reference="session:2")
    body = alice_client.get(reverse("billing_wallet")).content.decode()
    assert "Your balance is -800 credits after a refund or a payment dispute" in body
    assert "credits taken back because a payment was refunded" in body
    history = alice_client.get(reverse("billing_purchases")).content.decode()
    assert "Refunded in full; 1,000 credits taken back." in history


def test_item12_partial_refunds_debit_their_fraction_once_and_a_failed_refund_gives_back(
    alice, pack, stripe_settings, deliver
):
    purchase = paid_purchase(alice, stripe_settings, deliver)
    pi = purchase.payment_intent_id
    stripe_settings.refund(payment_intent=pi, amount=300)
    stripe_settings.refund(payment_intent=pi, amount=200)
    for event_type in ("charge.refunded", "refund.created"):
        for event in stripe_settings.events(type=event_type):
            deliver(event)
            deliver(event)
    assert sorted(LedgerEntry.objects.filter(kind="refund").values_list("credits", flat=True)) == [-300, -200]
    assert balance(alice) == 500
    pending = stripe_settings.refund(payment_intent=pi, amount=100, pending=True)
    deliver(only(stripe_settings, "refund.created", pending["id"]))
    assert balance(alice) == 400
    stripe_settings.fail_refund(pending["id"])
    deliver(only(stripe_settings, "refund.failed", pending["id"]))
    deliver(only(stripe_settings, "refund.created", pending["id"]))  # a stale copy afterwards changes nothing
    assert LedgerEntry.objects.get(kind="refund_reversal").credits == 100
    assert balance(alice) == 500
    purchase.refresh_from_db()
    assert (purchase.refunded_amount_cents, purchase.refunded_credits) == (500, 500)


def test_item13_a_refund_is_applied_to_the_buyer_wallet_only(alice, bob, pack, stripe_settings, deliver):
    services.grant(user=alice, credits=50, idempotency_key="alice-bonus", kind="bonus")
    bobs = paid_purchase(bob, stripe_settings, deliver)
    stripe_settings.refund(payment_intent=bobs.payment_intent_id, amount=500)
    event = only(stripe_settings, "charge.refunded")
    # Data a customer could influence (metadata, email) names alice; the mapping ignores it.
    event["data"]["object"]["metadata"] = {"user_id": str(alice.pk), "purchase_id": "nope"}
    event["data"]["object"]["billing_details"]["email"] = alice.email
    deliver(event)
    assert balance(alice) == 50
    assert balance(bob) == 500
    stranger = make_event("charge.refunded", {"id": "ch_x", "object": "charge", "payment_intent": "pi_unknown",
                                              "refunds": {"data": [{"id": "re_x", "amount": 100, "status": "succeeded",
                                                                    "payment_intent": "pi_unknown"}]}})
    deliver(stranger)  # its PaymentIntent is unknown to Stripe and to us: ignored, not failed
    assert StripeEvent.objects.get(event_id=stranger["id"]).note == "no purchase matched"
    assert balance(alice) == 50 and balance(bob) == 500


# --- disputes -------------------------------------------------------------------------------------


def test_item14_dispute_claws_back_and_blocks_won_gives_back_lost_keeps(alice, bob, pack, stripe_settings, deliver):
    won = paid_purchase(alice, stripe_settings, deliver)
    charge = stripe_settings.get(won.payment_intent_id)["latest_charge"]
    dispute = stripe_settings.create_dispute(charge if isinstance(charge, str) else charge["id"])
    created = only(stripe_settings, "charge.dispute.created")
    deliver(created)
    deliver(created)
    assert balance(alice) == 0
    with pytest.raises(WalletBlocked, match="disputed"):
        services.place_hold(user=alice, credits=1, idempotency_key="h", reference="s")
    stripe_settings.close_dispute(dispute["id"], status="won")
    closed = only(stripe_settings, "charge.dispute.closed")
    deliver(closed)
    deliver(closed)
    assert balance(alice) == 1000
    assert services.place_hold(user=alice, credits=1, idempotency_key="h", reference="s").credits == 1

    lost = paid_purchase(bob, stripe_settings, deliver)
    dispute = stripe_settings.create_dispute(payment_intent=lost.payment_intent_id)
    stripe_settings.close_dispute(dispute["id"], status="lost")
    # closed arrives before created: same end state
    deliver(only(stripe_settings, "charge.dispute.closed", dispute["id"]))
    deliver(only(stripe_settings, "charge.dispute.created", dispute["id"]))
    assert balance(bob) == 0
    assert Wallet.objects.get(user=bob).open_disputes == 0
    assert LedgerEntry.objects.filter(wallet__user=bob, kind="dispute").count() == 1
    assert not LedgerEntry.objects.filter(wallet__user=bob, kind="dispute_won").exists()


# --- amount tampering and authorisation -----------------------------------------------------------


def test_item15_checkout_takes_only_a_pack_key_and_sends_the_server_price(alice_client, alice, pack, stripe_settings):
    response = alice_client.post(
        reverse("buy_credits"), {"pack": "testpack", "amount": "1", "price": "1", "credits": "999999", "quantity": "50"}
    )
    assert response.status_code == 302
    purchase = Purchase.objects.get()
    assert response["Location"] == purchase.checkout_url
    session = stripe_settings.get(purchase.checkout_session_id, expand=["line_items"])
    item = session["line_items"]["data"][0]
    assert (item["quantity"], item["price"]["unit_amount"], session["amount_total"]) == (1, 1000, 1000)
    assert session["client_reference_id"] == str(alice.pk)
    assert session["metadata"]["purchase_id"] == str(purchase.public_id)
    assert stripe_settings.get(session["payment_intent"])["metadata"]["purchase_id"] == str(purchase.public_id) \
        if session.get("payment_intent") else True
    assert (purchase.credits, purchase.amount_cents) == (1000, 1000)
    unknown = alice_client.post(reverse("buy_credits"), {"pack": "../standard", "amount": "1"})
    assert unknown.status_code == 302 and unknown["Location"] == reverse("buy_credits")
    assert Purchase.objects.count() == 1


def test_item15_api_checkout_ignores_posted_amounts(alice_client, pack, stripe_settings):
    response = alice_client.post(
        "/api/billing/checkout/", {"pack": "testpack", "amount_cents": 1, "credits": 10**6, "quantity": 9},
        content_type="application/json",
    )
    assert response.status_code == 201
    purchase = Purchase.objects.get()
    assert (purchase.credits, purchase.amount_cents) == (1000, 1000)
    bad = alice_client.post("/api/billing/checkout/", {"pack": "nope"}, content_type="application/json")
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_request"
    assert "nope" in bad.json()["error"]["field_errors"]["pack"][0]


def test_item16_a_session_not_matching_its_pack_is_refused(alice, pack, stripe_settings, deliver, caplog):
    purchase = start_purchase(alice)
    # A session made elsewhere for 50 cents whose metadata claims our purchase and a million credits
    forged = stripe_settings.client().v1.checkout.sessions.create(params={
        "mode": "payment", "client_reference_id": str(alice.pk),
        "line_items": [{"price_data": {"currency": "usd", "unit_amount": 50, "product_data": {"name": "x"}},
                        "quantity": 1}],
        "metadata": {"purchase_id": str(purchase.public_id), "credits": "1000000"},
        "success_url": "http://testserver/ok",
    })
    Purchase.objects.filter(pk=purchase.pk).update(checkout_session_id=forged.id)
    stripe_settings.pay(forged.id)
    with caplog.at_level(logging.ERROR, logger="billing.services"):
        deliver(only(stripe_settings, "checkout.session.completed"))
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.REJECTED
    assert "amount_subtotal 50 is not 1000" in purchase.failure_reason
    assert "refusing checkout session" in caplog.text
    assert not LedgerEntry.objects.exists()


def test_item16_a_pack_with_a_stripe_price_needs_that_price(alice, stripe_settings, deliver):
    client = stripe_settings.client()
    product = client.v1.products.create(params={"name": "Priced"})
    price = client.v1.prices.create(params={"currency": "usd", "unit_amount": 700, "product": product.id})
    other = client.v1.prices.create(params={"currency": "usd", "unit_amount": 700, "product": product.id})
    CreditPack.objects.create(key="priced", name="Priced", credits=700, price_cents=700, stripe_price_id=price.id)
    good = start_purchase(alice, "priced")
    stripe_settings.pay(good.checkout_session_id)
    assert services.fulfil_checkout(session_id=good.checkout_session_id).status == Purchase.Status.PAID
    CreditPack.objects.filter(key="priced").update(stripe_price_id=other.id)
    bad = start_purchase(alice, "priced")
    CreditPack.objects.filter(key="priced").update(stripe_price_id=price.id)
    stripe_settings.pay(bad.checkout_session_id)
    assert services.fulfil_checkout(session_id=bad.checkout_session_id).status == Purchase.Status.REJECTED
    assert balance(alice) == 700


def test_item17_success_page_with_someone_elses_session_shows_and_grants_nothing(client, alice, bob, pack,
                                                                                 stripe_settings):
    bobs = start_purchase(bob)
    stripe_settings.pay(bobs.checkout_session_id)
    client.force_login(alice)
    response = client.get(reverse("billing_success") + f"?session_id={bobs.checkout_session_id}")
    assert response.status_code == 404
    assert bobs.checkout_session_id not in response.content.decode()
    assert not LedgerEntry.objects.exists()
    other = client.get(reverse("billing_purchase_status", args=[bobs.public_id]))
    assert other.status_code == 404


def test_item18_webhook_is_post_only_and_csrf_exempt_other_views_keep_csrf_and_login(alice, pack, stripe_settings):
    csrf_client = Client(enforce_csrf_checks=True)
    assert csrf_client.get(WEBHOOK_URL).status_code == 405
    event = make_event("customer.created", {"id": "cus_1", "object": "customer"})
    assert post_event(csrf_client, event).status_code == 200  # no CSRF token needed, the HMAC is the check
    assert csrf_client.get(reverse("buy_credits")).status_code == 302  # to login
    assert csrf_client.post(reverse("buy_credits"), {"pack": "testpack"}).status_code == 403
    csrf_client.force_login(alice)
    assert csrf_client.post(reverse("buy_credits"), {"pack": "testpack"}).status_code == 403
    assert csrf_client.post("/api/billing/checkout/", {"pack": "testpack"}).status_code == 403
    assert not Purchase.objects.exists()


def test_item19_events_of_the_other_mode_are_ignored_and_keys_never_shown(alice_client, alice, pack,
                                                                          stripe_settings, deliver, caplog):
    purchase = start_purchase(alice)
    stripe_settings.pay(purchase.checkout_session_id)
    live = only(stripe_settings, "checkout.session.completed")
    live["livemode"] = True
    live["id"] = "evt_live_1"
    deliver(live)
    assert StripeEvent.objects.get(event_id="evt_live_1").status == "ignored"
    assert not LedgerEntry.objects.exists()
    with caplog.at_level(logging.DEBUG):
        pages = [
            alice_client.post(reverse("buy_credits"), {"pack": "testpack"}, follow=False),
            alice_client.get(reverse("buy_credits")),
            alice_client.get(reverse("billing_success") + f"?session_id={purchase.checkout_session_id}"),
            alice_client.get(reverse("billing_wallet")),
        ]
    for page in pages:
        assert stripe_settings.secret_key not in page.content.decode()
        assert stripe_settings.webhook_secret not in page.content.decode()
    assert stripe_settings.secret_key not in caplog.text
    assert stripe_settings.webhook_secret not in caplog.text
