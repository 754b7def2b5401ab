"""The sweep, the flags and the staff side, on synthetic rows (no fake needed)."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing import services as billing
from sessions.models import CallMode, CallState, RealtimeCall, UsageRecord
from sessions.reconciliation import csv_import, flags, reconcile, services, sweep
from sessions.reconciliation.flags import Finding
from sessions.reconciliation.models import CostBucket, Flag, FlagKind, FlagStatus, UsageBucket, UsageUpload
from tests.factories import fund

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
KEY = "key_ours"


@pytest.fixture(autouse=True)
def scope(settings, prices):
    settings.RECONCILIATION_OPENAI_KEY_IDS = [KEY]
    settings.RECONCILIATION_OPENAI_PROJECT_IDS = ["proj_ours"]
    settings.RECONCILIATION_TOLERANCE_TOKENS = 100
    settings.RECONCILIATION_TOLERANCE_PERCENT = 5.0
    settings.RECONCILIATION_WINDOW_GRACE_SECONDS = 60
    settings.STAFF_NOTIFY_EMAILS = ["ops@example.com"]


def make_call(
    user, assistant, *, start, minutes, mode=CallMode.PROXY, attached=True, state=CallState.ENDED, **extra
):
    end = start + timedelta(minutes=minutes)
    call = RealtimeCall.objects.create(
        user=user,
        assistant=assistant,
        mode=mode,
        state=state,
        model="gpt-realtime",
        markup_percent=50,
        allowed_seconds=minutes * 60,
        created_at=start,
        started_at=start,
        expected_end_at=end,
        ended_at=end if state in (CallState.ENDED, CallState.EXPIRED) else None,
        openai_call_id=f"rtc_{start:%H%M%S}{RealtimeCall.objects.count()}" if attached else None,
        secret_fingerprint="sha256:" + "ab" * 32 if mode == CallMode.KEY else "",
        **extra,
    )
    return call


def meter(call, at, tokens, n=[0]):  # noqa: B006 - a counter for unique response ids
    n[0] += 1
    UsageRecord.objects.create(call=call, response_id=f"resp_{n[0]}", at=at, text_in_tokens=tokens)


def report(at, tokens, *, key=KEY, project="proj_ours", model="gpt-realtime"):
    UsageBucket.objects.update_or_create(
        start_time=at.replace(second=0, microsecond=0),
        width_seconds=60,
        project_id=project,
        api_key_id=key,
        model=model,
        defaults={"input_tokens": tokens, "input_text_tokens": tokens, "imported_at": T0},
    )


def snapshot():
    return sorted(
        Flag.objects.values_list(
            "natural_key",
            "kind",
            "severity",
            "window_start",
            "window_end",
            "reported_tokens",
            "metered_tokens",
            "call_id",
            "evidence",
        )
    )


@pytest.fixture
def traffic(alice, assistant):
    """Two hours: a metered call each 10 minutes for 5 minutes; usage matches metering, except
    an unmetered surplus at 10:23, usage after the last window at 11:57-11:59, another key's usage
    (not ours) and a metered response 3 minutes after a call's expected end."""
    calls = []
    for i in range(12):
        start = T0 + timedelta(minutes=10 * i)
        call = make_call(alice, assistant, start=start, minutes=5)
        calls.append(call)
        for m in range(5):
            at = start + timedelta(minutes=m, seconds=20)
            meter(call, at, 1000)
            report(at, 1000 + (5000 if (i, m) == (2, 3) else 0))
    for minute in (57, 58, 59):
        report(T0 + timedelta(hours=1, minutes=minute), 700)
    report(T0 + timedelta(minutes=30), 99_999, key="key_other_app")
    meter(calls[4], calls[4].expected_end_at + timedelta(minutes=3), 400)
    report(calls[4].expected_end_at + timedelta(minutes=3), 400)
    return calls


