"""Key mode bounded and policed (issue 11): each key-mode window reconciled within minutes of its end.

Real peers throughout: the product's API, fakes/openai started with --no-media (calls from a raw SDP
offer and an ek_ secret, as a browser makes them), its Usage API, and in the end-to-end test the
real supervisor watching the reported call.
"""

import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from billing.models import Hold, LedgerEntry
from fakes.openai.pytest_plugin import start_fake_openai
from sessions import openai_client
from sessions import services as calls
from sessions.models import (
    CallEvent,
    CallState,
    Cause,
    ModelPrice,
    RealtimeCall,
    TokenCounts,
    UsageRecord,
    credits_for_cost,
)
from sessions.reconciliation import importer, keymode
from sessions.reconciliation.models import Flag, FlagKind, ImportWatermark
from sessions.reconciliation.tasks import reconcile_key_windows
from tests.factories import UserFactory, fund, wallet_of
from tests.reconciliation.conftest import USAGE, meter_from_fake, outside_call
from tests.sessions.factories import AssistantFactory
from tests.supervisor.helpers import SupervisorThread
from tests.waiting import wait_until

DELAY = 120


@pytest.fixture(scope="module")
def headless_fake():
    fake = start_fake_openai("--no-media")
    yield fake
    fake.close()


@pytest.fixture
def fake(headless_fake, settings, prices):
    """The product pointed at a fake whose calls need no media peer; our key and project are ours."""
    headless_fake.reset(calls=True, usage=True)
    settings.OPENAI_BASE_URL = headless_fake.base_url
    settings.OPENAI_API_KEY = headless_fake.project_key
    settings.OPENAI_ADMIN_KEY = headless_fake.admin_key
    settings.OPENAI_TIMEOUT_SECONDS = 5.0
    settings.RECONCILIATION_OPENAI_KEY_IDS = [headless_fake.project_key_id]
    settings.RECONCILIATION_OPENAI_PROJECT_IDS = [headless_fake.project_id]
    settings.RECONCILIATION_TOLERANCE_TOKENS = 200
    settings.RECONCILIATION_TOLERANCE_PERCENT = 5.0
    settings.RECONCILIATION_WINDOW_GRACE_SECONDS = 60
    settings.RECONCILIATION_KEY_WINDOW_DELAY_SECONDS = DELAY
    settings.STAFF_NOTIFY_EMAILS = ["ops@example.com"]
    yield headless_fake
    headless_fake.clear_faults()


@pytest.fixture
def key_assistant(prices):
    return AssistantFactory(max_call_seconds=60, key_ttl_seconds=10, allow_key=True, max_concurrent_calls=2)


def mint(client, assistant):
    return client.post("/api/client-secrets/", data={"assistant": assistant.pk}, content_type="application/json")


def attach(client, public_id: str, rtc: str):
    return client.post(f"/api/calls/{public_id}/attach", data={"call_id": rtc}, content_type="application/json")


def unexplained_credits(n_calls: int, assistant) -> int:
    """What n unreported calls of one USAGE block each cost at the assistant's price, rounded once."""
    one = TokenCounts.from_usage(USAGE)
    tokens = TokenCounts(**{name: n_calls * value for name, value in one.as_dict().items()})
    cost = ModelPrice.objects.get(model=assistant.model).cost_microusd(tokens)
    return credits_for_cost(cost, markup_percent=assistant.markup_percent)


def ledger_matches(user) -> bool:
    wallet = wallet_of(user)
    total = LedgerEntry.objects.filter(wallet=wallet).aggregate(total=Sum("credits"))["total"] or 0
    held = Hold.objects.filter(wallet=wallet, status=Hold.Status.ACTIVE).aggregate(total=Sum("credits"))["total"] or 0
    return wallet.balance == total and wallet.held == held


def snapshot():
    return (
        list(Flag.objects.values_list("pk", "severity", "evidence", "summary")),
        list(LedgerEntry.objects.values_list("pk", "credits")),
        list(Hold.objects.values_list("pk", "status", "credits")),
        CallEvent.objects.count(),
        list(RealtimeCall.objects.values_list("pk", "state", "key_reconciled_at")),
    )


