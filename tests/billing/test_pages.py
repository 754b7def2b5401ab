import pytest
from django.urls import reverse

from billing import services
from billing.models import LedgerEntry, Purchase
from tests.billing.conftest import start_purchase

pytestmark = pytest.mark.django_db

Kind = LedgerEntry.Kind


def test_dashboard_shows_the_wallet_panel(alice_client, alice):
    services.grant(user=alice, credits=1234, idempotency_key="g", kind=Kind.BONUS, memo="welcome")
    response = alice_client.get(reverse("dashboard"))
    assert response.status_code == 200
    assert "Received 1,234 bonus credits: welcome" in response.content.decode()


def test_nav_balance_shows_available_credits(alice_client, alice):
    services.grant(user=alice, credits=500, idempotency_key="g", kind=Kind.BONUS)
    services.place_hold(user=alice, credits=200, idempotency_key="h", reference="session:1")
    response = alice_client.get(reverse("billing_wallet"))
    assert response.context["nav_balance"] == 300
    assert '<span data-live-balance>300</span> credits' in response.content.decode()


def test_nav_balance_is_none_when_signed_out(client):
    response = client.get(reverse("home"))
    assert response.context["nav_balance"] is None


def test_buy_page_lists_active_packs_only(alice_client, pack):
    pack.__class__.objects.create(key="hidden", name="Hidden", credits=1, price_cents=100, active=False)
    response = alice_client.get(reverse("buy_credits"))
    body = response.content.decode()
    assert response.status_code == 200
    assert 'data-pack="testpack"' in body
    assert 'data-pack="hidden"' not in body


def test_pages_need_login(client):
    for name in ("buy_credits", "billing_wallet", "billing_purchases", "billing_success"):
        response = client.get(reverse(name))
        assert response.status_code == 302
        assert "/accounts/login/" in response["Location"]


def test_wallet_page_explains_each_entry_and_paginates(alice_client, alice, staff):
    for i in range(30):
        services.grant(user=alice, credits=10, idempotency_key=f"g{i}", kind=Kind.BONUS)
    services.adjust(user=alice, credits=-5, actor=staff, reason="duplicate bonus", idempotency_key="adj:1")
    first = alice_client.get(reverse("billing_wallet")).content.decode()
    assert "Staff removed 5 credits: duplicate bonus" in first
    assert "Page 1 of 2" in first
    second = alice_client.get(reverse("billing_wallet") + "?page=2").content.decode()
    assert second.count("Received 10 bonus credits") == 6


def test_negative_balance_page_says_why_new_calls_are_blocked(alice_client, alice):
    services.grant(user=alice, credits=100, idempotency_key="g", kind=Kind.PURCHASE)
    services.clawback(user=alice, credits=300, idempotency_key="c", kind=Kind.REFUND, reference="purchase:x")
    for name in ("billing_wallet", "buy_credits"):
        body = alice_client.get(reverse(name)).content.decode()
        assert "Your balance is -200 credits after a refund or a payment dispute" in body
        assert "before starting new calls" in body


def test_purchase_history_lists_own_purchases_with_status(alice_client, alice, bob, pack, stripe_settings):
    mine = start_purchase(alice)
    start_purchase(bob)
    Purchase.objects.filter(pk=mine.pk).update(status=Purchase.Status.FAILED)
    body = alice_client.get(reverse("billing_purchases")).content.decode()
    assert body.count("data-purchase=") == 1
    assert "The payment failed or was declined; nothing was charged." in body
