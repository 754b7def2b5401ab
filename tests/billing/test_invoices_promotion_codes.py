"""Stripe promotion codes at checkout (STRIPE_ALLOW_PROMOTION_CODES, issue 15, item 4): a code
lowers what is charged, never the credits; the discount is stored and shown, refunds measure
against what was charged. Coupons and codes are made at fakes/stripe through the stripe library,
as staff make them in the Dashboard; the buyer types the code on the hosted page."""

import httpx
import pytest
from django.core import mail
from django.urls import reverse

from billing.models import Purchase
from tests.billing.conftest import balance, only, start_purchase

pytestmark = pytest.mark.django_db




@pytest.fixture
def codes(settings, stripe_settings):
    """STRIPE_ALLOW_PROMOTION_CODES on, and a code SPRING25 for 25% off at Stripe."""
    settings.STRIPE_ALLOW_PROMOTION_CODES = True
    client = stripe_settings.client()
    coupon = client.v1.coupons.create(params={"percent_off": 25, "duration": "once"})
    client.v1.promotion_codes.create(params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "SPRING25"})
    return stripe_settings


def pay_on_the_hosted_page(checkout_url: str, code: str) -> None:
    """The buyer types the code on Stripe's page, applies it, then pays."""
    page = httpx.get(checkout_url, timeout=10)
    assert page.status_code == 200 and 'name=promotion_code data-testid=promotion-code' in page.text
    applied = httpx.post(checkout_url, data={"action": "apply", "promotion_code": code}, timeout=10)
    assert applied.status_code == 200, applied.text
    paid = httpx.post(checkout_url, data={"action": "pay", "promotion_code": code, "email": "a@example.com"},
                      timeout=10)
    assert paid.status_code == 303, paid.text


def test_a_promotion_code_typed_at_checkout_gets_the_whole_pack_for_less(alice, alice_client, pack, codes, deliver):
    purchase = start_purchase(alice)
    assert codes.get(purchase.checkout_session_id)["allow_promotion_codes"] is True
    pay_on_the_hosted_page(purchase.checkout_url, "SPRING25")
    completed = only(codes, "checkout.session.completed", purchase.checkout_session_id)
    deliver(completed)
    deliver(completed)  # a replay changes nothing

    purchase.refresh_from_db()
    assert (purchase.status, purchase.credits, balance(alice)) == (Purchase.Status.PAID, 1000, 1000)
    assert (purchase.subtotal_cents, purchase.discount_cents, purchase.tax_cents, purchase.amount_cents) == (
        1000, 250, 0, 750)
    assert codes.get(purchase.invoice_id)["total"] == 750
    history = alice_client.get(reverse("billing_purchases")).content.decode()
    assert "$7.50" in history and "$10.00 − $2.50 discount" in history
    [receipt] = mail.outbox
    assert "Paid:      $7.50 ($10.00 − $2.50 discount)" in receipt.body
    api = alice_client.get("/api/billing/purchases/").json()["results"][0]
    assert (api["amount_cents"], api["subtotal_cents"], api["discount_cents"]) == (750, 1000, 250)


def test_a_code_and_tax_together_tax_on_the_discounted_price(settings, alice, alice_client, pack, codes, deliver):
    settings.STRIPE_AUTOMATIC_TAX = True
    codes.configure(tax_rate_bps=2000)
    purchase = start_purchase(alice)
    codes.pay(purchase.checkout_session_id, promotion_code="SPRING25")
    deliver(only(codes, "checkout.session.completed", purchase.checkout_session_id))
    purchase.refresh_from_db()
    # 1000 − 250 = 750; 20% tax on it: 150; charged 900.
    assert (purchase.status, balance(alice)) == (Purchase.Status.PAID, 1000)
    assert (purchase.subtotal_cents, purchase.discount_cents, purchase.tax_cents, purchase.amount_cents) == (
        1000, 250, 150, 900)
    assert "$10.00 − $2.50 discount + $1.50 tax" in alice_client.get(reverse("billing_purchases")).content.decode()


def test_a_full_refund_of_a_discounted_purchase_takes_back_all_its_credits(alice, pack, codes, deliver):
    purchase = start_purchase(alice)
    codes.pay(purchase.checkout_session_id, promotion_code="SPRING25")
    deliver(only(codes, "checkout.session.completed", purchase.checkout_session_id))
    purchase.refresh_from_db()
    codes.refund(purchase.payment_intent_id, amount=375)  # half of the 750 charged
    deliver(only(codes, "charge.refunded"))
    purchase.refresh_from_db()
    assert (purchase.refunded_amount_cents, purchase.refunded_credits, balance(alice)) == (375, 500, 500)
    codes.refund(purchase.payment_intent_id)  # the rest
    deliver(only(codes, "charge.refunded"))
    purchase.refresh_from_db()
    assert (purchase.refunded_amount_cents, purchase.refunded_credits, balance(alice)) == (750, 1000, 0)


def test_without_the_setting_the_page_has_no_code_field(alice, pack, stripe_settings):
    purchase = start_purchase(alice)
    assert not stripe_settings.get(purchase.checkout_session_id).get("allow_promotion_codes")
    assert "promotion_code" not in httpx.get(purchase.checkout_url, timeout=10).text
