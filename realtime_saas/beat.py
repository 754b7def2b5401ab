"""The beat heartbeat: beat sends `realtime_saas.beat_heartbeat` (realtime_saas/celery.py) every
BEAT_HEARTBEAT_SECONDS and a worker records when it ran, so its age proves that beat, the broker
and a worker all work. /readyz (staff detail) and the worker's metrics read it. It is kept in the
"heartbeat" cache (Redis when there is one), so every process reads the same value."""

import logging
import time

from django.core.cache import caches

logger = logging.getLogger(__name__)

BEAT_HEARTBEAT_KEY = "celery-beat-heartbeat"


def record_beat_heartbeat() -> float:
    """Record now (a UNIX timestamp) as the last beat heartbeat; returns it."""
    now = time.time()
    caches["heartbeat"].set(BEAT_HEARTBEAT_KEY, now, timeout=None)
    return now


def last_beat_heartbeat() -> float | None:
    """When a worker last ran the beat heartbeat (UNIX time), or None if never (or unreadable)."""
    try:
        value = caches["heartbeat"].get(BEAT_HEARTBEAT_KEY)
    except Exception:  # a cache outage is reported as "no heartbeat", not as a crash of /readyz
        logger.warning("beat heartbeat unreadable", exc_info=True)
        return None
    return float(value) if value is not None else None
