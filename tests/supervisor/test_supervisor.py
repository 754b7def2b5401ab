"""The call supervisor against fakes/openai headless calls: metering, enforcement, settlement."""

import threading
import time

from accounts.services import suspend_user
from billing.models import Hold, LedgerEntry
from sessions import services
from sessions.models import CallEvent, CallState, Cause, RealtimeCall, UsageRecord
from sessions.supervisor import store
from tests.factories import StaffFactory
from tests.supervisor.helpers import upstream_call, usage_for, watched_call
from tests.waiting import wait_until


def _attached(fake, call_id):
    return lambda: fake.call(call_id)["sidebands"] >= 1


def _final(call):
    def check():
        call.refresh_from_db()
        return call.state in (CallState.ENDED, CallState.KILLED, CallState.EXPIRED, CallState.FAILED)
    return check


def _usage_charges(call) -> int:
    return -sum(LedgerEntry.objects.filter(reference=f"realtime-call:{call.public_id}", kind="usage")
                .values_list("credits", flat=True))


def test_it_hangs_up_when_credits_run_out_and_charges_the_metered_usage(supervisor, openai_settings, assistant, alice):
    fake = openai_settings
    rtc = upstream_call(fake, assistant)
    call = watched_call(user=alice, assistant=assistant, openai_call_id=rtc, hold=5)
    supervisor()
    wait_until(_attached(fake, rtc), what="sideband attached")

    for _ in range(5):
        fake.response_done(rtc, usage_for(1))
    info = fake.wait_for_call(rtc, lambda c: c["state"] == "ended", timeout=3)

    # Hung up once, after the response that used the last credit (how fast: benchmarks/supervisor.py).
    assert len(info["hangup_requests"]) == 1
    assert info["hangup_requests"][0] >= info["response_done_log"][-1]["sent_at"]
    wait_until(_final(call), what="call settled")
    assert (call.state, call.end_reason) == (CallState.KILLED, Cause.CREDITS_EXHAUSTED)
    assert call.credits_used == 5 and call.credits_charged == 5
    assert UsageRecord.objects.filter(call=call).count() == 5
    assert _usage_charges(call) == 5
    assert Hold.objects.get(pk=call.hold_id).status == Hold.Status.SETTLED


def test_overshoot_of_the_last_response_is_charged_within_one_response(supervisor, openai_settings, assistant, alice):
    fake = openai_settings
    rtc = upstream_call(fake, assistant)
    call = watched_call(user=alice, assistant=assistant, openai_call_id=rtc, hold=5, balance=20)
    supervisor()
    wait_until(_attached(fake, rtc), what="sideband attached")

    fake.response_done(rtc, usage_for(3))
    fake.response_done(rtc, usage_for(3))  # 6 ≥ 5: exhausted, 1 credit over the hold
    fake.wait_for_call(rtc, lambda c: c["state"] == "ended", timeout=3)
    wait_until(_final(call), what="call settled")

    hold = Hold.objects.get(pk=call.hold_id)
    assert call.credits_used == 6 and call.credits_charged == 6
    assert hold.overshoot_credits == 1 <= 3  # bounded by one response
    assert _usage_charges(call) == 6


def test_it_hangs_up_at_the_expected_end_after_a_warning(supervisor, openai_settings, assistant, alice):
    fake = openai_settings
    rtc = upstream_call(fake, assistant)
    call = watched_call(user=alice, assistant=assistant, openai_call_id=rtc, hold=50, seconds=2)
    supervisor(warn_seconds=1.0)

    info = fake.wait_for_call(rtc, lambda c: c["state"] == "ended", timeout=6)
    wait_until(_final(call), what="call settled")
    assert (call.state, call.end_reason) == (CallState.KILLED, Cause.TIME_LIMIT)
    warning = wait_until(lambda: CallEvent.objects.filter(call=call, kind=store.EVENT_WARNING).first(),
                         what="warning")
    # Warned first, hung up at (not before) the expected end.
    assert warning.at.timestamp() <= call.expected_end_at.timestamp() <= info["hangup_requests"][0]
    assert call.credits_charged == 0


