"""Full purchases through the real pieces: our daphne server (Django view) → official stripe library →
fakes/stripe → its hosted page ("Pay", "Pay later", "Decline") → signed webhook over HTTP to our
server → Celery task → credits in the wallet."""

import re

import httpx
import pytest
from django.conf import settings
from django.test import Client

from billing.models import Purchase, Wallet
from tests.billing.factories import CreditPackFactory
from tests.live import start_celery_worker, start_daphne
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def stripe_env(fake, **extra) -> dict:
    return {
        "STRIPE_SECRET_KEY": fake.secret_key,
        "STRIPE_WEBHOOK_SECRET": fake.webhook_secret,
        "STRIPE_API_BASE": fake.api_base,
        **extra,
    }


@pytest.fixture(scope="module")
def billing_server(fake_stripe_server, django_db_blocker, tmp_path_factory):
    with django_db_blocker.unblock():
        server = start_daphne(tmp_path_factory.mktemp("billing-live"), **stripe_env(fake_stripe_server))
    yield server
    server.stop()


def browser_for(user, server) -> httpx.Client:
    """An HTTP client signed in as `user` on the live server (a real session row, a CSRF cookie)."""
    django_client = Client()
    django_client.force_login(user)
    browser = httpx.Client(base_url=server.url, timeout=20)
    browser.cookies.set(settings.SESSION_COOKIE_NAME, django_client.cookies[settings.SESSION_COOKIE_NAME].value)
    return browser


def buy(browser: httpx.Client, pack_key: str) -> tuple[Purchase, str]:
    page = browser.get("/billing/buy/")
    assert page.status_code == 200
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert found is not None, page.text
    token = found.group(1)
    response = browser.post("/billing/buy/", data={"pack": pack_key, "csrfmiddlewaretoken": token})
    assert response.status_code == 302, response.text
    purchase = Purchase.objects.get(checkout_url=response.headers["location"])
    return purchase, response.headers["location"]


def press(checkout_url: str, action: str) -> httpx.Response:
    """The customer presses a button on the fake's hosted checkout page."""
    page = httpx.get(checkout_url, timeout=10)
    assert page.status_code == 200 and 'value="pay"' in page.text.replace("value=pay", 'value="pay"')
    found = re.search(r'<form method=post action="([^"]+)"', page.text)
    assert found is not None, page.text
    action_path = found.group(1)
    return httpx.post(httpx.URL(checkout_url).join(action_path), data={"action": action, "email": "a@example.com"},
                      timeout=10)


def balance(user) -> int:
    wallet = Wallet.objects.filter(user=user).first()
    return wallet.balance if wallet else 0


@pytest.fixture
def live_pack(transactional_db):
    return CreditPackFactory(key="livepack", name="Live", credits=1500, price_cents=1200)


@pytest.fixture
def live_fake(fake_stripe, billing_server):
    fake_stripe.add_webhook(f"{billing_server.url}/billing/stripe/webhook/")
    return fake_stripe


def test_pay_on_the_hosted_page_credits_the_wallet_over_a_real_webhook(alice, live_pack, live_fake, billing_server):
    browser = browser_for(alice, billing_server)
    purchase, url = buy(browser, "livepack")
    assert url.startswith(live_fake.api_base)
    response = press(url, "pay")
    assert response.status_code in (200, 302, 303)
    wait_until(lambda: balance(alice) == 1500, timeout=20,
               what=lambda: "1,500 credits in the wallet; server log:\n" + billing_server.log()[-3000:])
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.PAID
    deliveries = live_fake.wait_for_deliveries()
    assert all(d["status"] == "succeeded" for d in deliveries)
    success = browser.get(f"/billing/success/?session_id={purchase.checkout_session_id}")
    assert "1,500 credits added." in success.text
    assert browser.get("/billing/wallet/").text.count("Bought 1,500 credits") == 1


def test_pay_later_success_and_failure(alice, live_pack, live_fake, billing_server):
    browser = browser_for(alice, billing_server)
    later, url = buy(browser, "livepack")
    press(url, "pay_later")
    failing, url2 = buy(browser, "livepack")
    press(url2, "pay_later_fail")
    wait_until(lambda: balance(alice) == 1500, timeout=20,
               what=lambda: "1,500 credits in the wallet; server log:\n" + billing_server.log()[-3000:])
    live_fake.wait_for_deliveries()
    later.refresh_from_db()
    failing.refresh_from_db()
    assert later.status == Purchase.Status.PAID
    assert failing.status == Purchase.Status.FAILED
    history = browser.get("/billing/purchases/").text
    # One note per failure: the failure's own reason, not the generic words beside it.
    assert history.count("The bank payment failed; nothing was charged.") == 1
    assert "The payment failed or was declined" not in history


def test_decline_grants_nothing_and_a_later_pay_does(alice, live_pack, live_fake, billing_server):
    browser = browser_for(alice, billing_server)
    purchase, url = buy(browser, "livepack")
    declined = press(url, "decline")
    assert "declined" in declined.text.lower()
    live_fake.wait_for_deliveries()
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.PENDING
    assert balance(alice) == 0
    press(url, "pay")
    wait_until(lambda: balance(alice) == 1500, timeout=20,
               what=lambda: "1,500 credits in the wallet; server log:\n" + billing_server.log()[-3000:])


def test_purchase_processed_by_a_real_celery_worker(alice, live_pack, fake_stripe, tmp_path, django_db_blocker):
    env = stripe_env(fake_stripe, CELERY_TASK_ALWAYS_EAGER="false", CELERY_BROKER_URL="filesystem://",
                     CELERY_DATA_DIR=str(tmp_path / "celery"))
    server = start_daphne(tmp_path, **env)
    worker = start_celery_worker(tmp_path, **env)
    try:
        fake_stripe.add_webhook(f"{server.url}/billing/stripe/webhook/")
        browser = browser_for(alice, server)
        purchase, url = buy(browser, "livepack")
        press(url, "pay")
        wait_until(lambda: balance(alice) == 1500, timeout=45, what=lambda: (
            "1,500 credits in the wallet; logs:\n" + server.log()[-2000:] + "\n---\n"
            + "".join(p.read_text() for p in tmp_path.glob("celery-*.log"))[-3000:]
        ))
        purchase.refresh_from_db()
        assert purchase.status == Purchase.Status.PAID
    finally:
        worker.terminate()
        worker.wait(timeout=10)
        server.stop()
