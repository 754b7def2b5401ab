"""A call the server cuts off: a real browser, the product in daphne and a real `supervise_calls`
process, against fakes/openai. With a small balance the credits run out, the page says so, and
History and the receipt show what the call cost."""

import os
import re
import subprocess
import sys

import pytest

from tests.e2e.test_talk import explain, make_caller, open_talk, wait_for_state
from tests.live import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# 500 audio-out tokens at $64 per million = $0.032, × 1.5 markup × 100 credits/$ = 4.8 credits.
USAGE = {
    "total_tokens": 500, "input_tokens": 0, "output_tokens": 500,
    "input_token_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0, "cached_tokens": 0,
                            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0}},
    "output_token_details": {"text_tokens": 0, "audio_tokens": 500},
}


@pytest.fixture
def supervisor_process(product, tmp_path):
    """`manage.py supervise_calls` with the live server's environment (same database, same fake).
    It warns at half the hold (and not for time: the call may last 28 s), so the page has time to
    show the credits warning before the cut-off."""
    log_path = tmp_path / "supervisor.log"
    env = {**product.env, "SUPERVISOR_WARN_FRACTION": "0.5", "SUPERVISOR_WARN_SECONDS": "5"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "supervise_calls", "--owner", "e2e-sup", "--poll-seconds", "0.2"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    process.log = lambda: log_path.read_text(errors="replace")
    yield process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_credits_run_out_the_server_cuts_the_call_and_history_shows_the_cost(
    product, supervisor_process, fake_openai, open_browser
):
    from sessions.models import CallState, Cause, RealtimeCall

    # 20 credits buy 28 s of this assistant's worst case; the scripted usage spends them in ~7 s.
    user, assistant = make_caller(credits=20)

    with open_browser() as page:
        try:
            open_talk(page, product, user, assistant)
            page.get_by_test_id("start-call").click()
            wait_for_state(page, "connected")
            call_id = page.locator("[data-talk]").get_attribute("data-call-id")
            # The figures come from the page's first GET of the call, which may land after `connected`.
            page.wait_for_function(
                "document.querySelector('[data-testid=credits-held]').textContent.trim() === '20'"
            )
            [upstream] = [c for c in fake_openai.calls() if c["state"] != "ended"]
            fake_openai.wait_for_call(upstream["id"], lambda c: c["sidebands"] >= 1, timeout=20)

            fake_openai.script(upstream["id"], interval_ms=1500, usage=USAGE, count=10)

            warning = page.get_by_test_id("call-warning")
            warning.wait_for(state="visible")
            warning_text = warning.inner_text()
            page.wait_for_function(
                "Number(document.querySelector('[data-testid=tokens]').textContent.replace(/\\D/g, '')) >= 1000"
            )
            if os.environ.get("REDIS_URL"):  # the supervisor's live pushes reach daphne through Redis
                page.wait_for_function(
                    "/^\\d+ of 20$/.test(document.querySelector('[data-testid=credits-used]').textContent)"
                )

            wait_for_state(page, "ended")
            words = page.locator("[data-call-state-text]").inner_text()
            alert = page.get_by_test_id("call-alert").inner_text()
            reason = page.locator("[data-talk]").get_attribute("data-end-reason")
            warning_after = warning.is_visible()

            page.get_by_role("link", name="History", exact=True).click()
            row = page.locator(f"[data-testid=call-row][data-call-id='{call_id}']")
            row.wait_for()
            row_state = row.get_by_test_id("call-row-state").inner_text()
            row_text = row.inner_text()
            credits_cell = row.locator("td").nth(6).inner_text()

            row.get_by_role("link").first.click()
            page.get_by_test_id("receipt").wait_for()
            receipt_charged = page.get_by_test_id("receipt-charged").inner_text()
            timeline_kinds = page.locator("[data-testid=call-timeline] li").evaluate_all(
                "items => items.map(li => li.dataset.kind)"
            )
        except Exception as error:
            raise AssertionError(
                f"{error}{explain(page, product, fake_openai)}\n--- supervisor ---\n{supervisor_process.log()[-4000:]}"
            ) from error

    call = RealtimeCall.objects.get(public_id=call_id)
    assert (call.state, call.end_reason) == (CallState.KILLED, Cause.CREDITS_EXHAUSTED)
    assert call.credits_used >= 20
    # The whole balance was held; the last response's overshoot could not be collected.
    assert call.credits_charged == 20

    assert warning_text == "Your credits for this call are nearly used up: it will end when they run out."
    assert not warning_after
    assert reason == "credits_exhausted"
    assert words == "Your credits for this call ran out, so it was ended."
    assert alert == words
    assert row_state == "killed"
    assert "Your credits for this call ran out, so it was ended." in row_text
    assert re.fullmatch(r"20\s+charged", credits_cell), credits_cell
    assert receipt_charged == "20 credits"
    assert {"sideband_attached", "warning", "hangup_sent"} <= set(timeline_kinds)
    assert fake_openai.call(upstream["id"])["hangup_requests"]