@pytest.mark.django_db(transaction=True)
def test_a_secret_used_for_four_calls_is_flagged_withdrawn_and_charged_within_five_minutes(
    fake, key_assistant, client, offer, mailoutbox
):
    user = UserFactory(email="carol@example.com")
    fund(user, 100_000)
    client.force_login(user)

    minted = mint(client, key_assistant)
    assert minted.status_code == 201, minted.content
    secret, public_id = minted.json()["client_secret"], minted.json()["call"]
    call = RealtimeCall.objects.get(public_id=public_id)
    # One secret, four calls at OpenAI (raw SDP + Bearer ek_…); the client reports only the first.
    rtcs = [outside_call(fake, secret, offer) for _ in range(4)]
    assert attach(client, public_id, rtcs[0]).status_code == 200

    supervisor = SupervisorThread(owner="key-mode-test").start()
    try:
        wait_until(lambda: fake.call(rtcs[0])["sidebands"] >= 1, what="the supervisor watching the reported call")
        wait_until(lambda: UsageRecord.objects.filter(call=call).exists(), what="the greeting metered")
        # The browser asks for a response on the watched call; the three others talk unwatched.
        fake.send_event(rtcs[0], {"type": "response.create"})
        for rtc in rtcs[1:]:
            fake.response_done(rtc, USAGE)
        wait_until(lambda: UsageRecord.objects.filter(call=call).count() == 2, what="the response metered")
        assert hang_up(client, public_id) == 202
        wait_until(lambda: RealtimeCall.objects.get(pk=call.pk).state in (CallState.ENDED, CallState.KILLED),
                 what="the supervisor settling the call")
    finally:
        supervisor.stop()
    call.refresh_from_db()
    assert call.end_reason == Cause.USER_HANGUP and call.credits_charged == call.credits_used
    metered = sum(sum(r.tokens.as_dict().values()) for r in UsageRecord.objects.filter(call=call))
    served = fake.usage_records()
    assert sum(r["input_tokens"] + r["output_tokens"] for r in served) == metered + 3 * USAGE["total_tokens"]
    balance_after_call = wallet_of(user).balance

    _, window_end = keymode.key_window(call)
    assert window_end == max(call.ended_at, call.secret_expires_at)
    fake.shift_clock((window_end - timezone.now()).total_seconds() + 240)
    with time_machine.travel(window_end + timedelta(seconds=60)):
        assert reconcile_key_windows()["due"] == 0  # OpenAI's buckets may still be coming in
    with time_machine.travel(window_end + timedelta(seconds=DELAY + 60)):  # the next beat runs: < 5 min
        result = reconcile_key_windows()

    assert result["abusive"] == [public_id] and result["errors"] == 0
    flags = Flag.objects.filter(kind=FlagKind.KEY_MODE_ABUSE)
    assert flags.count() == 1 and Flag.objects.count() == 1
    flag = flags.get()
    assert flag.severity == "high" and flag.call_id == call.pk and flag.user_id == user.pk
    assert flag.evidence["unexplained_tokens"] == 3 * USAGE["total_tokens"]
    assert flag.evidence["unexplained_tokens_by_class"] == {
        name: 3 * value for name, value in TokenCounts.from_usage(USAGE).as_dict().items()
    }
    assert flag.evidence["secret_fingerprint"] == call.secret_fingerprint and secret not in str(flag.evidence)
    counted = [m for m in flag.evidence["minutes"].values() if m["counted"] == keymode.COUNTED]
    assert sum(m["excess"] for m in counted) == 3 * USAGE["total_tokens"]
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["ops@example.com"]

    # Key mode is withdrawn: a second mint answers 403 and writes nothing.
    user.refresh_from_db()
    assert user.key_mode_withdrawn_at is not None and f"#{flag.pk}" in user.key_mode_withdrawn_reason
    calls_before, held_before = RealtimeCall.objects.count(), wallet_of(user).held
    again = mint(client, key_assistant)
    assert again.status_code == 403 and again.json()["error"]["code"] == "key_mode_withdrawn"
    assert (RealtimeCall.objects.count(), wallet_of(user).held) == (calls_before, held_before)

    # The cost of the three unreported calls, priced at the call's model and markup, debited once.
    expected = unexplained_credits(3, key_assistant)
    entry = LedgerEntry.objects.get(idempotency_key=keymode.charge_key(call))
    assert entry.credits == -expected and entry.kind == LedgerEntry.Kind.USAGE
    assert flag.evidence["charge"]["collected"] == expected and flag.evidence["charge"]["uncollected"] == 0
    assert flag.evidence["price"]["credits"] == expected
    assert wallet_of(user).balance == balance_after_call - expected
    assert ledger_matches(user)
    call.refresh_from_db()
    assert call.key_reconciled_at is not None
    assert call.events.filter(kind=CallEvent.Kind.WARNING, detail__contains=f"{expected:,} credits charged").count() == 1

    # A re-run (the next beat, or a redelivered task) changes nothing.
    before = snapshot()
    with time_machine.travel(window_end + timedelta(seconds=DELAY + 120)):
        assert reconcile_key_windows()["due"] == 0
    assert snapshot() == before and len(mailoutbox) == 1


def hang_up(client, public_id: str) -> int:
    return client.post(f"/api/calls/{public_id}/hangup").status_code