def test_staff_hangup_is_enforced_even_if_the_request_to_openai_failed(supervisor, openai_settings, assistant, alice):
    fake = openai_settings
    rtc = upstream_call(fake, assistant)
    call = watched_call(user=alice, assistant=assistant, openai_call_id=rtc, hold=50)
    supervisor()
    wait_until(_attached(fake, rtc), what="sideband attached")
    fake.response_done(rtc, usage_for(2))
    wait_until(lambda: RealtimeCall.objects.get(pk=call.pk).credits_used == 2, what="metered")

    fake.fault("calls.hangup", 500, count=3)  # the admin's own hangup (and its retries) fail
    pressed = time.time()
    services.request_hangup(call=call, cause=Cause.STAFF_HANGUP, actor=StaffFactory())

    info = fake.wait_for_call(rtc, lambda c: c["state"] == "ended", timeout=4)
    assert info["hangup_requests"][0] >= pressed  # the failed requests are not recorded: this is the supervisor's
    wait_until(_final(call), what="call settled")
    assert (call.state, call.end_reason, call.credits_charged) == (CallState.KILLED, Cause.STAFF_HANGUP, 2)


def test_suspending_the_user_hangs_up_their_call(supervisor, openai_settings, assistant, alice):
    fake = openai_settings
    rtc = upstream_call(fake, assistant)
    call = watched_call(user=alice, assistant=assistant, openai_call_id=rtc, hold=50)
    supervisor()
    wait_until(_attached(fake, rtc), what="sideband attached")

    suspended = time.time()
    suspend_user(user=alice, reason="abuse")
    info = fake.wait_for_call(rtc, lambda c: c["state"] == "ended", timeout=3)
    assert info["hangup_requests"][0] >= suspended
    wait_until(_final(call), what="call settled")
    assert (call.state, call.end_reason) == (CallState.KILLED, Cause.USER_SUSPENDED)


def test_a_replayed_response_is_charged_once(transactional_db, assistant, alice):
    from django.utils import timezone

    from sessions.models import TokenCounts

    call = watched_call(user=alice, assistant=assistant, openai_call_id="rtc_replay_0001", hold=50)
    tokens = TokenCounts.from_usage(usage_for(2))
    row = store.UsageRow(pk=call.pk, response_id="resp_1", kind="response", tokens=tokens,
                         cost_microusd=20_000, at=timezone.now())  # 200 text-out tokens at 100 µ$ each
    other = store.UsageRow(pk=call.pk, response_id="resp_2", kind="response", tokens=tokens,
                           cost_microusd=20_000, at=timezone.now())

    assert store.meter_batch(rows=[row]) == {call.pk: (2, 20_000)}
    # Replayed: alone, twice in one batch, and beside a new response (another supervisor, a re-attach).
    assert store.meter_batch(rows=[row]) == {call.pk: (2, 20_000)}
    assert store.meter_batch(rows=[row, row, other]) == {call.pk: (4, 40_000)}
    call.refresh_from_db()
    assert call.credits_used == 4 and call.text_out_tokens == 400 and call.cost_microusd == 40_000
    assert UsageRecord.objects.filter(call=call).count() == 2


def test_credits_are_rounded_once_from_the_running_cost(transactional_db, assistant, alice):
    from django.utils import timezone

    from sessions.models import TokenCounts, credits_for_cost

    call = watched_call(user=alice, assistant=assistant, openai_call_id="rtc_rounding_001", hold=50)
    RealtimeCall.objects.filter(pk=call.pk).update(markup_percent=37)
    rows = [store.UsageRow(pk=call.pk, response_id=f"resp_{i}", kind="response", tokens=TokenCounts(text_out=1),
                           cost_microusd=3_333, at=timezone.now()) for i in range(7)]
    totals = store.meter_batch(rows=rows)
    assert totals[call.pk] == (credits_for_cost(7 * 3_333, markup_percent=37), 7 * 3_333)