def test_sweep_raises_each_kind_with_evidence(traffic, django_capture_on_commit_callbacks, mailoutbox):
    with django_capture_on_commit_callbacks(execute=True):
        result = reconcile.reconcile(since=T0, until=T0 + timedelta(hours=2))
    kinds = sorted(Flag.objects.values_list("kind", flat=True))
    assert kinds == [
        FlagKind.CALL_OVERRUN,
        FlagKind.OUTSIDE_WINDOW,
        FlagKind.OUTSIDE_WINDOW,
        FlagKind.UNEXPLAINED_USAGE,
    ]
    unexplained = Flag.objects.get(kind=FlagKind.UNEXPLAINED_USAGE)
    assert unexplained.reported_tokens == 6000 and unexplained.metered_tokens == 1000
    assert list(unexplained.evidence["minutes"]) == [(T0 + timedelta(minutes=23)).isoformat()]
    late = Flag.objects.get(kind=FlagKind.OUTSIDE_WINDOW, window_start__gte=T0 + timedelta(hours=1))
    assert late.call == traffic[-1]  # the window that closed last before it
    assert late.reported_tokens == 2100 and late.window_end == T0 + timedelta(hours=2)
    assert late.attribution == "key" and late.api_key_id == KEY
    overrun_usage = Flag.objects.get(kind=FlagKind.OUTSIDE_WINDOW, window_start__lt=T0 + timedelta(hours=1))
    assert overrun_usage.call == traffic[4]
    overrun = Flag.objects.get(kind=FlagKind.CALL_OVERRUN)
    assert overrun.call == traffic[4] and overrun.evidence["late_tokens"] == 400
    # Another app's key is not ours: its 99,999 tokens at 10:30 raise nothing.
    assert not Flag.objects.filter(window_start=T0 + timedelta(minutes=30)).exists()
    assert result.created == 4
    # High severity: usage outside every window, and a surplus over ten times the tolerance.
    assert len(mailoutbox) == 3


def test_rerun_and_split_windows_write_the_same_flags(traffic):
    reconcile.reconcile(since=T0, until=T0 + timedelta(hours=2))
    first = snapshot()
    again = reconcile.reconcile(since=T0, until=T0 + timedelta(hours=2))
    assert again.created == 0 and again.updated == 0
    assert snapshot() == first
    Flag.objects.all().delete()
    for h in range(4):  # the same period in four windows
        reconcile.reconcile(since=T0 + timedelta(minutes=30 * h), until=T0 + timedelta(minutes=30 * (h + 1)))
    assert [row[:8] for row in snapshot()] == [row[:8] for row in first]


def test_reconcile_killed_mid_way_then_rerun_leaves_the_same_result(traffic, monkeypatch):
    reconcile.reconcile(since=T0, until=T0 + timedelta(hours=2))
    clean = snapshot()
    Flag.objects.all().delete()

    def killed(chunk):
        if chunk == 10:
            raise SystemExit("worker killed")

    monkeypatch.setattr(sweep, "after_chunk_hook", killed)
    with pytest.raises(SystemExit):
        reconcile.reconcile(since=T0, until=T0 + timedelta(hours=2), chunk_size=3)
    assert 0 < Flag.objects.count() < len(clean)
    monkeypatch.setattr(sweep, "after_chunk_hook", None)
    reconcile.reconcile(since=T0, until=T0 + timedelta(hours=2), chunk_size=3)
    assert snapshot() == clean


def test_a_flag_upsert_locks_the_flags_it_updates_in_primary_key_order(traffic, is_postgres):
    reconcile.reconcile(since=T0, until=T0 + timedelta(hours=2))
    flags_by_pk = list(Flag.objects.order_by("pk"))
    findings = [
        Finding(kind=f.kind, severity=f.severity, natural_key=f.natural_key, summary=f.summary,
                window=(f.window_start, f.window_end))
        for f in sorted(flags_by_pk, key=lambda f: f.natural_key, reverse=True)
    ]
    assert [f.natural_key for f in findings] != [f.natural_key for f in flags_by_pk]  # not pk order
    with CaptureQueriesContext(connection) as queries:
        done = flags.upsert(findings)
    assert (done.created, sorted(done.flags)) == (0, [f.pk for f in flags_by_pk])
    locks = [q["sql"] for q in queries if "FOR UPDATE" in q["sql"]]
    if is_postgres:  # SQLite has no row locks: Django leaves FOR UPDATE out
        assert len(locks) == 1 and locks[0].endswith('ORDER BY "realtime_flag"."id" ASC FOR UPDATE')
    else:
        assert locks == []