def reported_and_metered(fake, user, assistant, offer, *, extra_calls: int = 0):
    """A key-mode call reported and metered as the supervisor would (one USAGE response), settled;
    `extra_calls` more calls started with the same secret and never reported, one response each."""
    call, minted = calls.mint_client_secret(user=user, assistant_id=assistant.pk)
    rtc = outside_call(fake, minted.value, offer)
    calls.attach_call_id(user=user, call=call, openai_call_id=rtc)
    fake.response_done(rtc, USAGE)
    for _ in range(extra_calls):
        fake.response_done(outside_call(fake, minted.value, offer), USAGE)
    call.refresh_from_db()
    meter_from_fake(fake, call)
    price = ModelPrice.objects.get(model=call.model)
    cost = sum(price.cost_microusd(record.tokens) for record in UsageRecord.objects.filter(call=call))
    used = credits_for_cost(cost, markup_percent=call.markup_percent)
    calls.settle_call(call=call, cause=Cause.USER_HANGUP, used_credits=used)
    call.refresh_from_db()
    return call


def after_window(call, seconds: int = DELAY + 30):
    return time_machine.travel(keymode.key_window(call)[1] + timedelta(seconds=seconds))


def test_an_honest_window_raises_nothing_and_withdraws_nothing(fake, funded, key_assistant, offer,
                                                              django_capture_on_commit_callbacks, mailoutbox):
    call = reported_and_metered(fake, funded, key_assistant, offer)
    entries = LedgerEntry.objects.count()
    with after_window(call), django_capture_on_commit_callbacks(execute=True):
        result = keymode.reconcile_due_windows()
    assert (result.due, result.reconciled, result.abusive, result.doubtful) == (1, 1, [], [])
    assert result.usage_buckets >= 1
    call.refresh_from_db()
    funded.refresh_from_db()
    assert call.key_reconciled_at is not None
    assert funded.key_mode_withdrawn_at is None
    assert not Flag.objects.exists() and LedgerEntry.objects.count() == entries and not mailoutbox
    # The key-window import keeps its own watermark: the periodic import's is untouched.
    assert not ImportWatermark.objects.filter(name=importer.USAGE).exists()
    assert ImportWatermark.objects.get(name=importer.KEY_WINDOWS).last_error == ""


def test_a_window_is_left_for_later_when_the_usage_api_fails(fake, funded, key_assistant, offer):
    call = reported_and_metered(fake, funded, key_assistant, offer, extra_calls=2)
    fake.fault("usage.completions", 500, count=10)  # beyond the SDK's own retries
    before = snapshot()
    with after_window(call), pytest.raises(openai_client.UpstreamError):
        reconcile_key_windows()
    assert snapshot() == before
    funded.refresh_from_db()
    assert funded.key_mode_withdrawn_at is None
    assert "HTTP 500" in ImportWatermark.objects.get(name=importer.KEY_WINDOWS).last_error

    fake.clear_faults()
    with after_window(call, DELAY + 90):
        result = reconcile_key_windows()
    assert result["abusive"] == [call.public_id]
    assert LedgerEntry.objects.get(idempotency_key=keymode.charge_key(call)).credits == -unexplained_credits(
        2, key_assistant)


def test_the_task_retries_only_transient_usage_api_errors():
    assert reconcile_key_windows.autoretry_for == (openai_client.UpstreamUnavailable,)
    assert reconcile_key_windows.max_retries == 3 and reconcile_key_windows.retry_backoff


def test_what_the_wallet_cannot_pay_is_recorded_as_uncollected(fake, alice, key_assistant, offer):
    fund(alice, 20)  # a partial hold; the reported call uses 8 of it
    call = reported_and_metered(fake, alice, key_assistant, offer, extra_calls=3)
    available = wallet_of(alice).balance
    expected = unexplained_credits(3, key_assistant)
    assert 0 < available < expected
    with after_window(call):
        keymode.reconcile_due_windows()
    flag = Flag.objects.get()
    assert flag.evidence["charge"]["collected"] == available
    assert flag.evidence["charge"]["uncollected"] == expected - available
    assert wallet_of(alice).balance == 0 and ledger_matches(alice)  # never below zero
    assert LedgerEntry.objects.get(idempotency_key=keymode.charge_key(call)).credits == -available


