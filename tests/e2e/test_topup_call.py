"""A call kept alive by an auto top-up (issue 15, item 1): a real browser, the product (granian +
daphne), a real `supervise_calls` process, fakes/openai and fakes/stripe (signed webhooks to the
product). The structure of test_supervised_call.py's 15-credit partial-hold call, with auto top-up
on and a saved card: the hold takes the wallet below its threshold, the off-session top-up pays,
and when the 15 credits are used the supervisor grows the hold instead of cutting the call."""

from urllib.parse import urlparse

import pytest

from tests.e2e.test_supervised_call import USAGE
from tests.e2e.test_talk import explain, in_thread, make_caller, open_talk, wait_for_state
from tests.live import start_supervisor, start_web
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CREDITS = 15


@pytest.fixture
def shop(transactional_db, fake_openai, fake_stripe, tmp_path, settings):
    """The product with both fakes, the fake's webhooks sent to it, and a supervisor."""
    stripe_env = {"STRIPE_SECRET_KEY": fake_stripe.secret_key, "STRIPE_WEBHOOK_SECRET": fake_stripe.webhook_secret,
                  "STRIPE_API_BASE": fake_stripe.api_base}
    settings.STRIPE_SECRET_KEY = fake_stripe.secret_key
    settings.STRIPE_WEBHOOK_SECRET = fake_stripe.webhook_secret
    settings.STRIPE_API_BASE = fake_stripe.api_base
    server = start_web(tmp_path, OPENAI_BASE_URL=fake_openai.base_url, OPENAI_API_KEY=fake_openai.project_key,
                       **stripe_env)
    fake_stripe.add_webhook(f"{server.url}/billing/stripe/webhook/")
    supervisor = start_supervisor(tmp_path, server.env, "--owner", "e2e-topup", "--poll-seconds", "0.2",
                                  SUPERVISOR_WARN_FRACTION="0.5", SUPERVISOR_WARN_SECONDS="5")
    server.supervisor = supervisor
    yield server
    supervisor.stop()
    server.stop()


def save_visa(user, fake) -> None:
    """The user saves Visa 4242 on Stripe's setup page (the return page's path stores it)."""
    from billing.services import topups

    url = topups.start_card_setup(user=user, success_url="http://testserver/billing/auto-top-up/",
                                  cancel_url="http://testserver/billing/auto-top-up/")
    session_id = urlparse(url).path.rstrip("/").rsplit("/", 1)[-1]
    fake.pay(session_id, card="pm_card_visa")
    assert topups.save_card_from_setup(session_id=session_id) is not None


def test_a_top_up_that_pays_during_a_call_keeps_the_call_going(shop, fake_openai, fake_stripe, open_browser):
    from billing.models import CreditPack, Purchase, Wallet
    from billing.services import topups
    from sessions.models import Cause, RealtimeCall

    user, assistant = make_caller(credits=CREDITS)
    CreditPack.objects.update(active=False)
    pack = CreditPack.objects.create(key="topup", name="Top-up", credits=1000, price_cents=1000)
    save_visa(user, fake_stripe)
    topups.update_settings(user=user, settings=topups.TopUpSettings(
        enabled=True, threshold=10, pack=pack, monthly_limit=3, monthly_cap_cents=None, time_zone="UTC"))

    with open_browser() as page:
        try:
            open_talk(page, shop, user, assistant)
            page.get_by_test_id("start-call").click()
            wait_for_state(page, "listening")
            call_id = page.locator("[data-talk]").get_attribute("data-call-id")
            [upstream] = [c for c in fake_openai.calls() if c["state"] != "ended"]
            fake_openai.wait_for_call(upstream["id"], lambda c: c["sidebands"] >= 1, timeout=20)
            # 60 responses of 0.576 credits: about 35 credits, more than twice the first hold.
            fake_openai.script(upstream["id"], interval_ms=300, usage=USAGE, count=60)

            def used_or_over():
                call = RealtimeCall.objects.get(public_id=call_id)
                return call.credits_used > CREDITS + 5 or call.state != "active"

            wait_until(lambda: in_thread(used_or_over), timeout=60, interval=0.5,
                       what=lambda: "the call to use more than its first hold")
            still = page.get_by_test_id("call-state").inner_text()
            assert still == "listening", (
                f"the call ended at {CREDITS} credits: {page.locator('[data-talk]').get_attribute('data-end-reason')}")
            page.get_by_test_id("stop-call").click()
            wait_for_state(page, "ended")
            reason = page.locator("[data-talk]").get_attribute("data-end-reason")
            page.goto(shop.url + "/billing/wallet/")
            wallet_text = page.locator("body").inner_text()
        except Exception as error:
            raise AssertionError(
                f"{error}{explain(page, shop, fake_openai)}\n--- supervisor ---\n{shop.supervisor.log()[-4000:]}"
            ) from error

    call = RealtimeCall.objects.get(public_id=call_id)
    assert call.partial_hold
    assert still == "listening"
    assert call.end_reason != Cause.CREDITS_EXHAUSTED and reason != "credits_exhausted", (call.end_reason, reason)
    assert call.credits_held > CREDITS
    assert call.credits_charged == call.credits_used > CREDITS + 5
    [top_up] = Purchase.objects.filter(user=user, source=Purchase.Source.AUTO_TOP_UP)
    assert top_up.status == Purchase.Status.PAID and top_up.credits == 1000
    wallet = Wallet.objects.get(user=user)
    assert wallet.balance == CREDITS + 1000 - call.credits_charged
    assert wallet.held == 0
    assert "Bought 1,000 credits: Auto top-up: Top-up pack, $10.00" in wallet_text
    assert {"warning"} <= set(call.events.values_list("kind", flat=True))
    assert any("hold grew by" in e.detail for e in call.events.all())
