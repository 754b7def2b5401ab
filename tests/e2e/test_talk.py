"""A real browser talks to an assistant: sign in, Talk, Start, hear the greeting, Stop, History."""

import re

import pytest
from django.urls import reverse

from tests.e2e.conftest import console_log
from tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def ensure_price(model: str) -> None:
    # transactional_db empties every table after each test, the seeded price table included.
    from sessions.models import ModelPrice

    ModelPrice.objects.get_or_create(
        model=model,
        defaults={
            "text_in_microusd_per_mtok": 4_000_000,
            "text_cached_microusd_per_mtok": 400_000,
            "text_out_microusd_per_mtok": 16_000_000,
            "audio_in_microusd_per_mtok": 32_000_000,
            "audio_cached_microusd_per_mtok": 400_000,
            "audio_out_microusd_per_mtok": 64_000_000,
        },
    )


def explain(page, server, fake) -> str:
    log = "\n".join(console_log(page)[-40:])
    fake_log = fake.log_path.read_text(errors="replace")[-4000:] if fake.log_path else ""
    return (
        f"\n--- browser console ---\n{log}\n--- daphne ---\n{server.log()[-6000:]}\n--- fake ---\n{fake_log}"
    )


def make_caller(*, credits: int):
    """An assistant, and a verified user with `credits` (made before the browser opens)."""
    from billing.services import grant
    from sessions.models import Assistant

    ensure_price("gpt-realtime")
    assistant = Assistant.objects.create(name="Browser buddy", model="gpt-realtime", max_call_seconds=120)
    user = UserFactory.create(email="dora@example.com", name="Dora")
    if credits:
        grant(user=user, credits=credits, idempotency_key="e2e-grant", kind="bonus")
    return user, assistant


def open_talk(page, server, user, assistant) -> None:
    """Sign in through the real login page, then follow the nav to Talk and pick the assistant."""
    page.goto(server.url + reverse("account_login"))
    page.fill("input[name=login]", user.email)
    page.fill("input[name=password]", DEFAULT_PASSWORD)
    page.locator("form button[type=submit], form input[type=submit]").last.click()
    page.wait_for_url(re.compile(r"/dashboard/$"))
    page.get_by_role("link", name="Talk", exact=True).click()
    page.wait_for_selector("[data-talk][data-ready=true]")
    page.get_by_test_id("assistant-select").select_option(str(assistant.pk))


def wait_for_state(page, state: str) -> None:
    page.get_by_test_id("call-state").filter(has_text=re.compile(f"^{state}$")).wait_for()


def test_talk_start_hear_stop_and_find_it_in_history(live_product, fake_openai, open_browser):
    product = live_product
    from sessions.models import RealtimeCall

    user, assistant = make_caller(credits=100_000)

    with open_browser() as page:
        try:
            open_talk(page, product, user, assistant)
            page.get_by_test_id("start-call").click()

            wait_for_state(page, "listening")
            line = page.get_by_test_id("transcript").locator("[data-testid=transcript-line]").first
            line.wait_for()
            page.wait_for_function(
                "document.querySelector('[data-testid=transcript-line] .text').textContent.trim().length > 0"
            )
            transcript = line.inner_text()
            call_id = page.locator("[data-talk]").get_attribute("data-call-id")
            assert call_id
            # Figures come from the page's GET of the call (or a push): wait for them, don't race them.
            page.wait_for_function(
                "!['', '–'].includes(document.querySelector('[data-testid=credits-held]').textContent.trim())"
            )
            page.wait_for_function(
                "/^\\d+:\\d\\d$/.test(document.querySelector('[data-testid=time-left]').textContent.trim())"
            )
            page.wait_for_timeout(1200)  # a call long enough to have a visible duration

            page.get_by_test_id("stop-call").click()
            wait_for_state(page, "ended")
            ended_words = page.locator("[data-call-state-text]").inner_text()

            page.get_by_role("link", name="History", exact=True).click()
            row = page.locator(f"[data-testid=call-row][data-call-id='{call_id}']")
            row.wait_for()
            duration = row.get_by_test_id("call-row-duration").inner_text()
        except Exception as error:
            raise AssertionError(f"{error}{explain(page, product, fake_openai)}") from error

    assert "Assistant" in transcript
    assert ended_words == "You ended the call."
    assert re.fullmatch(r"\d+:\d\d", duration), duration
    assert duration != "0:00"

    call = RealtimeCall.objects.get(public_id=call_id)
    assert call.user == user
    assert call.state in ("ending", "ended")
    assert call.started_at is not None
    assert fake_openai.call(call.openai_call_id)["hangup_requests"]


