"""Celery that survives production (issue 13, item 4): limits on every task, acks_late only where
the task is idempotent, a beat heartbeat."""

import time

from django.conf import settings

from realtime_saas.beat import last_beat_heartbeat
from realtime_saas.celery import app, beat_heartbeat

# The tasks whose re-run after a lost worker writes nothing twice (each says why in its module).
IDEMPOTENT_TASKS = {
    "realtime_saas.ping",
    "billing.process_stripe_event",
    "sessions.reconciliation.import_and_reconcile",
    "sessions.reconciliation.reconcile_window",
}


def _our_tasks() -> dict:
    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}


def test_acks_late_is_not_global_and_only_on_idempotent_tasks():
    assert app.conf.task_acks_late is False
    late = {name for name, task in _our_tasks().items() if task.acks_late}
    assert late == IDEMPOTENT_TASKS


def test_every_task_has_a_soft_and_a_hard_time_limit_the_soft_one_first():
    assert app.conf.task_soft_time_limit == 240
    assert app.conf.task_time_limit == 300
    tasks = _our_tasks()
    assert "billing.process_stripe_event" in tasks
    for name, task in tasks.items():
        soft = task.soft_time_limit or app.conf.task_soft_time_limit
        hard = task.time_limit or app.conf.task_time_limit
        assert soft and hard and soft < hard, name


def test_a_minutely_task_ends_within_its_minute():
    tasks = _our_tasks()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        if entry["schedule"] <= 60:
            task = tasks[entry["task"]]
            assert (task.time_limit or app.conf.task_time_limit) <= 60, entry["task"]


def test_the_beat_heartbeat_is_scheduled_and_records_when_it_ran():
    assert settings.CELERY_BEAT_SCHEDULE["celery-beat-heartbeat"]["task"] == "realtime_saas.beat_heartbeat"
    before = last_beat_heartbeat()
    recorded = beat_heartbeat.apply().get()
    assert last_beat_heartbeat() == recorded
    assert before is None or recorded >= before
    assert abs(recorded - time.time()) < 3600  # a UNIX timestamp, not a monotonic clock
