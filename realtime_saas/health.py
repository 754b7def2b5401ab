"""Liveness (/healthz) and readiness (/readyz) checks."""

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from kombu import Connection

from realtime_saas.beat import last_beat_heartbeat

logger = logging.getLogger(__name__)
CHECK_TIMEOUT_SECONDS = 3


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_broker() -> None:
    with Connection(
        settings.CELERY_BROKER_URL,
        transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        connect_timeout=CHECK_TIMEOUT_SECONDS,
    ) as conn:
        conn.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_SECONDS)


async def _round_trip(layer) -> None:
    channel = await layer.new_channel(prefix="readyz.")
    token = uuid.uuid4().hex
    await layer.send(channel, {"type": "readyz", "token": token})
    message = await asyncio.wait_for(layer.receive(channel), CHECK_TIMEOUT_SECONDS)
    if message.get("token") != token:
        raise RuntimeError("channel layer returned a different message")


def check_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    async_to_sync(_round_trip)(layer)


CHECKS = {"database": check_database, "broker": check_broker, "channel_layer": check_channel_layer}


def run_checks() -> dict[str, str]:
    """Run every check; map each name to "ok" or a short reason (never a URL with credentials)."""
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:
            logger.warning("readiness check %s failed: %s", name, type(exc).__name__)
            results[name] = f"unavailable: {type(exc).__name__}"
    return results


def beat_status() -> dict[str, Any]:
    """The beat heartbeat (realtime_saas/beat.py): "ok" while it is at most three periods old,
    "stale" after, "never" if no worker ever ran it."""
    last = last_beat_heartbeat()
    if last is None:
        return {"status": "never", "last_heartbeat": None, "age_seconds": None}
    age = max(time.time() - last, 0.0)
    return {
        "status": "ok" if age <= 3 * settings.BEAT_HEARTBEAT_SECONDS else "stale",
        "last_heartbeat": datetime.fromtimestamp(last, tz=UTC).isoformat(),
        "age_seconds": round(age, 1),
    }