def test_not_enough_credits_says_so_and_links_to_buy_credits(product, fake_openai, open_browser):
    from sessions.models import RealtimeCall

    user, assistant = make_caller(credits=0)

    with open_browser() as page:
        try:
            open_talk(page, product, user, assistant)
            # The page refuses first (Start disabled, the reason, a Buy link: tests/pages/); the
            # server's own refusal is what a stale page meets, so enable the button as one would be.
            refused_by_page = page.get_by_test_id("start-call").is_disabled()
            page.evaluate("document.querySelector('[data-testid=start-call]').disabled = false")
            page.get_by_test_id("start-call").click()
            wait_for_state(page, "failed")
            alert = page.get_by_test_id("call-alert")
            code = alert.get_attribute("data-code")
            text = alert.inner_text()
            has_link = page.get_by_test_id("buy-credits-link").count()
            start_enabled = page.get_by_test_id("start-call").is_enabled()
        except Exception as error:
            raise AssertionError(f"{error}{explain(page, product, fake_openai)}") from error

    assert refused_by_page
    assert code == "insufficient_credits"
    assert text.startswith("Not enough credits to start this call.")
    assert has_link == (1 if _url_exists("buy_credits") else 0)
    assert not start_enabled  # until credits arrive (the page follows the wallet)
    assert not RealtimeCall.objects.exists()
    assert fake_openai.calls() == []


def test_upstream_unavailable_says_so_and_charges_nothing(product, fake_openai, open_browser):
    from billing.services import available_credits

    user, assistant = make_caller(credits=100_000)
    fake_openai.fault("calls.create", status=429)

    with open_browser() as page:
        try:
            open_talk(page, product, user, assistant)
            page.get_by_test_id("start-call").click()
            wait_for_state(page, "failed")
            code = page.get_by_test_id("call-alert").get_attribute("data-code")
            text = page.get_by_test_id("call-alert").inner_text()
        except Exception as error:
            raise AssertionError(f"{error}{explain(page, product, fake_openai)}") from error

    assert code == "upstream_unavailable"
    assert "The voice service is unavailable right now; nothing was charged." in text
    assert available_credits(user) == 100_000


def test_call_ended_by_the_other_side_shows_why(live_product, fake_openai, open_browser):
    product = live_product
    from sessions.models import RealtimeCall

    user, assistant = make_caller(credits=100_000)

    with open_browser() as page:
        try:
            open_talk(page, product, user, assistant)
            page.get_by_test_id("start-call").click()
            wait_for_state(page, "listening")
            call_id = page.locator("[data-talk]").get_attribute("data-call-id")
            [upstream] = [c for c in fake_openai.calls() if c["state"] != "ended"]
            fake_openai.end_call(upstream["id"], reason="client_closed")
            wait_for_state(page, "ended")
            words = page.locator("[data-call-state-text]").inner_text()
            alert = page.get_by_test_id("call-alert").inner_text()
            stop_enabled = page.get_by_test_id("stop-call").is_enabled()
        except Exception as error:
            raise AssertionError(f"{error}{explain(page, product, fake_openai)}") from error

    assert words
    assert alert == words
    assert not stop_enabled
    # The page hangs up a call it can no longer hear, so nothing keeps running on credits.
    assert RealtimeCall.objects.get(public_id=call_id).state != "active"


def _url_exists(name: str) -> bool:
    from django.urls import NoReverseMatch

    try:
        reverse(name)
    except NoReverseMatch:
        return False
    return True


def in_thread(fn):
    """Run ORM code while the browser is open: Playwright's loop owns this thread, not that one."""
    import threading

    from django.db import connections

    outcome = {}

    def target():
        try:
            outcome["result"] = fn()
        except BaseException as error:  # re-raised in the test's thread
            outcome["error"] = error
        finally:
            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(30)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


def test_call_hung_up_by_staff_shows_the_reason(live_product, fake_openai, open_browser, staff):
    product = live_product
    from sessions.models import Cause, RealtimeCall
    from sessions.services import request_hangup

    user, assistant = make_caller(credits=100_000)

    with open_browser() as page:
        try:
            open_talk(page, product, user, assistant)
            page.get_by_test_id("start-call").click()
            wait_for_state(page, "listening")
            call_id = page.locator("[data-talk]").get_attribute("data-call-id")
            in_thread(
                lambda: request_hangup(
                    call=RealtimeCall.objects.get(public_id=call_id), cause=Cause.STAFF_HANGUP, actor=staff
                )
            )
            wait_for_state(page, "ended")
            words = page.locator("[data-call-state-text]").inner_text()
            reason = page.locator("[data-talk]").get_attribute("data-end-reason")
        except Exception as error:
            raise AssertionError(f"{error}{explain(page, product, fake_openai)}") from error

    assert reason == "staff_hangup"
    assert words == "The call was ended by our staff."
    assert RealtimeCall.objects.get(public_id=call_id).end_reason == "staff_hangup"