def test_a_run_killed_after_the_charge_is_finished_by_the_next_one(fake, funded, key_assistant, offer, monkeypatch):
    call = reported_and_metered(fake, funded, key_assistant, offer, extra_calls=1)
    real = keymode.charge_unexplained

    def charge_then_die(**kwargs):
        real(**kwargs)
        raise SystemExit("worker killed")

    monkeypatch.setattr(keymode, "charge_unexplained", charge_then_die)
    with after_window(call), pytest.raises(SystemExit):
        keymode.reconcile_due_windows()
    call.refresh_from_db()
    funded.refresh_from_db()
    assert call.key_reconciled_at is None  # not marked before the charge is recorded on the flag
    assert Flag.objects.get().evidence["charge"]["pending"] is True and funded.key_mode_withdrawn_at is not None
    monkeypatch.setattr(keymode, "charge_unexplained", real)
    with after_window(call, DELAY + 90):
        result = keymode.reconcile_due_windows()
    assert result.abusive == [call.public_id]
    assert LedgerEntry.objects.filter(idempotency_key=keymode.charge_key(call)).count() == 1
    assert Hold.objects.filter(idempotency_key=keymode.charge_key(call) + ":hold").count() == 1
    flag = Flag.objects.get()
    assert "pending" not in flag.evidence["charge"] and flag.evidence["charge"]["collected"] == unexplained_credits(
        1, key_assistant)
    assert ledger_matches(funded)


def test_excess_shared_with_another_users_window_is_flagged_for_staff_but_not_charged(
    fake, funded, bob, key_assistant, offer
):
    fund(bob, 100_000)
    mine = reported_and_metered(fake, funded, key_assistant, offer, extra_calls=2)
    theirs = reported_and_metered(fake, bob, key_assistant, offer)
    entries = LedgerEntry.objects.count()
    with after_window(max(mine, theirs, key=lambda c: keymode.key_window(c)[1])):
        result = keymode.reconcile_due_windows()
    assert result.reconciled == 2 and result.abusive == []
    assert sorted(result.doubtful) == sorted([mine.public_id, theirs.public_id])
    assert set(Flag.objects.values_list("severity", flat=True)) == {"medium"}
    assert LedgerEntry.objects.count() == entries
    for user in (funded, bob):
        user.refresh_from_db()
        assert user.key_mode_withdrawn_at is None


def test_an_unreported_window_is_explained_up_to_its_hold(fake, funded, key_assistant, offer):
    call, minted = calls.mint_client_secret(user=funded, assistant_id=key_assistant.pk)
    fake.response_done(outside_call(fake, minted.value, offer), USAGE)  # well within the worst case
    with time_machine.travel(call.expected_end_at + timedelta(seconds=61)):
        calls.sweep_calls()  # charged its full hold
    call.refresh_from_db()
    assert call.state == CallState.EXPIRED and call.credits_charged == call.credits_held
    with after_window(call):
        result = keymode.reconcile_due_windows()
    assert result.reconciled == 1 and not Flag.objects.filter(kind=FlagKind.KEY_MODE_ABUSE).exists()


def test_overlapping_windows_of_one_user_count_each_minute_once(fake, funded, key_assistant, offer):
    first = reported_and_metered(fake, funded, key_assistant, offer, extra_calls=2)
    second = reported_and_metered(fake, funded, key_assistant, offer)  # allowed: the first was reported
    with after_window(max(first, second, key=lambda c: keymode.key_window(c)[1])):
        result = keymode.reconcile_due_windows()
    assert result.reconciled == 2 and result.abusive == [first.public_id] and result.doubtful == []
    flag = Flag.objects.get()
    assert flag.call_id == first.pk and flag.evidence["unexplained_tokens"] == 2 * USAGE["total_tokens"]
    assert LedgerEntry.objects.filter(idempotency_key__startswith="key-window:").count() == 1
    second.refresh_from_db()
    assert second.key_reconciled_at is not None
    assert ledger_matches(funded)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_runs_racing_on_one_window_flag_charge_and_mark_it_once(fake, key_assistant, offer):
    user = UserFactory()
    fund(user, 100_000)
    call = reported_and_metered(fake, user, key_assistant, offer, extra_calls=3)
    start, end = keymode.key_window(call)
    importer.import_usage_range(since=start - timedelta(minutes=2), until=end + timedelta(minutes=3))
    barrier = threading.Barrier(2)
    outcomes, errors = [], []

    def run():
        try:
            barrier.wait(timeout=10)
            outcomes.append(keymode.reconcile_window(RealtimeCall.objects.get(pk=call.pk)))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    # Only the run that marks the window reconciled returns its assessment; the other finds it done.
    assert len(outcomes) == 2 and sum(1 for outcome in outcomes if outcome is not None) == 1
    assert Flag.objects.count() == 1
    assert LedgerEntry.objects.filter(idempotency_key=keymode.charge_key(call)).count() == 1
    assert LedgerEntry.objects.get(idempotency_key=keymode.charge_key(call)).credits == -unexplained_credits(
        3, key_assistant)
    assert Hold.objects.filter(idempotency_key__startswith="key-window:").count() == 1
    assert call.events.filter(kind=CallEvent.Kind.WARNING).count() == 1
    assert ledger_matches(user)
