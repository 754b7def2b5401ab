"""A call the server cuts off: a real browser, the product in daphne and a real `supervise_calls`
process, against fakes/openai. With a small balance the hold is partial: the page says what the
credits cover before the start, the call runs until its credits are used (not a worst-case clock),
the page says so, and History and the receipt show what the call cost."""

import os
import re

import pytest

from tests.e2e.test_talk import explain, make_caller, open_talk, wait_for_state
from tests.live import start_supervisor

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# 60 audio-out tokens at $64 per million = $0.00384, × 1.5 markup × 100 credits/$ = 0.576 credits.
USAGE = {
    "total_tokens": 60, "input_tokens": 0, "output_tokens": 60,
    "input_token_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0, "cached_tokens": 0,
                            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0}},
    "output_token_details": {"text_tokens": 0, "audio_tokens": 60},
}
CREDITS = 15


@pytest.fixture
def supervisor_process(product, tmp_path):
    """`manage.py supervise_calls` with the live server's environment (same database, same fake).
    It warns at half the hold (and not for time: the call may last 28 s), so the page has time to
    show the credits warning before the cut-off."""
    process = start_supervisor(tmp_path, product.env, "--owner", "e2e-sup", "--poll-seconds", "0.2",
                               SUPERVISOR_WARN_FRACTION="0.5", SUPERVISOR_WARN_SECONDS="5")
    yield process
    process.stop()


def test_credits_run_out_the_server_cuts_the_call_and_history_shows_the_cost(
    product, supervisor_process, fake_openai, open_browser
):
    from sessions.models import CallState, Cause, RealtimeCall
    from sessions.rates import credit_rates
    from tests.supervisor.helpers import credits_from_fake_usage

    # 15 credits are far less than this assistant's 2 minutes at the worst-case rate: a partial hold.
    user, assistant = make_caller(credits=CREDITS)
    rates = credit_rates([assistant])[assistant.pk]
    low, high = CREDITS / rates.worst_per_minute, min(CREDITS / rates.typical_per_minute, 2)

    with open_browser() as page:
        try:
            open_talk(page, product, user, assistant)
            coverage = page.get_by_test_id("coverage").inner_text()
            page.get_by_test_id("start-call").click()
            wait_for_state(page, "listening")
            started = page.evaluate("performance.now()")
            call_id = page.locator("[data-talk]").get_attribute("data-call-id")
            # The figures come from the page's first GET of the call, which may land after `listening`.
            page.wait_for_function(
                f"document.querySelector('[data-testid=credits-held]').textContent.trim() === '{CREDITS}'"
            )
            [upstream] = [c for c in fake_openai.calls() if c["state"] != "ended"]
            fake_openai.wait_for_call(upstream["id"], lambda c: c["sidebands"] >= 1, timeout=20)

            fake_openai.script(upstream["id"], interval_ms=1000, usage=USAGE, count=60)

            warning = page.get_by_test_id("call-warning")
            warning.wait_for(state="visible")
            warning_text = warning.inner_text()
            page.wait_for_function(
                "Number(document.querySelector('[data-testid=tokens]').textContent.replace(/\\D/g, '')) >= 200"
            )
            if os.environ.get("REDIS_URL"):  # the supervisor's live pushes reach daphne through Redis
                page.wait_for_function(
                    f"/^\\d+ of {CREDITS}$/.test(document.querySelector('[data-testid=credits-used]').textContent)"
                )

            wait_for_state(page, "ended")
            lasted = (page.evaluate("performance.now()") - started) / 1000
            words = page.locator("[data-call-state-text]").inner_text()
            alert = page.get_by_test_id("call-alert").inner_text()
            reason = page.locator("[data-talk]").get_attribute("data-end-reason")
            warning_after = warning.is_visible()

            page.get_by_role("link", name="History", exact=True).click()
            row = page.locator(f"[data-testid=call-row][data-call-id='{call_id}']")
            row.wait_for()
            row_state = row.get_by_test_id("call-row-state").inner_text()
            row_text = row.inner_text()
            credits_cell = row.locator("td").nth(5).inner_text()

            row.get_by_role("link").first.click()
            page.get_by_test_id("receipt").wait_for()
            receipt_charged = page.get_by_test_id("receipt-charged").inner_text()
        except Exception as error:
            raise AssertionError(
                f"{error}{explain(page, product, fake_openai)}\n--- supervisor ---\n{supervisor_process.log()[-4000:]}"
            ) from error

    def minutes(value: float) -> str:
        return str(int(value)) if value >= 10 else f"{int(value * 10) / 10:g}"

    assert coverage == (f"Your {CREDITS} credits cover ≈ {minutes(low)}–{minutes(high)} min with this assistant"
                        + (" (a call lasts at most 2 min)." if high >= 2 else "."))

    call = RealtimeCall.objects.get(public_id=call_id)
    assert call.partial_hold and call.credits_held == CREDITS
    assert (call.state, call.end_reason) == (CallState.KILLED, Cause.CREDITS_EXHAUSTED)
    # Charged exactly what was metered, which is what fakes/openai reports (greeting included): the
    # supervisor lowered the output limit as the credits ran down, so nothing overshot the hold.
    expected = credits_from_fake_usage(fake_openai, upstream["id"], model=assistant.model,
                                       markup_percent=assistant.markup_percent)
    assert call.credits_charged == call.credits_used == expected <= CREDITS
    assert expected >= CREDITS - 1  # it ran until its credits were used
    # Not a worst-case clock: the old rule allowed 15 of 85 credits × 120 s = 21 s of call.
    assert lasted > CREDITS * 120 / 85
    assert (call.expected_end_at - call.started_at).total_seconds() == assistant.max_call_seconds

    assert warning_text == "Your credits for this call are nearly used up: it will end when they run out."
    assert not warning_after
    assert reason == "credits_exhausted"
    assert words == "Your credits for this call ran out, so it was ended."
    assert alert == words
    assert row_state == "Your credits ran out"
    assert "Your credits for this call ran out, so it was ended." in row_text
    assert re.fullmatch(rf"{expected}\s+charged", credits_cell), credits_cell
    assert receipt_charged == f"{expected} credits"
    # The timeline is on the staff call page now; the events are recorded all the same.
    assert {"sideband_attached", "warning", "hangup_sent"} <= set(call.events.values_list("kind", flat=True))
    assert fake_openai.call(upstream["id"])["hangup_requests"]
