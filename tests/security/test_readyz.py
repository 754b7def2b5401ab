"""/readyz: load balancers learn only ready / not ready; which service is down is for staff
(tests/core/test_health.py: the staff detail)."""

import pytest


@pytest.mark.django_db
def test_readyz_tells_anonymous_callers_only_ready_or_not(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # port 1 refuses: a real unreachable broker
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}


@pytest.mark.django_db
def test_readyz_tells_signed_in_non_staff_only_ready_or_not(alice_client):
    response = alice_client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}
