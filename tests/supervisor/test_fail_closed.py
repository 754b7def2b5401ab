"""Issue 11 item 3: every path that stops watching a live call ends in a hangup OpenAI confirmed,
and a call is never settled as ended while nobody knows it ended."""

from sessions.models import CallEvent, CallState, Cause, RealtimeCall
from tests.supervisor.helpers import (
    credits_from_fake_usage,
    upstream_call,
    usage_for,
    watched_call,
)
from tests.waiting import wait_until

LEASE, GRACE = 3.0, 2.0  # tests/supervisor/helpers.FAST


def _final(call):
    def check():
        call.refresh_from_db()
        return call.state in (CallState.ENDED, CallState.KILLED, CallState.EXPIRED, CallState.FAILED)
    return check


def test_a_taken_over_call_gets_a_fresh_attach_grace_and_nothing_escapes(
    supervisor, openai_settings, assistant, alice
):
    """The repro of issue 11: calls older than the attach grace, watched by one supervisor that is
    killed; the sideband answers one 500 when the survivor first tries. The survivor must retry
    within a grace counted from its claim, not from the call's start, and re-attach every call."""
    fake = openai_settings
    rtcs = [upstream_call(fake, assistant) for _ in range(3)]
    calls = [watched_call(user=alice, assistant=assistant, openai_call_id=rtc, hold=500, started_ago=60)
             for rtc in rtcs]
    first = supervisor(owner="first")
    for rtc in rtcs:
        fake.wait_for_call(rtc, lambda c: c["sidebands"] >= 1, timeout=5)
        fake.response_done(rtc, usage_for(2))
    for call in calls:
        wait_until(lambda call=call: RealtimeCall.objects.get(pk=call.pk).credits_used == 2, what="metered")
    second = supervisor(owner="second")

    first.crash()
    fake.fault("sideband", 500, count=1)
    for rtc in rtcs:
        fake.drop_sidebands(rtc)
    # Within a lease and a grace, every call is watched again (or hung up): none runs unwatched.
    for rtc in rtcs:
        info = fake.wait_for_call(rtc, lambda c: c["sidebands"] >= 1 or c["state"] == "ended",
                                  timeout=LEASE + GRACE + 3)
        assert info["state"] != "ended", "re-attaching should have succeeded after one 500"
    assert second.supervisor.stats["claimed"] == 3

    for rtc in rtcs:
        fake.response_done(rtc, usage_for(3))
        fake.end_call(rtc)
    for call, rtc in zip(calls, rtcs, strict=True):
        wait_until(_final(call), what="settled")
        expected = credits_from_fake_usage(fake, rtc, model=assistant.model, markup_percent=0)
        assert expected == 5
        assert (call.state, call.end_reason, call.credits_charged) == (CallState.ENDED, Cause.CALL_CLOSED, expected)


def test_a_call_whose_sideband_cannot_be_reattached_is_hung_up_before_it_is_settled(
    supervisor, openai_settings, assistant, alice
):
    fake = openai_settings
    rtc = upstream_call(fake, assistant)
    call = watched_call(user=alice, assistant=assistant, openai_call_id=rtc, hold=50)
    supervisor()
    fake.wait_for_call(rtc, lambda c: c["sidebands"] >= 1, timeout=5)
    fake.response_done(rtc, usage_for(4))
    wait_until(lambda: RealtimeCall.objects.get(pk=call.pk).credits_used == 4, what="metered")

    fake.fault("sideband", 500, count=1000)  # OpenAI's sideband is down; the call itself is not
    fake.drop_sidebands(rtc)
    info = fake.wait_for_call(rtc, lambda c: c["state"] == "ended", timeout=GRACE + 5)
    assert info["end_reason"] == "hangup" and info["hangup_requests"]
    wait_until(_final(call), what="settled")
    assert (call.state, call.end_reason, call.credits_charged) == (CallState.KILLED, Cause.NOT_WATCHED, 4)
    assert "could not be re-attached" in CallEvent.objects.get(call=call, kind=CallEvent.Kind.HANGUP_SENT).detail


def test_a_hangup_that_fails_is_retried_until_openai_confirms_and_only_then_settled(
    supervisor, openai_settings, assistant, alice
):
    fake = openai_settings
    rtc = upstream_call(fake, assistant)
    call = watched_call(user=alice, assistant=assistant, openai_call_id=rtc, hold=5)
    sup = supervisor()
    fake.wait_for_call(rtc, lambda c: c["sidebands"] >= 1, timeout=5)

    fake.fault("calls.hangup", 500, count=4)
    fake.response_done(rtc, usage_for(5))  # exhausted: hang up
    wait_until(lambda: RealtimeCall.objects.get(pk=call.pk).state == CallState.ENDING, what="ending")
    assert fake.call(rtc)["state"] != "ended"
    assert RealtimeCall.objects.get(pk=call.pk).credits_charged is None  # not settled while it may run

    fake.wait_for_call(rtc, lambda c: c["state"] == "ended", timeout=10)  # the fifth request went through
    wait_until(_final(call), what="settled")
    assert (call.state, call.end_reason, call.credits_charged) == (CallState.KILLED, Cause.CREDITS_EXHAUSTED, 5)
    kinds = list(CallEvent.objects.filter(call=call, kind__in=[CallEvent.Kind.HANGUP_FAILED,
                                                                CallEvent.Kind.HANGUP_SENT])
                 .order_by("at", "pk").values_list("kind", flat=True))
    assert kinds == [CallEvent.Kind.HANGUP_FAILED, CallEvent.Kind.HANGUP_SENT]
    assert sup.supervisor.stats["hangup_retries"] == 4
