"""/readyz shows staff the beat heartbeat (issue 13, item 4); nobody else sees it."""

from datetime import timedelta

import pytest
import time_machine
from django.core.cache import caches

from realtime_saas.beat import BEAT_HEARTBEAT_KEY
from realtime_saas.celery import beat_heartbeat

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_heartbeat_yet():
    caches["heartbeat"].delete(BEAT_HEARTBEAT_KEY)


def test_staff_see_the_beat_heartbeat_fresh_then_stale(staff_client):
    assert staff_client.get("/readyz").json()["beat"] == {"status": "never", "last_heartbeat": None,
                                                          "age_seconds": None}
    with time_machine.travel("2026-12-01 12:00:00+00:00", tick=False):
        beat_heartbeat.apply()
        fresh = staff_client.get("/readyz")
    assert fresh.status_code == 200
    assert fresh.json()["beat"] == {"status": "ok", "last_heartbeat": "2026-12-01T12:00:00+00:00", "age_seconds": 0.0}
    with time_machine.travel("2026-12-01 12:01:31+00:00", tick=False):  # more than 3 periods of 30 s
        stale = staff_client.get("/readyz")
    assert stale.status_code == 200  # the web itself is ready; the beat is the operator's alert
    assert stale.json()["beat"] == {"status": "stale", "last_heartbeat": "2026-12-01T12:00:00+00:00",
                                    "age_seconds": 91.0}


def test_anonymous_and_users_are_not_told_about_the_beat(client, alice_client):
    beat_heartbeat.apply()
    assert "beat" not in client.get("/readyz").json()
    assert "beat" not in alice_client.get("/readyz").json()


def test_the_heartbeat_age_uses_the_recorded_time(staff_client):
    beat_heartbeat.apply()
    with time_machine.travel(timedelta(seconds=45)):
        assert staff_client.get("/readyz").json()["beat"]["status"] == "ok"
