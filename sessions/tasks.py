"""Celery tasks of sessions: thin wrappers that call a service."""

import logging

from celery import shared_task

from sessions import services

logger = logging.getLogger(__name__)


# Every minute: a run may not outlast its period (the next one would overlap it); not acks_late,
# the next run settles what a lost one left.
@shared_task(name="sessions.tasks.sweep_calls", ignore_result=True, soft_time_limit=50, time_limit=60)
def sweep_calls() -> int:
    """Every minute (CELERY_BEAT_SCHEDULE): settle open calls nobody meters once their window
    closes, at their full hold, so no credits stay held forever."""
    return services.sweep_calls()
from sessions.reconciliation.tasks import (  # noqa: E402,F401
    import_and_reconcile,
    reconcile_key_windows,
    reconcile_window,
)
from sessions.supervisor.tasks import free_dead_leases  # noqa: E402,F401