def test_a_dropped_sideband_is_reattached_and_metering_goes_on(supervisor, openai_settings, assistant, alice):
    fake = openai_settings
    rtc = upstream_call(fake, assistant)
    call = watched_call(user=alice, assistant=assistant, openai_call_id=rtc, hold=50)
    supervisor()
    wait_until(_attached(fake, rtc), what="sideband attached")
    fake.response_done(rtc, usage_for(1))
    wait_until(lambda: RealtimeCall.objects.get(pk=call.pk).credits_used == 1, what="first response metered")

    assert fake.drop_sidebands(rtc) == 1
    wait_until(_attached(fake, rtc), what="sideband re-attached")
    fake.response_done(rtc, usage_for(2))
    wait_until(lambda: RealtimeCall.objects.get(pk=call.pk).credits_used == 3, what="metered after re-attach")

    fake.end_call(rtc)  # the user closed the call
    wait_until(_final(call), what="call settled")
    assert (call.state, call.end_reason, call.credits_charged) == (CallState.ENDED, Cause.CALL_CLOSED, 3)


def test_settlement_is_exactly_once_when_our_hangup_races_the_calls_own_end(
    supervisor, openai_settings, assistant, alice
):
    fake = openai_settings
    rtc = upstream_call(fake, assistant)
    call = watched_call(user=alice, assistant=assistant, openai_call_id=rtc, hold=2, balance=10)
    watching = supervisor()
    wait_until(_attached(fake, rtc), what="sideband attached")

    ender = threading.Thread(target=fake.end_call, args=(rtc,))
    fake.response_done(rtc, usage_for(2))  # exhausts: our hangup …
    ender.start()  # … races the call ending by itself
    # … and a second settler (a sweep, another supervisor) races both.
    store.finish(pk=call.pk, cause=Cause.CALL_CLOSED)
    ender.join()
    wait_until(_final(call), what="call settled")
    watching.stop()  # joined: no settler is left running

    entries = LedgerEntry.objects.filter(reference=f"realtime-call:{call.public_id}", kind="usage")
    # One usage entry if the usage was metered before the first settlement won, none otherwise.
    assert entries.count() == (1 if call.credits_charged else 0)
    assert -sum(entries.values_list("credits", flat=True)) == call.credits_charged
    finals = CallEvent.objects.filter(call=call, kind=CallEvent.Kind.STATE,
                                      to_state__in=[CallState.ENDED, CallState.KILLED])
    assert finals.count() == 1
    hold = Hold.objects.get(pk=call.hold_id)
    assert hold.status == Hold.Status.SETTLED
    alice_wallet_entries = LedgerEntry.objects.filter(wallet__user=alice, kind="usage").count()
    assert alice_wallet_entries == entries.count()


def test_a_call_whose_sideband_never_attaches_is_hung_up_after_the_grace(
    supervisor, openai_settings, assistant, alice
):
    fake = openai_settings
    rtc = upstream_call(fake, assistant, sideband_404_delay=600)
    call = watched_call(user=alice, assistant=assistant, openai_call_id=rtc, hold=50)
    supervisor(attach_grace_seconds=1.5)

    info = fake.wait_for_call(rtc, lambda c: c["state"] == "ended", timeout=5)
    started = call.started_at.timestamp()
    assert info["hangup_requests"][0] - started >= 1.5 - 0.1  # not before the grace (0.1: clock resolution)
    wait_until(_final(call), what="call settled")
    assert (call.state, call.end_reason) == (CallState.KILLED, Cause.NOT_WATCHED)
    assert "did not attach" in CallEvent.objects.filter(call=call).exclude(detail="").last().detail
    assert call.credits_charged == 0


def test_a_call_that_ended_while_nobody_watched_is_settled_with_what_was_metered(
    supervisor, openai_settings, assistant, alice
):
    fake = openai_settings
    rtc = upstream_call(fake, assistant)
    call = watched_call(user=alice, assistant=assistant, openai_call_id=rtc, hold=50)
    RealtimeCall.objects.filter(pk=call.pk).update(credits_used=4, metered_at=call.started_at)  # metered before
    fake.end_call(rtc)
    supervisor()
    wait_until(_final(call), what="call settled")
    assert (call.state, call.end_reason, call.credits_charged) == (CallState.ENDED, Cause.CALL_CLOSED, 4)


