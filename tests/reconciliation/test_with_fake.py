"""Reconciliation against fakes/openai: real usage from calls started through the product."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from sessions import openai_client
from sessions import services as calls
from sessions.models import RealtimeCall
from sessions.reconciliation import csv_import, importer, reconcile
from sessions.reconciliation.models import CostBucket, Flag, FlagKind, ImportWatermark, UsageBucket
from tests.reconciliation.conftest import USAGE, meter_from_fake, outside_call

pytestmark = pytest.mark.django_db(transaction=False)


def window():
    now = timezone.now()
    return now - timedelta(minutes=10), now + timedelta(minutes=10)


def run(since, until):
    importer.import_usage(since=since, until=until)
    return reconcile.reconcile(since=since, until=until)


def bucket_values():
    fields = [
        "start_time",
        "width_seconds",
        "project_id",
        "api_key_id",
        "model",
        "input_tokens",
        "output_tokens",
        "input_cached_tokens",
        "input_text_tokens",
        "input_cached_text_tokens",
        "output_text_tokens",
        "input_audio_tokens",
        "input_cached_audio_tokens",
        "output_audio_tokens",
        "num_model_requests",
    ]
    return sorted(UsageBucket.objects.values_list(*fields))


def start_proxy(funded, assistant, offer, fake, responses=3):
    call, _ = calls.start_proxy_call(user=funded, assistant_id=assistant.pk, offer_sdp=offer)
    for _ in range(responses):
        fake.response_done(call.openai_call_id, USAGE)
    call.refresh_from_db()
    return call


def at_a_minute_start(fake) -> None:
    """The fake's clock (the Usage API's) just past the next whole minute: what it serves in the
    next minute falls in one minute bucket."""
    fake.set_clock((int(fake.now()) // 60 + 1) * 60 + 1)


def test_clean_traffic_raises_no_flag(recon, funded, assistant, offer):
    at_a_minute_start(recon)
    call = start_proxy(funded, assistant, offer, recon)
    assert meter_from_fake(recon, call) == 3
    since, until = window()
    result = run(since, until)
    assert result.reported_rows == 1  # one minute, one model
    assert UsageBucket.objects.filter(api_key_id=recon.project_key_id).count() == 1
    assert sum(b.total_tokens for b in UsageBucket.objects.all()) == 3 * 1500
    assert Flag.objects.count() == 0


def test_secret_used_after_expected_end_raises_one_outside_window_flag(
    recon, funded, assistant, offer, mailoutbox, django_capture_on_commit_callbacks
):
    call, minted = calls.mint_client_secret(user=funded, assistant_id=assistant.pk)
    # Our own client attaches its call and is metered; nothing wrong so far.
    own_call_id = outside_call(recon, minted.value, offer)
    calls.attach_call_id(user=funded, call=call, openai_call_id=own_call_id)
    recon.response_done(own_call_id, USAGE)
    call.refresh_from_db()
    meter_from_fake(recon, call)
    # The secret leaked: an outside client starts a call with it before it expires, and keeps
    # talking after our call's expected end (the fake's clock moves on 5 minutes).
    leaked_call_id = outside_call(recon, minted.value, offer)
    assert (call.expected_end_at - timezone.now()) < timedelta(minutes=2)
    recon.shift_clock(300)
    recon.response_done(leaked_call_id, USAGE)
    recon.response_done(leaked_call_id, USAGE)
    since, until = window()
    with django_capture_on_commit_callbacks(execute=True):
        run(since, until)

    flags = Flag.objects.filter(kind=FlagKind.OUTSIDE_WINDOW)
    assert flags.count() == 1
    flag = flags.get()
    assert flag.severity == "high"
    assert flag.call_id == call.pk and flag.user_id == funded.pk
    assert flag.attribution == "key" and flag.api_key_id == recon.project_key_id
    assert flag.reported_tokens == 2 * 1500
    named = flag.evidence["likely_leaked"][0]
    assert named["call"] == call.public_id
    assert named["secret_fingerprint"] == minted.fingerprint == call.secret_fingerprint
    assert named["expected_end"] == call.expected_end_at.isoformat()
    assert flag.evidence["tokens_after_window"] == 3000
    assert minted.value not in str(flag.evidence) and minted.value not in flag.summary
    assert not Flag.objects.exclude(kind=FlagKind.OUTSIDE_WINDOW).exists()
    # High severity: staff were told, once.
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["ops@example.com"]

    # Re-running the window (and re-importing) writes no new row.
    counts = (UsageBucket.objects.count(), Flag.objects.count())
    evidence = flag.evidence
    with django_capture_on_commit_callbacks(execute=True):
        run(since, until)
    assert (UsageBucket.objects.count(), Flag.objects.count()) == counts
    assert Flag.objects.get().evidence == evidence
    assert len(mailoutbox) == 1


def test_usage_we_did_not_meter_is_unexplained(recon, funded, assistant, offer):
    call = start_proxy(funded, assistant, offer, recon, responses=4)
    meter_from_fake(recon, call, skip=2)  # two responses never reached our metering
    since, until = window()
    run(since, until)
    flag = Flag.objects.get()
    assert flag.kind == FlagKind.UNEXPLAINED_USAGE
    assert flag.model == "gpt-realtime"
    assert flag.reported_tokens == 4 * 1500 and flag.metered_tokens == 2 * 1500
    minute = next(iter(flag.evidence["minutes"].values()))
    assert minute["excess"] == 3000


def test_key_mode_call_that_never_attached_is_unmonitored(recon, funded, assistant):
    call, _ = calls.mint_client_secret(user=funded, assistant_id=assistant.pk)
    call.refresh_from_db()
    since = timezone.now() - timedelta(minutes=5)
    with time_machine.travel(call.expected_end_at + timedelta(minutes=3)):
        result = reconcile.reconcile(since=since, until=timezone.now())
    flag = Flag.objects.get()
    assert flag.kind == FlagKind.UNMONITORED_CALL and flag.call_id == call.pk and flag.user_id == funded.pk
    assert flag.evidence["secret_fingerprint"] == call.secret_fingerprint
    assert result.created == 1
    with time_machine.travel(call.expected_end_at + timedelta(minutes=4)):
        again = reconcile.reconcile(since=since, until=timezone.now())
    assert again.created == 0 and Flag.objects.count() == 1


def _export_csv(fake_pages: list[dict]) -> bytes:
    """The dashboard's usage export of what the API returned: time columns first, counts as floats,
    some optional columns missing altogether."""
    out = io.StringIO()
    columns = [
        "start_time",
        "end_time",
        "start_time_iso",
        "end_time_iso",
        "project_id",
        "num_model_requests",
        "user_id",
        "api_key_id",
        "model",
        "batch",
        "input_tokens",
        "output_tokens",
        "input_cached_tokens",
        "input_uncached_tokens",
        "input_text_tokens",
        "output_text_tokens",
        "input_cached_text_tokens",
        "input_audio_tokens",
        "input_cached_audio_tokens",
        "output_audio_tokens",
    ]
    writer = csv.writer(out)
    writer.writerow(columns)
    for page in fake_pages:
        for bucket in page["data"]:
            for r in bucket["results"]:
                row = {
                    **r,
                    "start_time": bucket["start_time"],
                    "end_time": bucket["end_time"],
                    "start_time_iso": datetime.fromtimestamp(bucket["start_time"], tz=UTC).isoformat(),
                    "end_time_iso": "",
                    "num_model_requests": f"{r['num_model_requests']}.0",
                }
                writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return out.getvalue().encode()


def test_csv_export_imports_to_the_same_buckets_as_the_api(recon, funded, assistant, offer):
    call = start_proxy(funded, assistant, offer, recon, responses=2)
    recon.shift_clock(120)
    recon.response_done(call.openai_call_id, USAGE)
    since, until = window()
    importer.import_usage(since=since, until=until)
    from_api = bucket_values()
    assert len(from_api) == 2
    page = openai_client.usage_completions_page(
        start_time=importer.to_unix(since), end_time=importer.to_unix(until), limit=1440
    )
    UsageBucket.objects.all().delete()
    result = csv_import.import_csv(kind="usage", data=_export_csv([page]), file_name="completions_usage.csv")
    assert result.rows == 2
    assert bucket_values() == from_api
    # And the API pull over a CSV import changes nothing.
    importer.import_usage(since=since, until=until)
    assert bucket_values() == from_api


def test_costs_import_and_no_drift_for_the_fakes_prices(recon, funded, assistant, offer):
    start_proxy(funded, assistant, offer, recon, responses=3)
    since, until = window()
    importer.import_usage(since=since, until=until)
    costs = importer.import_costs(since=since, until=until)
    assert costs.buckets >= 1
    day = since.replace(hour=0, minute=0, second=0, microsecond=0)
    assert CostBucket.objects.filter(start_time__gte=day - timedelta(days=1)).exists()
    total = sum(CostBucket.objects.values_list("amount_microusd", flat=True))
    ours, _, unpriced = reconcile.our_cost_of_usage(day - timedelta(days=1), day + timedelta(days=2))
    assert unpriced == []
    assert abs(total - ours) <= 2  # rounding only: our price table matches OpenAI's


def test_import_killed_half_way_and_rerun_leaves_the_same_buckets(
    recon, funded, assistant, offer, monkeypatch
):
    call = start_proxy(funded, assistant, offer, recon, responses=1)
    for _ in range(4):  # usage spread over five minutes
        recon.shift_clock(60)
        recon.response_done(call.openai_call_id, USAGE)
    since, until = window()
    importer.import_usage(since=since, until=until)
    clean = bucket_values()
    UsageBucket.objects.all().delete()
    ImportWatermark.objects.all().delete()

    monkeypatch.setitem(importer.PAGE_LIMITS, "usage", 3)  # several pages
    real = openai_client.usage_completions_page
    pages = []

    def dies_on_third_page(**kwargs):
        pages.append(kwargs)
        if len(pages) == 3:
            raise openai_client.UpstreamUnavailable("connection lost")
        return real(**kwargs)

    monkeypatch.setattr(openai_client, "usage_completions_page", dies_on_third_page)
    with pytest.raises(openai_client.UpstreamUnavailable):
        importer.import_usage(since=since, until=until)
    assert ImportWatermark.objects.get(name="usage").watermark is None  # not advanced
    assert ImportWatermark.objects.get(name="usage").last_error == "connection lost"
    assert 0 < len(bucket_values()) < len(clean) or bucket_values() != clean
    importer.import_usage(since=since, until=until)
    assert bucket_values() == clean
    assert ImportWatermark.objects.get(name="usage").watermark is not None


def test_beat_task_imports_from_watermark_and_reconciles(recon, funded, assistant, offer):
    from sessions.reconciliation.tasks import import_and_reconcile

    call = start_proxy(funded, assistant, offer, recon, responses=2)
    meter_from_fake(recon, call)
    first = import_and_reconcile()
    assert first["usage_buckets"] >= 1  # one or two minutes: the task pulls up to now, on the real clock
    mark = ImportWatermark.objects.get(name="usage").watermark
    second = import_and_reconcile()
    assert second["usage_buckets"] == first["usage_buckets"]  # the overlap re-reads, idempotently
    assert ImportWatermark.objects.get(name="usage").watermark >= mark
    assert Flag.objects.count() == 0
    assert RealtimeCall.objects.count() == 1
