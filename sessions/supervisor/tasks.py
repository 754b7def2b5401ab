"""Celery side of the supervisor (registered through sessions/tasks.py)."""

import logging

from celery import shared_task

from sessions.supervisor import store

logger = logging.getLogger(__name__)


# Every minute; not acks_late: the next run frees what a lost one did not.
@shared_task(name="sessions.supervisor.tasks.free_dead_leases", ignore_result=True, soft_time_limit=30,
             time_limit=45)
def free_dead_leases() -> int:
    """Every minute: clear leases that nobody renewed (their supervisor died). Such a call is already
    claimable once its lease expired; this only keeps `lease_owner` honest for staff, and lets
    sessions.tasks.sweep_calls settle calls that no supervisor came back for."""
    freed = store.free_dead_leases()
    if freed:
        logger.info("freed %d dead supervisor lease(s)", freed)
    return freed
