"""Celery tasks of reconciliation: import, then reconcile what was imported (beat, every 15 min);
and every minute, the key-mode windows that have just ended (keymode.py).

Both steps are idempotent, so a task killed half-way (acks_late re-delivers it) or retried simply
runs again and leaves the same rows.
"""

import logging
from datetime import datetime, timedelta

from celery import shared_task
from django.utils import timezone

from sessions import openai_client
from sessions.reconciliation import importer, keymode, reconcile
from sessions.reconciliation.models import ImportWatermark

logger = logging.getLogger(__name__)

# One retry policy (STYLE.md rule 18), billing's (billing/tasks.py): Celery's own, for named
# transient errors only (autoretry_for), exponential backoff with full jitter and a cap. Retry n
# waits a delay drawn uniformly from [0, min(base · 2^n, max)]; any other error is not retried.
# Eager Celery (tests) never waits: the retry surfaces as celery.exceptions.Retry from apply().
TRANSIENT_ERRORS = (openai_client.UpstreamUnavailable,)  # timeout, unreachable, rate limited
# The import (beat, every 15 min): at most 30 s, 1, 2, 4 and 8 min apart (5 retries).
IMPORT_MAX_RETRIES = 5
IMPORT_RETRY_BACKOFF_SECONDS = 30
IMPORT_RETRY_BACKOFF_MAX_SECONDS = 600
# Key-mode windows (every minute): at most 5, 10 and 20 s apart (3 retries), within the minute.
KEY_WINDOWS_MAX_RETRIES = 3
KEY_WINDOWS_RETRY_BACKOFF_SECONDS = 5
KEY_WINDOWS_RETRY_BACKOFF_MAX_SECONDS = 30
# How far reconciliation got: the end of the newest usage window reconciled (an ImportWatermark
# row of its own); the worker's metrics show the lag behind now (realtime_saas/metrics.py).
RECONCILED_WATERMARK = "reconciled"


# acks_late: the import upserts buckets by their natural key and moves its watermark only after
# them, and reconciling upserts flags, so a run re-delivered after its worker died writes the same
# rows. Limits: a day of minute buckets in chunks, each Usage API page within OPENAI_TIMEOUT_SECONDS.
@shared_task(
    name="sessions.reconciliation.import_and_reconcile",
    ignore_result=True,
    acks_late=True,
    soft_time_limit=600,
    time_limit=660,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=IMPORT_RETRY_BACKOFF_SECONDS,
    retry_backoff_max=IMPORT_RETRY_BACKOFF_MAX_SECONDS,
    retry_jitter=True,
    max_retries=IMPORT_MAX_RETRIES,
)
def import_and_reconcile() -> dict:
    """Pull usage (from the watermark minus the overlap) and costs, then reconcile that window and
    check the cost of the last two whole days."""
    usage = importer.import_usage()
    costs = importer.import_costs()
    result = reconcile.reconcile(since=usage.start, until=usage.end, cost_days=False)
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    reconcile.upsert_flags(reconcile.cost_drift_findings(since=today - timedelta(days=2), until=today), result)
    _mark_reconciled(until=usage.end)
    return {"usage_buckets": usage.buckets, "cost_buckets": costs.buckets, "flags_created": result.created}


# acks_late: it reads what was imported and upserts flags (no upstream call, no ledger entry).
def _mark_reconciled(*, until: datetime) -> None:
    mark, _ = ImportWatermark.objects.get_or_create(name=RECONCILED_WATERMARK)
    ImportWatermark.objects.filter(pk=mark.pk).update(
        watermark=max(until, mark.watermark) if mark.watermark else until, last_finished_at=timezone.now()
    )


@shared_task(name="sessions.reconciliation.reconcile_window", ignore_result=True, acks_late=True,
             soft_time_limit=600, time_limit=660)
def reconcile_window(since_iso: str, until_iso: str) -> int:
    """Reconcile one window of what was already imported (no upstream call, so nothing to retry)."""
    result = reconcile.reconcile(since=datetime.fromisoformat(since_iso), until=datetime.fromisoformat(until_iso))
    return result.created


# Every minute (expires 55 s): not acks_late, windows a lost run left stay due for the next one;
# its limits keep it within its minute.
@shared_task(
    name="sessions.reconciliation.reconcile_key_windows",
    ignore_result=True,
    soft_time_limit=45,
    time_limit=55,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=KEY_WINDOWS_RETRY_BACKOFF_SECONDS,
    retry_backoff_max=KEY_WINDOWS_RETRY_BACKOFF_MAX_SECONDS,
    retry_jitter=True,
    max_retries=KEY_WINDOWS_MAX_RETRIES,
)
def reconcile_key_windows() -> dict:
    """Every minute (CELERY_BEAT_SCHEDULE): reconcile the key-mode windows that ended at least
    RECONCILIATION_KEY_WINDOW_DELAY_SECONDS ago. If the Usage API fails they stay due for the next
    run; a transient failure (timeout, unreachable, rate limited) is retried first, within the minute."""
    result = keymode.reconcile_due_windows()
    return {
        "due": result.due,
        "reconciled": result.reconciled,
        "abusive": result.abusive,
        "doubtful": result.doubtful,
        "charged_credits": result.charged_credits,
        "uncollected_credits": result.uncollected_credits,
        "errors": result.errors,
    }
