import pytest
from django.db import connection


def test_healthz_answers_without_touching_dependencies(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_every_dependency_ready(staff_client):
    response = staff_client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"] == {"database": "ok", "broker": "ok", "channel_layer": "ok"}


@pytest.mark.django_db
def test_readyz_names_the_broker_when_it_is_unreachable(staff_client, settings):
    # Port 1 on loopback refuses connections: a real unreachable Redis, not a mock.
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    response = staff_client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["broker"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("unavailable: ")


@pytest.mark.django_db(transaction=True)
def test_readyz_answers_unavailable_when_the_database_is_unreachable(client):
    # Who is asking cannot be known without the database: the answer is the anonymous one.
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "postgresql":
        connection.settings_dict.update(PORT="1", HOST="127.0.0.1")
    else:
        connection.settings_dict["NAME"] = "/nonexistent/dir/db.sqlite3"
    try:
        response = client.get("/readyz")
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}
