"""Celery tasks of reconciliation: import, then reconcile what was imported (beat, every 15 min);
and every minute, the key-mode windows that have just ended (keymode.py).

Both steps are idempotent, so a task killed half-way (acks_late re-delivers it) or retried simply
runs again and leaves the same rows.
"""

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from sessions import openai_client
from sessions.reconciliation import importer, keymode, reconcile

logger = logging.getLogger(__name__)


@shared_task(
    name="sessions.reconciliation.import_and_reconcile",
    ignore_result=True,
    autoretry_for=(openai_client.UpstreamUnavailable,),
    retry_backoff=30,
    retry_backoff_max=600,
    max_retries=5,
)
def import_and_reconcile() -> dict:
    """Pull usage (from the watermark minus the overlap) and costs, then reconcile that window and
    check the cost of the last two whole days."""
    usage = importer.import_usage()
    costs = importer.import_costs()
    result = reconcile.reconcile(since=usage.start, until=usage.end, cost_days=False)
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    reconcile.upsert_flags(reconcile.cost_drift_findings(since=today - timedelta(days=2), until=today), result)
    return {"usage_buckets": usage.buckets, "cost_buckets": costs.buckets, "flags_created": result.created}


@shared_task(name="sessions.reconciliation.reconcile_window", ignore_result=True)
def reconcile_window(since_iso: str, until_iso: str) -> int:
    from datetime import datetime

    result = reconcile.reconcile(
        since=datetime.fromisoformat(since_iso), until=datetime.fromisoformat(until_iso)
    )
    return result.created


@shared_task(
    name="sessions.reconciliation.reconcile_key_windows",
    ignore_result=True,
    autoretry_for=(openai_client.UpstreamUnavailable,),
    retry_backoff=5,
    retry_backoff_max=30,
    max_retries=3,
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
