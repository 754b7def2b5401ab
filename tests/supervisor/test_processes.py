"""Two real `supervise_calls` processes; `kill -9` of the one holding a call."""

import os
import signal
import subprocess
import sys
import time

import pytest

from sessions.models import CallState, Cause, RealtimeCall
from tests.live import ROOT, stop_process, subprocess_env
from tests.supervisor.helpers import credits_from_fake_usage, upstream_call, usage_for, watched_call
from tests.waiting import wait_until

LEASE = 3.0
GRACE = 10.0


def _start(name: str, env: dict, tmp_path, *, poll_seconds: float = 0.2) -> subprocess.Popen:
    log = (tmp_path / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "manage.py", "supervise_calls", "--owner", name, "--lease-seconds", str(LEASE),
         "--poll-seconds", str(poll_seconds), "--grace-seconds", str(GRACE)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )


def _stop(procs: dict) -> None:
    for proc in procs.values():
        stop_process(proc)


def _print_logs(procs: dict, tmp_path) -> None:
    for name in procs:
        print(f"--- {name} ---\n" + (tmp_path / f"{name}.log").read_text(errors="replace")[-3000:])


@pytest.mark.postgres
@pytest.mark.slow
def test_the_takeover_repro_leaves_no_call_unwatched_and_charges_what_openai_served(
    transactional_db, openai_settings, assistant, alice, tmp_path
):
    """Issue 11's repro: calls older than the attach grace, held by a supervisor that is killed
    with -9, and one sideband 500 when the survivor first re-attaches. Every orphan must be watched
    again (or hung up) within a lease and a grace, and be charged exactly what OpenAI served."""
    fake = openai_settings
    rtcs = [upstream_call(fake, assistant) for _ in range(3)]
    calls = [watched_call(user=alice, assistant=assistant, openai_call_id=rtc, hold=500, started_ago=GRACE * 3)
             for rtc in rtcs]
    env = subprocess_env(OPENAI_API_KEY=fake.project_key, OPENAI_BASE_URL=fake.base_url)
    # sup-a claims every call as it starts, then looks again only after a minute.
    procs = {"sup-a": _start("sup-a", env, tmp_path, poll_seconds=60)}
    try:
        for rtc in rtcs:
            wait_until(lambda rtc=rtc: fake.call(rtc)["sidebands"] == 1, timeout=40, what="attached")
            fake.response_done(rtc, usage_for(2))
        for call in calls:
            wait_until(lambda call=call: RealtimeCall.objects.get(pk=call.pk).credits_used == 2, what="metered")
        # A free call for sup-b: one claim takes every free call at once, so the claim that takes
        # this one finds sup-a's calls leased.
        spare_rtc = upstream_call(fake, assistant)
        spare = watched_call(user=alice, assistant=assistant, openai_call_id=spare_rtc, hold=500)
        procs["sup-b"] = _start("sup-b", env, tmp_path)
        wait_until(lambda: RealtimeCall.objects.get(pk=spare.pk).lease_owner == "sup-b", timeout=40,
                   what="sup-b claiming")
        wait_until(lambda: fake.call(spare_rtc)["sidebands"] == 1, what="sup-b attached to its call")
        assert set(RealtimeCall.objects.filter(pk__in=[c.pk for c in calls]).values_list("lease_owner", flat=True)) \
            == {"sup-a"}

        fake.fault("sideband", 500, count=1)
        os.kill(procs["sup-a"].pid, signal.SIGKILL)
        procs["sup-a"].wait(timeout=5)
        for rtc in rtcs:  # its sockets die with it
            fake.drop_sidebands(rtc)
        # Within a lease and an attach grace (plus slack for a loaded CI machine: two subprocesses
        # and the fake share two cores with the other xdist worker).
        deadline = time.monotonic() + LEASE + GRACE + 5
        for rtc in rtcs:
            info = fake.wait_for_call(rtc, lambda c: c["sidebands"] >= 1 or c["state"] == "ended",
                                      timeout=max(deadline - time.monotonic(), 0.1))
            assert info["state"] != "ended" and info["sidebands"] == 1
        assert all(RealtimeCall.objects.get(pk=c.pk).lease_owner == "sup-b" for c in calls)

        for rtc in rtcs:
            fake.response_done(rtc, usage_for(1))
        for call in calls:
            wait_until(lambda call=call: RealtimeCall.objects.get(pk=call.pk).credits_used == 3, what="metered")
        for rtc in rtcs:
            fake.end_call(rtc)
        for call, rtc in zip(calls, rtcs, strict=True):
            wait_until(lambda call=call: RealtimeCall.objects.get(pk=call.pk).state == CallState.ENDED, timeout=10,
                     what="settled")
            call.refresh_from_db()
            assert call.credits_charged == credits_from_fake_usage(fake, rtc, model=assistant.model,
                                                                   markup_percent=0) == 3
    except AssertionError:
        _print_logs(procs, tmp_path)
        raise
    finally:
        _stop(procs)


@pytest.mark.postgres
@pytest.mark.slow
def test_kill_9_of_the_holder_hands_the_call_to_the_other_supervisor(
    transactional_db, openai_settings, assistant, alice, tmp_path
):
    fake = openai_settings
    rtc = upstream_call(fake, assistant)
    call = watched_call(user=alice, assistant=assistant, openai_call_id=rtc, hold=3)
    env = subprocess_env(OPENAI_API_KEY=fake.project_key, OPENAI_BASE_URL=fake.base_url)
    procs = {}
    try:
        for name in ("sup-a", "sup-b"):
            procs[name] = _start(name, env, tmp_path)
        holder = wait_until(lambda: RealtimeCall.objects.get(pk=call.pk).lease_owner, timeout=40, what="a claim")
        wait_until(lambda: fake.call(rtc)["sidebands"] == 1, timeout=10, what="attached")
        other = "sup-b" if holder == "sup-a" else "sup-a"

        os.kill(procs[holder].pid, signal.SIGKILL)
        procs[holder].wait(timeout=5)
        wait_until(lambda: RealtimeCall.objects.get(pk=call.pk).lease_owner == other, timeout=LEASE + 5,
                   what="takeover")
        wait_until(lambda: fake.call(rtc)["sidebands"] >= 1, timeout=5, what="re-attached by the other")

        fake.response_done(rtc, usage_for(3))
        info = fake.wait_for_call(rtc, lambda c: c["state"] == "ended", timeout=3)
        assert info["hangup_requests"][0] >= info["response_done_log"][-1]["sent_at"]  # how fast: benchmarks/

        def settled():
            call.refresh_from_db()
            return call.state == CallState.KILLED

        wait_until(settled, timeout=10, what="settled")
        assert (call.end_reason, call.credits_charged) == (Cause.CREDITS_EXHAUSTED, 3)
    except AssertionError:
        _print_logs(procs, tmp_path)
        raise
    finally:
        _stop(procs)
