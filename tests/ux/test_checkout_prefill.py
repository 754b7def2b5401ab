"""Checkout knows who is paying: one Stripe Customer per user, reused, and the hosted page
prefilled with the user's email (issue 12, item 6)."""

import re

import httpx
import pytest

from billing.models import Wallet
from tests.billing.conftest import start_purchase

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore:Use .content=:DeprecationWarning")]


def test_the_hosted_checkout_page_is_prefilled_with_the_users_email(alice, stripe_settings, pack):
    purchase = start_purchase(alice)

    page = httpx.get(purchase.checkout_url).text

    assert re.search(r'<input id=email name=email type=email value="alice@example.com"', page)


def test_one_stripe_customer_per_user_is_reused(alice, bob, stripe_settings, pack):
    first, second = start_purchase(alice), start_purchase(alice)
    other = start_purchase(bob)

    sessions = [stripe_settings.get(p.checkout_session_id) for p in (first, second, other)]
    alice_customer = Wallet.objects.get(user=alice).stripe_customer_id
    assert alice_customer.startswith("cus_")
    assert [s["customer"] for s in sessions] == [alice_customer, alice_customer, Wallet.objects.get(user=bob).stripe_customer_id]
    assert sessions[2]["customer"] != alice_customer
    assert stripe_settings.get(alice_customer)["email"] == "alice@example.com"
