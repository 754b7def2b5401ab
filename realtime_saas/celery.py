"""The Celery application. Broker: Redis when REDIS_URL is set, else kombu's filesystem transport."""

import logging
import os
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime_saas.settings")

app = Celery("realtime_saas")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _make_filesystem_queue_dirs(sender: Celery, **kwargs: Any) -> None:
    # The filesystem transport does not create its folders and fails on the first publish.
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redact_celery_logs(logger: logging.Logger, **kwargs: Any) -> None:
    # Celery sets up its own handlers: the same filters (and, with LOG_FORMAT=json, the same
    # formatter) as Django's LOGGING.
    from django.conf import settings

    from realtime_saas.logging import ContextFilter, JsonFormatter, RedactSecretsFilter

    for handler in logger.handlers:
        handler.addFilter(RedactSecretsFilter())
        handler.addFilter(ContextFilter())
        if settings.LOG_FORMAT == "json":
            handler.setFormatter(JsonFormatter())


@worker_init.connect
def _worker_metrics(**kwargs: Any) -> None:
    """The worker's main process serves the worker's metrics (WORKER_METRICS_PORT); the task
    counters are kept by whichever process runs the task (prefork children: multiprocess mode)."""
    from realtime_saas import metrics

    metrics.start_worker_listener()


def _count_tasks() -> None:
    from realtime_saas import metrics

    metrics.connect_worker_signals()


_count_tasks()


# acks_late: a task that does nothing but answer can safely run twice.
@app.task(name="realtime_saas.ping", acks_late=True)
def ping() -> str:
    """A no-op task: proves a worker consumes the broker (used by tests and `make run`)."""
    return "pong"


# The beat heartbeat (realtime_saas/beat.py). Not acks_late: a lost beat is replaced by the next one.
@app.task(name="realtime_saas.beat_heartbeat", soft_time_limit=10, time_limit=20)
def beat_heartbeat() -> float:
    """Record now as the last beat heartbeat (UNIX time)."""
    from realtime_saas.beat import record_beat_heartbeat

    return record_beat_heartbeat()
