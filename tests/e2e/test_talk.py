"""A real browser talks to an assistant: sign in, Talk, Start, hear the greeting, Stop, History."""

import re

import pytest
from django.urls import reverse

from tests.factories import DEFAULT_PASSWORD, UserFactory
from tests.live import start_daphne

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def product(transactional_db, fake_openai, tmp_path):
    """The product in daphne, its OpenAI being the fake (with a real aiortc WebRTC peer)."""
    server = start_daphne(
        tmp_path, OPENAI_BASE_URL=fake_openai.base_url, OPENAI_API_KEY=fake_openai.project_key
    )
    yield server
    server.stop()


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
    log = "\n".join(page.console_log[-40:])
    fake_log = fake.log_path.read_text(errors="replace")[-4000:] if fake.log_path else ""
    return (
        f"\n--- browser console ---\n{log}\n--- daphne ---\n{server.log()[-6000:]}\n--- fake ---\n{fake_log}"
    )


def test_talk_start_hear_stop_and_find_it_in_history(product, fake_openai, open_browser):
    from billing.services import grant
    from sessions.models import Assistant, RealtimeCall

    ensure_price("gpt-realtime")
    assistant = Assistant.objects.create(name="Browser buddy", model="gpt-realtime", max_call_seconds=120)
    user = UserFactory(email="dora@example.com", name="Dora")
    grant(user=user, credits=100_000, idempotency_key="e2e-grant", kind="bonus")

    with open_browser() as page:
        try:
            page.goto(product.url + reverse("account_login"))
            page.fill("input[name=login]", user.email)
            page.fill("input[name=password]", DEFAULT_PASSWORD)
            page.locator("form button[type=submit], form input[type=submit]").last.click()
            page.wait_for_url(re.compile(r"/dashboard/$"))

            page.get_by_role("link", name="Talk", exact=True).click()
            page.wait_for_selector("[data-talk][data-ready=true]")
            page.get_by_test_id("assistant-select").select_option(str(assistant.pk))
            page.get_by_test_id("start-call").click()

            state = page.get_by_test_id("call-state")
            state.filter(has_text=re.compile(r"^connected$")).wait_for()
            line = page.get_by_test_id("transcript").locator("[data-testid=transcript-line]").first
            line.wait_for()
            page.wait_for_function(
                "document.querySelector('[data-testid=transcript-line] .text').textContent.trim().length > 0"
            )
            transcript = line.inner_text()
            call_id = page.locator("[data-talk]").get_attribute("data-call-id")
            assert call_id
            assert page.get_by_test_id("credits-held").inner_text() not in ("", "–")
            assert re.fullmatch(r"\d+:\d\d", page.get_by_test_id("time-left").inner_text())
            page.wait_for_timeout(1200)  # a call long enough to have a visible duration

            page.get_by_test_id("stop-call").click()
            state.filter(has_text=re.compile(r"^ended$")).wait_for()
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
