"""Checkout creation is throttled per user (DRF scope `checkout`): the API, the buy page's POST and
the success page (which calls Stripe) answer 429 with Retry-After once the rate is used up, and a
refused request creates no purchase."""

import pytest
from django.core.cache import cache

from billing.models import Purchase
from realtime_saas.throttles import CheckoutThrottle

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _two_checkouts_a_minute(monkeypatch):
    monkeypatch.setattr(CheckoutThrottle, "THROTTLE_RATES", {"checkout": "2/min"})
    cache.clear()
    yield
    cache.clear()


def test_the_api_refuses_the_third_checkout_a_minute_with_the_envelope(alice_client, stripe_settings, pack):
    for _ in range(2):
        assert alice_client.post("/api/billing/checkout/", {"pack": pack.key}, content_type="application/json").status_code == 201
    response = alice_client.post("/api/billing/checkout/", {"pack": pack.key}, content_type="application/json")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert int(response["Retry-After"]) > 0
    assert Purchase.objects.count() == 2


def test_the_buy_page_refuses_the_third_checkout_a_minute(alice_client, stripe_settings, pack):
    for _ in range(2):
        assert alice_client.post("/billing/buy/", {"pack": pack.key}).status_code == 302
    response = alice_client.post("/billing/buy/", {"pack": pack.key})
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert Purchase.objects.count() == 2
    assert alice_client.get("/billing/buy/").status_code == 200  # looking at the packs is not limited


def test_the_success_page_is_throttled_too(alice_client, stripe_settings, pack):
    alice_client.post("/billing/buy/", {"pack": pack.key})
    session_id = Purchase.objects.get().checkout_session_id
    assert alice_client.get(f"/billing/success/?session_id={session_id}").status_code == 200
    response = alice_client.get(f"/billing/success/?session_id={session_id}")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0


def test_one_users_checkouts_do_not_use_up_anothers(alice_client, bob, stripe_settings, pack, client):
    for _ in range(2):
        alice_client.post("/api/billing/checkout/", {"pack": pack.key}, content_type="application/json")
    alice_client.force_login(bob)
    assert alice_client.post("/api/billing/checkout/", {"pack": pack.key}, content_type="application/json").status_code == 201
