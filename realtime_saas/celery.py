"""The Celery application. Broker: Redis when REDIS_URL is set, else kombu's filesystem transport."""

import logging
import os
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger

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
    from realtime_saas.logging import RedactSecretsFilter

    for handler in logger.handlers:
        handler.addFilter(RedactSecretsFilter())


# acks_late: a task that does nothing but answer can safely run twice.
@app.task(name="realtime_saas.ping", acks_late=True)
def ping() -> str:
    """A no-op task: proves a worker consumes the broker (used by tests and `make run`)."""
    return "pong"


# Beat heartbeat: beat sends this every BEAT_HEARTBEAT_SECONDS and a worker records when it ran, so
# its age proves beat, the broker and a worker all work. /readyz (staff detail) and the worker's
# metrics (realtime_saas.metrics) read it. Kept in the "heartbeat" cache (Redis when there is one):
# every process reads the same value. Not acks_late: a lost beat is replaced by the next one.
BEAT_HEARTBEAT_KEY = "celery-beat-heartbeat"


@app.task(name="realtime_saas.beat_heartbeat", soft_time_limit=10, time_limit=20)
def beat_heartbeat() -> float:
    """Record now (a UNIX timestamp) as the last beat heartbeat."""
    import time

    from django.core.cache import caches

    now = time.time()
    caches["heartbeat"].set(BEAT_HEARTBEAT_KEY, now, timeout=None)
    return now


def last_beat_heartbeat() -> float | None:
    """When a worker last ran the beat heartbeat (UNIX time), or None if never (or unreadable)."""
    from django.core.cache import caches

    try:
        value = caches["heartbeat"].get(BEAT_HEARTBEAT_KEY)
    except Exception:  # a cache outage is reported as "no heartbeat", not as a crash of /readyz
        logging.getLogger(__name__).warning("beat heartbeat unreadable", exc_info=True)
        return None
    return float(value) if value is not None else None
