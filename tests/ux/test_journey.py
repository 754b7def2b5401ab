"""A new user's whole journey in Chromium, at 1280 and 390 px: sign up → confirm (signed in by
the link) → buy → pay on fakes/stripe's checkout page (email prefilled) → talk → hang up → the
call's receipt → purchases. Every step goes through the navigation a person would use (at 390 px
through the menu button). The figures on these pages are asserted by tests/pages/."""

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.conftest import console_log
from tests.ux.site import WIDTHS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EMAIL = "erin@example.com"
PASSWORD = "a long pass phrase 9"


def in_thread(fn):
    """Run an ORM call beside Playwright's event loop (Django refuses ORM calls inside it)."""
    from django.db import connections

    def run():
        try:
            return fn()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def confirmation_path(email: str) -> str:
    from allauth.account.models import EmailAddress, EmailConfirmationHMAC

    key = EmailConfirmationHMAC(EmailAddress.objects.get(email=email)).key
    return f"/accounts/confirm-email/{key}/"


@pytest.fixture
def journey_server(transactional_db, fake_openai, fake_stripe, tmp_path):
    """daphne with fakes/openai and fakes/stripe (its webhook pointed at us), and a supervisor."""
    from billing.models import CreditPack
    from sessions.models import Assistant
    from tests.e2e.test_talk import ensure_price
    from tests.live import start_daphne, start_supervisor

    ensure_price("gpt-realtime")
    Assistant.objects.create(name="Concierge", model="gpt-realtime", max_call_seconds=120)
    CreditPack.objects.update_or_create(
        key="starter", defaults={"name": "Starter", "credits": 100_000, "price_cents": 1000, "currency": "usd",
                                 "active": True}
    )
    server = start_daphne(
        tmp_path, OPENAI_BASE_URL=fake_openai.base_url, OPENAI_API_KEY=fake_openai.project_key,
        STRIPE_SECRET_KEY=fake_stripe.secret_key, STRIPE_WEBHOOK_SECRET=fake_stripe.webhook_secret,
        STRIPE_API_BASE=fake_stripe.api_base,
    )
    fake_stripe.add_webhook(f"{server.url}/billing/stripe/webhook/")
    supervisor = start_supervisor(tmp_path, server.env, "--owner", "ux-journey", "--poll-seconds", "0.2")
    yield server
    supervisor.stop()
    server.stop()


def follow_nav(page, name: str) -> None:
    """Click a navigation link as a person would: through the menu button on a narrow screen."""
    toggle = page.locator("button.nav-toggle")
    if toggle.is_visible() and toggle.get_attribute("aria-expanded") != "true":
        toggle.click()
    page.locator("#site-nav").get_by_role("link", name=name, exact=True).click()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_sign_up_confirm_buy_pay_talk_hang_up_receipt_purchases(journey_server, fake_openai, fake_stripe,
                                                                 open_browser, width):
    server = journey_server
    w, h = WIDTHS[width]
    with open_browser() as page:
        try:
            page.set_viewport_size({"width": w, "height": h})
            # Sign up.
            page.goto(server.url + "/")
            follow_nav(page, "Sign up")
            page.get_by_label("Email").fill(EMAIL)
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_label("Password (again)").fill(PASSWORD)
            page.get_by_role("button", name="Sign up").click()
            page.wait_for_url(re.compile(r"/accounts/confirm-email/$"))

            # Confirm: the link signs in.
            page.goto(server.url + in_thread(lambda: confirmation_path(EMAIL)))
            page.wait_for_url(re.compile(r"/dashboard/$"))
            assert page.locator("#site-nav").get_by_role("button", name="Sign out", include_hidden=True).count() == 1

            # Buy, then pay on the hosted checkout page, which knows the email.
            follow_nav(page, "Buy credits")
            page.locator("form[data-pack=starter]").get_by_role("button").click()
            page.wait_for_url(re.compile("^" + re.escape(fake_stripe.api_base) + "/c/pay/"))
            assert page.locator("input#email").input_value() == EMAIL
            page.locator("#pay").click()
            page.wait_for_url(re.compile(r"/billing/success/\?session_id="))
            page.get_by_test_id("purchase-status").filter(has_text="Paid").wait_for()

            # Talk, then hang up.
            follow_nav(page, "Talk")
            page.wait_for_selector("[data-talk][data-ready=true]")
            page.get_by_test_id("assistant-select").select_option(label="Concierge")
            page.get_by_test_id("start-call").click()
            page.get_by_test_id("call-state").filter(has_text=re.compile("^listening$")).wait_for()
            call_id = page.locator("[data-talk]").get_attribute("data-call-id")
            page.get_by_test_id("stop-call").click()
            page.get_by_test_id("call-state").filter(has_text=re.compile("^ended$")).wait_for()

            # The call's receipt, from the history.
            follow_nav(page, "History")
            page.locator(f"[data-testid=call-row][data-call-id='{call_id}']").get_by_role("link").click()
            page.wait_for_url(re.compile(rf"/calls/{call_id}/$"))
            receipt = page.locator("main").inner_text()

            # The purchase, from the wallet.
            follow_nav(page, "Wallet")
            page.get_by_role("link", name="Purchases").first.click()
            page.wait_for_url(re.compile(r"/billing/purchases/$"))
            purchase_row = page.get_by_test_id("purchases").locator("tbody tr").first.inner_text()
        except Exception as error:
            log = "\n".join(console_log(page)[-30:])
            raise AssertionError(f"{error}\n--- console ---\n{log}\n--- daphne ---\n{server.log()[-5000:]}") from error

    assert "Concierge" in receipt
    assert "Paid" in purchase_row and "Starter" in purchase_row
    from allauth.account.models import EmailAddress

    assert EmailAddress.objects.get(email=EMAIL).verified
