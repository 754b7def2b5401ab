"""Two real `supervise_calls` processes; `kill -9` of the one holding a call."""

import os
import signal
import subprocess
import sys
import time

import pytest

from sessions.models import CallState, Cause, RealtimeCall
from tests.live import ROOT, subprocess_env
from tests.supervisor.helpers import upstream_call, usage_for, wait_for, watched_call

LEASE = 3.0


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
            log = (tmp_path / f"{name}.log").open("wb")
            procs[name] = subprocess.Popen(
                [sys.executable, "manage.py", "supervise_calls", "--owner", name, "--lease-seconds", str(LEASE),
                 "--poll-seconds", "0.2", "--grace-seconds", "10"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        holder = wait_for(lambda: RealtimeCall.objects.get(pk=call.pk).lease_owner, timeout=40, what="a claim")
        wait_for(lambda: fake.call(rtc)["sidebands"] == 1, timeout=10, what="attached")
        other = "sup-b" if holder == "sup-a" else "sup-a"

        os.kill(procs[holder].pid, signal.SIGKILL)
        procs[holder].wait(timeout=5)
        died = time.monotonic()
        wait_for(lambda: RealtimeCall.objects.get(pk=call.pk).lease_owner == other, timeout=LEASE + 5,
                 what="takeover")
        assert time.monotonic() - died <= LEASE + 5
        wait_for(lambda: fake.call(rtc)["sidebands"] >= 1, timeout=5, what="re-attached by the other")

        fake.response_done(rtc, usage_for(3))
        info = fake.wait_for_call(rtc, lambda c: c["state"] == "ended", timeout=3)
        assert info["hangup_requests"][0] - info["response_done_log"][-1]["sent_at"] <= 2.0

        def settled():
            call.refresh_from_db()
            return call.state == CallState.KILLED

        wait_for(settled, timeout=10, what="settled")
        assert (call.end_reason, call.credits_charged) == (Cause.CREDITS_EXHAUSTED, 3)
    except AssertionError:
        for name in procs:
            print(f"--- {name} ---\n" + (tmp_path / f"{name}.log").read_text(errors="replace")[-3000:])
        raise
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
