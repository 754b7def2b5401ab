"""A taxed, discounted purchase end to end through the real pieces: our daphne server with
STRIPE_AUTOMATIC_TAX and STRIPE_ALLOW_PROMOTION_CODES on → fakes/stripe's hosted page (the buyer
types a promotion code, then pays) → every event signed over HTTP in Stripe's order (the
invoice's events before `checkout.session.completed`) → credits, the charge and the invoice's
links on the Purchases page."""

import re

import httpx
import pytest

from billing.models import Purchase
from tests.billing.factories import CreditPackFactory
from tests.billing.test_live_purchase import balance, browser_for, buy, stripe_env
from tests.live import start_daphne
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def taxing_server(fake_stripe_server, django_db_blocker, tmp_path_factory):
    with django_db_blocker.unblock():
        server = start_daphne(
            tmp_path_factory.mktemp("invoices-live"),
            **stripe_env(fake_stripe_server, STRIPE_AUTOMATIC_TAX="true", STRIPE_ALLOW_PROMOTION_CODES="true"),
        )
    yield server
    server.stop()


def test_a_taxed_purchase_with_a_code_typed_on_the_hosted_page(alice, fake_stripe, taxing_server):
    CreditPackFactory(key="livepack", name="Live", credits=1500, price_cents=1200)
    fake_stripe.configure(tax_rate_bps=1000)
    client = fake_stripe.client()
    coupon = client.v1.coupons.create(params={"amount_off": 200, "currency": "usd", "duration": "once"})
    client.v1.promotion_codes.create(params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "TWOOFF"})
    fake_stripe.add_webhook(f"{taxing_server.url}/billing/stripe/webhook/")
    browser = browser_for(alice, taxing_server)
    assert "$12.00 <span class=\"muted small\" data-testid=\"before-tax\">before tax</span>" in browser.get(
        "/billing/buy/").text

    purchase, url = buy(browser, "livepack")
    page = httpx.get(url, timeout=10).text
    action = re.search(r'<form method=post action="([^"]+)"', page)
    assert action is not None and "data-testid=promotion-code" in page
    target = httpx.URL(url).join(action.group(1))
    applied = httpx.post(target, data={"action": "apply", "promotion_code": "TWOOFF"}, timeout=10)
    assert applied.status_code == 200 and "$11.00" in applied.text  # 12 − 2 = 10, + 10% tax
    paid = httpx.post(target, data={"action": "pay", "promotion_code": "TWOOFF", "email": "a@example.com"},
                      timeout=10)
    assert paid.status_code in (200, 302, 303)

    wait_until(lambda: balance(alice) == 1500, timeout=20,
               what=lambda: "1,500 credits in the wallet; server log:\n" + taxing_server.log()[-3000:])
    deliveries = fake_stripe.wait_for_deliveries()
    assert all(d["status"] == "succeeded" for d in deliveries)
    types = [d["type"] for d in deliveries]
    assert types.index("invoice.finalized") < types.index("checkout.session.completed")
    purchase.refresh_from_db()
    assert (purchase.status, purchase.subtotal_cents, purchase.discount_cents, purchase.tax_cents,
            purchase.amount_cents) == (Purchase.Status.PAID, 1200, 200, 100, 1100)
    wait_until(lambda: Purchase.objects.get(pk=purchase.pk).invoice_pdf != "", timeout=10, what="the invoice links")
    purchase.refresh_from_db()
    history = browser.get("/billing/purchases/").text
    assert "$11.00" in history and "$12.00 − $2.00 discount + $1.00 tax" in history
    assert f'href="{purchase.invoice_url}"' in history and f'href="{purchase.invoice_pdf}"' in history
    assert httpx.get(purchase.invoice_pdf, timeout=10).content.startswith(b"%PDF-")
    assert browser.get("/billing/wallet/").text.count("Bought 1,500 credits") == 1