def test_a_second_supervisor_takes_over_a_call_whose_lease_expired(supervisor, openai_settings, assistant, alice):
    fake = openai_settings
    rtc = upstream_call(fake, assistant)
    call = watched_call(user=alice, assistant=assistant, openai_call_id=rtc, hold=3)
    # The first claims the call as it starts, then looks again only after a minute (nothing wakes it).
    first = supervisor(owner="first", poll_seconds=60.0)
    wait_until(_attached(fake, rtc), what="first supervisor attached")
    # Its claim rounds poll quickly while they find calls; once one finds none it waits the whole minute.
    wait_until(lambda: first.supervisor.stats["idle_claims"], what="the first supervisor idle")
    # A free call for the second: one claim takes every free call at once, so the claim that takes
    # this one finds ours leased.
    spare_rtc = upstream_call(fake, assistant)
    spare = watched_call(user=alice, assistant=assistant, openai_call_id=spare_rtc, hold=3)
    second = supervisor(owner="second")
    wait_until(lambda: RealtimeCall.objects.get(pk=spare.pk).lease_owner == "second", timeout=30,
               what="the second claiming")
    assert RealtimeCall.objects.get(pk=call.pk).lease_owner == "first"  # one watcher only

    # The first one dies without releasing anything (no renewals, its socket gone).
    first.crash()
    fake.drop_sidebands(rtc)
    wait_until(lambda: RealtimeCall.objects.get(pk=call.pk).lease_owner == "second", timeout=3 + 5,
               what="takeover")
    wait_until(_attached(fake, rtc), what="second supervisor attached")

    fake.response_done(rtc, usage_for(3))
    fake.wait_for_call(rtc, lambda c: c["state"] == "ended", timeout=3)
    wait_until(_final(call), what="call settled")
    assert (call.state, call.end_reason, call.credits_charged) == (CallState.KILLED, Cause.CREDITS_EXHAUSTED, 3)
    # The spare, then the call once its lease expired: the fake saw two attaches of it in all.
    assert second.supervisor.stats["claimed"] == 2
    assert len(fake.call(rtc)["sideband_attached_at"]) == 2


def test_a_call_created_while_the_supervisor_idles_is_picked_up(supervisor, openai_settings, assistant, alice):
    # How fast: benchmarks/supervisor.py (attach latency); here, that the running loop finds it.
    fake = openai_settings
    quick = supervisor(owner="quick")
    wait_until(lambda: getattr(quick.supervisor, "attach_writer", None), what="the claim loop running")
    rtc = upstream_call(fake, assistant)
    call = watched_call(user=alice, assistant=assistant, openai_call_id=rtc, hold=50)
    wait_until(lambda: RealtimeCall.objects.get(pk=call.pk).lease_owner == "quick", what="claimed")
    wait_until(_attached(fake, rtc), what="sideband attached")
    assert quick.supervisor.stats["claimed"] == 1


def test_the_sweep_frees_leases_that_nobody_renewed(transactional_db, assistant, alice):
    from datetime import timedelta

    from django.utils import timezone

    from sessions.supervisor.tasks import free_dead_leases

    dead = watched_call(user=alice, assistant=assistant, openai_call_id="rtc_dead_lease_01", hold=5)
    alive = watched_call(user=alice, assistant=assistant, openai_call_id="rtc_live_lease_01", hold=5)
    RealtimeCall.objects.filter(pk=dead.pk).update(lease_owner="gone", lease_expires_at=timezone.now()
                                                   - timedelta(seconds=1))
    RealtimeCall.objects.filter(pk=alive.pk).update(lease_owner="here", lease_expires_at=timezone.now()
                                                    + timedelta(seconds=30))

    assert free_dead_leases() == 1
    assert RealtimeCall.objects.get(pk=dead.pk).lease_owner == ""
    assert RealtimeCall.objects.get(pk=alive.pk).lease_owner == "here"


def test_a_key_mode_call_that_cannot_be_watched_is_hung_up_and_pays_its_full_hold(
    supervisor, openai_settings, assistant, alice
):
    fake = openai_settings
    rtc = upstream_call(fake, assistant, sideband_404_delay=600)
    call = watched_call(user=alice, assistant=assistant, openai_call_id=rtc, hold=7, mode="key")
    supervisor(attach_grace_seconds=1.0)

    fake.wait_for_call(rtc, lambda c: c["state"] == "ended", timeout=5)
    wait_until(_final(call), what="call settled")
    assert call.credits_charged == 7