def _flag_rows():
    """What two runs of the same windows must agree on, whichever wrote a flag last."""
    return sorted(
        (*row[:8], row[8].get("minutes"))
        for row in Flag.objects.values_list(
            "natural_key", "kind", "severity", "window_start", "window_end", "reported_tokens", "metered_tokens",
            "call_id", "evidence",
        )
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_reconciliations_of_overlapping_windows_neither_deadlock_nor_differ(traffic):
    for i in range(12):  # a surplus in minute 1 of every call: unexplained usage in both hours
        report(T0 + timedelta(minutes=10 * i + 1), 6000)
    hour = timedelta(hours=1)
    # One run sweeps forward in small chunks (one transaction per 3 rows); the other backward in
    # one transaction per window: they touch the same flags in different orders.
    forward = [(T0, T0 + 2 * hour, 3), (T0 + hour / 2, T0 + 3 * hour / 2, 3)]
    backward = [(T0 + hour, T0 + 2 * hour, 1000), (T0, T0 + hour, 1000), (T0, T0 + 2 * hour, 1000)]

    def run(windows):
        for since, until, chunk in windows:
            reconcile.reconcile(since=since, until=until, chunk_size=chunk)

    run(forward)
    run(backward)
    expected = _flag_rows()
    assert sorted(row[1] for row in expected) == [
        FlagKind.CALL_OVERRUN, *[FlagKind.OUTSIDE_WINDOW] * 2, *[FlagKind.UNEXPLAINED_USAGE] * 2
    ]

    def racer(windows, barrier, errors):
        try:
            barrier.wait(timeout=10)
            run(windows)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    for attempt in range(10):
        if attempt % 2 == 0:
            Flag.objects.all().delete()  # race to create them; odd attempts race to update them
        barrier, errors = threading.Barrier(2), []
        threads = [threading.Thread(target=racer, args=(w, barrier, errors)) for w in (forward, backward)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == [] and not any(t.is_alive() for t in threads)
        assert _flag_rows() == expected


def test_unmetered_key_window_explains_usage_up_to_its_allowance(alice, assistant):
    make_call(
        alice,
        assistant,
        start=T0,
        minutes=5,
        mode=CallMode.KEY,
        attached=False,
        state=CallState.EXPIRED,
        end_reason="unmetered",
    )
    report(T0 + timedelta(minutes=1), 3000)  # within the window's worst-case allowance
    report(T0 + timedelta(minutes=2), 50_000)  # far beyond it
    reconcile.reconcile(since=T0, until=T0 + timedelta(minutes=5))
    flags = Flag.objects.filter(kind=FlagKind.UNEXPLAINED_USAGE)
    assert [list(f.evidence["minutes"]) for f in flags] == [[(T0 + timedelta(minutes=2)).isoformat()]]
    assert flags.get().severity == "high"


def test_usage_without_key_id_falls_back_to_project(alice, assistant):
    report(T0 + timedelta(minutes=3), 800, key="")
    reconcile.reconcile(since=T0, until=T0 + timedelta(minutes=10))
    flag = Flag.objects.get()
    assert flag.kind == FlagKind.OUTSIDE_WINDOW and flag.attribution == "project"
    assert flag.call is None and "no call of ours" in flag.summary


def test_cost_drift(alice, assistant):
    day = T0.replace(hour=0, minute=0)
    meter(make_call(alice, assistant, start=T0, minutes=5), T0, 1_000_000)
    report(T0, 1_000_000)  # $4.00 of uncached text input at our price
    CostBucket.objects.create(
        start_time=day,
        project_id="proj_ours",
        line_item="gpt-realtime, input_text_tokens",
        amount_microusd=4_000_000,
        imported_at=T0,
    )
    reconcile.reconcile(since=day, until=day + timedelta(days=1))
    assert not Flag.objects.exists()
    CostBucket.objects.update(amount_microusd=4_500_000)
    reconcile.reconcile(since=day, until=day + timedelta(days=1))
    flag = Flag.objects.get()
    assert flag.kind == FlagKind.COST_DRIFT
    assert flag.evidence["drift_microusd"] == 500_000 and flag.evidence["our_cost_microusd"] == 4_000_000


def test_management_command(traffic, capsys):
    call_command("reconcile", "--since", "2026-11-20T10:00Z", "--until", "2026-11-20T12:00Z")
    assert "4 flag(s) created" in capsys.readouterr().out
    call_command("reconcile", "--since", "2026-11-20T10:00Z", "--until", "2026-11-20T12:00Z")
    assert "0 flag(s) created" in capsys.readouterr().out


# --- CSV uploads ---------------------------------------------------------------------------------

GOOD = (
    b"start_time,end_time,start_time_iso,end_time_iso,project_id,num_model_requests,api_key_id,model,"
    b"input_tokens,output_tokens\n"
    b"1763632800,1763632860,,,proj_ours,3.0,key_ours,gpt-realtime,100,50\n"
    b"1763632860,1763632920,,,proj_ours,1.0,,gpt-realtime,10,5\n"
)


def test_csv_with_missing_optional_columns_imports():
    result = csv_import.import_csv(kind="usage", data=GOOD, file_name="completions_usage_2025-11-20.csv")
    assert result.rows == 2
    bucket = UsageBucket.objects.get(api_key_id="key_ours")
    assert (bucket.input_tokens, bucket.output_tokens, bucket.num_model_requests) == (100, 50, 3)
    assert bucket.input_audio_tokens == 0
    csv_import.import_csv(kind="usage", data=GOOD)
    assert UsageBucket.objects.count() == 2


def test_empty_usage_export_has_only_time_columns():
    assert (
        csv_import.import_csv(kind="usage", data=b"start_time,end_time,start_time_iso,end_time_iso\n").rows
        == 0
    )


def test_csv_missing_required_columns_is_rejected_per_row():
    data = b"start_time,end_time,model,output_tokens\n1763632800,1763632860,gpt-realtime,5\n1763632860,1763632920,x,1\n"
    with pytest.raises(csv_import.CsvRejected) as exc:
        csv_import.import_csv(kind="usage", data=data)
    assert exc.value.errors == [
        "Header: missing required column(s) input_tokens.",
        "Row 2: no value for required column input_tokens.",
        "Row 3: no value for required column input_tokens.",
    ]
    assert not UsageBucket.objects.exists() and not UsageUpload.objects.exists()


def test_csv_with_one_bad_row_imports_nothing():
    data = GOOD + b"1763632920,1763632980,,,proj_ours,1.0,k,gpt-realtime,lots,5\nnope,,,,,,,,1,1\n"
    with pytest.raises(csv_import.CsvRejected) as exc:
        csv_import.import_csv(kind="usage", data=data)
    assert exc.value.errors == [
        "Row 4: input_tokens is not a number: 'lots'.",
        "Row 5: start_time is not a time: 'nope'; end_time is empty.",
    ]
    assert not UsageBucket.objects.exists()


def test_cost_csv_imports_amounts_as_microdollars():
    data = (
        b"start_time,end_time,start_time_iso,end_time_iso,amount_value,amount_currency,quantity,quantity_unit,"
        b"line_item,user_id,api_key_id,project_id,organization_id,project_name,organization_name,user_email,"
        b"api_source\n1763596800,1763683200,,,0.003835980000000000000000000000,usd,959.0,tokens,"
        b'"gpt-realtime, input_text_tokens",,,proj_ours,org_1,P,O,,\n'
    )
    csv_import.import_csv(kind="costs", data=data)
    cost = CostBucket.objects.get()
    assert cost.amount_microusd == 3836 and cost.line_item == "gpt-realtime, input_text_tokens"


def test_admin_upload_shows_errors_per_row(staff_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    url = reverse("admin:realtime_usageupload_add")
    bad = SimpleUploadedFile("u.csv", b"start_time,end_time,model\n1,2,m\n", content_type="text/csv")
    resp = staff_client.post(url, {"kind": "usage", "file": bad})
    assert resp.status_code == 200
    assert b"Row 2: no value for required column input_tokens, no value" not in resp.content
    assert (
        b"Row 2: no value for required column input_tokens; no value for required column output_tokens."
        in resp.content
    )
    assert not UsageBucket.objects.exists()
    good = SimpleUploadedFile("u.csv", GOOD, content_type="text/csv")
    resp = staff_client.post(url, {"kind": "usage", "file": good})
    assert resp.status_code == 302 and UsageBucket.objects.count() == 2
    assert UsageUpload.objects.get().uploaded_by.email == "staff@example.com"


# --- review --------------------------------------------------------------------------------------


@pytest.fixture
def leak_flag(traffic):
    reconcile.reconcile(since=T0, until=T0 + timedelta(hours=2))
    return Flag.objects.get(kind=FlagKind.OUTSIDE_WINDOW, window_start__gte=T0 + timedelta(hours=1))


def test_admin_actions_suspend_claw_back_and_resolve(staff_client, staff, leak_flag, alice):
    fund(alice, 1000)
    url = reverse("admin:realtime_flag_changelist")
    page = staff_client.post(url, {"action": "claw_back", "_selected_action": [leak_flag.pk]})
    assert page.status_code == 200 and b"reason" in page.content  # the form asks for a reason
    resp = staff_client.post(
        url,
        {
            "action": "claw_back",
            "_selected_action": [leak_flag.pk],
            "apply": "1",
            "credits": "300",
            "reason": "",
        },
    )
    assert resp.status_code == 200 and billing.get_wallet(alice).balance == 1000
    for _ in range(2):  # pressed twice: taken once
        resp = staff_client.post(
            url,
            {
                "action": "claw_back",
                "_selected_action": [leak_flag.pk],
                "apply": "1",
                "credits": "300",
                "reason": "leaked key used for 3 minutes",
            },
        )
        assert resp.status_code == 302
    assert billing.get_wallet(alice).balance == 700
    resp = staff_client.post(
        url,
        {"action": "suspend_user", "_selected_action": [leak_flag.pk], "apply": "1", "reason": "leaked key"},
    )
    assert resp.status_code == 302
    alice.refresh_from_db()
    assert alice.is_suspended
    leak_flag.refresh_from_db()
    assert leak_flag.status == FlagStatus.ACKNOWLEDGED and leak_flag.reviewer == staff
    assert "Clawed back 300 credits" in leak_flag.notes and "Suspended alice@example.com" in leak_flag.notes
    staff_client.post(url, {"action": "resolve", "_selected_action": [leak_flag.pk]})
    leak_flag.refresh_from_db()
    assert leak_flag.status == FlagStatus.RESOLVED
    # A re-run keeps the review.
    reconcile.reconcile(since=T0, until=T0 + timedelta(hours=2))
    leak_flag.refresh_from_db()
    assert leak_flag.status == FlagStatus.RESOLVED and leak_flag.reviewer == staff
    detail = staff_client.get(reverse("admin:realtime_flag_change", args=[leak_flag.pk]))
    assert detail.status_code == 200 and b"likely_leaked" in detail.content


def test_claw_back_needs_a_reason_and_a_user(staff, leak_flag):
    with pytest.raises(services.FlagActionError, match="reason"):
        services.claw_back(flag=leak_flag, reviewer=staff, credits=10, reason=" ")
    leak_flag.user = None
    with pytest.raises(services.FlagActionError, match="names no user"):
        services.claw_back(flag=leak_flag, reviewer=staff, credits=10, reason="x")


def test_dashboard_for_staff_only(alice, staff_client, leak_flag):
    from django.test import Client

    url = reverse("reconciliation_dashboard") + "?since=2026-11-20&until=2026-11-20"
    other = Client()
    other.force_login(alice)
    assert other.get(url).status_code == 302
    resp = staff_client.get(url)
    assert resp.status_code == 200
    body = resp.content.decode()
    assert 'id="tokens-chart"' in body and "uPlot.iife.min.js" in body and "cdn" not in body.lower()
    assert reverse("admin:realtime_flag_change", args=[leak_flag.pk]) in body
    tokens = resp.context["tokens"]
    assert len(tokens["x"]) == 24
    assert tokens["reported"][10] == 6 * 5 * 1000 + 5000 + 400
    assert tokens["metered"][10] == 6 * 5 * 1000 + 400
    assert sum(tokens["reported"]) == tokens["reported"][10] + tokens["reported"][11]


def test_beat_schedule_default(settings):
    from realtime_saas.celery import app

    app.loader.import_default_modules()
    assert "sessions.reconciliation.import_and_reconcile" in app.tasks
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(task="sessions.reconciliation.import_and_reconcile")  # data migration
    assert (task.interval.every, task.interval.period, task.enabled) == (15, "minutes", True)
