import re

import pytest
from django.urls import reverse

from billing import services, tasks
from billing.models import LedgerEntry, Purchase, StripeEvent, Wallet
from tests.billing.conftest import make_event, start_purchase

pytestmark = pytest.mark.django_db


def test_admin_adjust_credits_asks_for_a_reason_and_records_the_staff_member(staff_client, staff, alice):
    wallet = services.get_wallet(alice)
    url = reverse("admin:billing_wallet_changelist")
    form = staff_client.post(url, {"action": "adjust_credits", "_selected_action": [wallet.pk]})
    assert form.status_code == 200
    assert "reason" in form.content.decode()
    missing = staff_client.post(url, {"action": "adjust_credits", "_selected_action": [wallet.pk], "apply": "1",
                                      "credits": "40", "reason": ""})
    assert missing.status_code == 200
    assert not LedgerEntry.objects.exists()
    token = re.search(r'name="form_token" value="([^"]+)"', form.content.decode()).group(1)
    done = staff_client.post(url, {"action": "adjust_credits", "_selected_action": [wallet.pk], "apply": "1",
                                   "credits": "40", "reason": "support ticket 12", "form_token": token}, follow=True)
    assert done.status_code == 200
    entry = LedgerEntry.objects.get()
    assert (entry.credits, entry.actor, entry.memo, entry.kind) == (40, staff, "support ticket 12", "adjustment")


def test_admin_ledger_is_read_only(staff_client, alice):
    entry = services.grant(user=alice, credits=5, idempotency_key="g", kind="bonus")
    assert staff_client.get(reverse("admin:billing_ledgerentry_changelist")).status_code == 200
    assert staff_client.get(reverse("admin:billing_ledgerentry_add")).status_code == 403
    assert staff_client.post(reverse("admin:billing_ledgerentry_delete", args=[entry.pk])).status_code == 403
    staff_client.post(reverse("admin:billing_ledgerentry_change", args=[entry.pk]), {"credits": "999"})
    assert LedgerEntry.objects.get().credits == 5


def test_admin_pages_render(staff_client, alice, pack, stripe_settings):
    start_purchase(alice)
    for name in ("creditpack", "wallet", "hold", "purchase", "stripeevent", "ledgerentry"):
        assert staff_client.get(reverse(f"admin:billing_{name}_changelist")).status_code == 200, name


def test_admin_retry_processing_reprocesses_a_failed_event(staff_client, alice, pack, stripe_settings,
                                                           django_capture_on_commit_callbacks):
    purchase = start_purchase(alice)
    stripe_settings.pay(purchase.checkout_session_id)
    event = stripe_settings.events(type="checkout.session.completed")[-1]
    row = StripeEvent.objects.create(event_id=event["id"], type=event["type"], payload=event, status="failed",
                                     last_error="boom")
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse("admin:billing_stripeevent_changelist"),
                                     {"action": "retry_processing", "_selected_action": [row.pk]}, follow=True)
    assert "Re-enqueued 1 event(s)" in response.content.decode()
    row.refresh_from_db()
    assert row.status == "processed"
    assert Wallet.objects.get(user=alice).balance == 1000


def test_unhandled_event_types_get_200_and_are_marked_ignored(deliver, stripe_settings):
    event = make_event("invoice.paid", {"id": "in_1", "object": "invoice"})
    assert deliver(event).status_code == 200
    assert StripeEvent.objects.get(event_id=event["id"]).status == "ignored"


def test_api_shows_only_the_users_own_wallet_ledger_and_purchases(alice_client, alice, bob):
    services.grant(user=alice, credits=10, idempotency_key="a", kind="bonus")
    services.grant(user=bob, credits=99, idempotency_key="b", kind="bonus")
    assert alice_client.get("/api/billing/wallet/").json() == {
        "balance": 10, "held": 0, "available": 10, "blocked_reason": ""}
    ledger = alice_client.get("/api/billing/ledger/").json()
    assert [e["credits"] for e in ledger["results"]] == [10]
    assert alice_client.get("/api/billing/purchases/").json()["results"] == []


def test_api_needs_authentication(client):
    assert client.get("/api/billing/wallet/").status_code == 403


def test_openapi_schema_has_the_billing_endpoints(staff_client):
    response = staff_client.get("/api/schema/")
    assert response.status_code == 200
    body = response.content.decode()
    for path in ("/api/billing/wallet/", "/api/billing/checkout/", "/api/billing/ledger/"):
        assert path in body


def test_reconcile_brings_a_purchase_whose_webhook_never_came_up_to_date(alice, pack, stripe_settings):
    purchase = start_purchase(alice)
    stripe_settings.pay(purchase.checkout_session_id)
    assert tasks.reconcile_purchases(older_than_seconds=0) == 1
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.PAID


def test_sweep_re_enqueues_events_no_task_finished(alice, pack, stripe_settings, django_capture_on_commit_callbacks):
    purchase = start_purchase(alice)
    stripe_settings.pay(purchase.checkout_session_id)
    event = stripe_settings.events(type="checkout.session.completed")[-1]
    row = StripeEvent.objects.create(event_id=event["id"], type=event["type"], payload=event, status="processing")
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sweep_stripe_events(stuck_after_seconds=-1) == 1
    row.refresh_from_db()
    assert row.status == "processed"
