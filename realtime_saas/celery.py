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


@app.task(name="realtime_saas.ping")
def ping() -> str:
    """A no-op task: proves a worker consumes the broker (used by tests and `make run`)."""
    return "pong"
