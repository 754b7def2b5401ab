import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE"}}
    clean.update(ENV_FILE="/nonexistent", DJANGO_SETTINGS_MODULE="realtime_saas.settings", **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


def test_production_refuses_to_start_with_the_development_secret_key():
    result = _run(["check"], DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_a_refused_setting_is_reported_as_such_by_every_command():
    """Django carries on past a settings error and fails later with "Models aren't loaded yet";
    manage.py stops at the settings and says why."""
    result = _run(["makemigrations", "--check", "--dry-run"], DEBUG="false")
    assert result.returncode != 0
    assert result.stderr.startswith("Settings refused to load: SECRET_KEY must be set")
    assert "Models aren't loaded" not in result.stderr and "Traceback" not in result.stderr


def test_production_refuses_a_short_secret_key():
    result = _run(["check"], DEBUG="false", SECRET_KEY="short")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_bad_boolean_fails_loudly():
    result = _run(["check"], DEBUG="maybe-ish", SECRET_KEY=secrets.token_urlsafe(50))
    assert result.returncode != 0
    assert "DEBUG must be true or false, not 'maybe-ish'" in result.stderr


def test_bad_database_url_fails_loudly():
    result = _run(["check"], DEBUG="true", DATABASE_URL="nosuchdb://x")
    assert result.returncode != 0
    assert "nosuchdb" in result.stderr


def test_check_deploy_reports_no_warnings_with_production_settings():
    result = _run(
        ["check", "--deploy", "--fail-level", "WARNING"],
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_api_schema_builds_without_warnings():
    result = _run(["spectacular", "--validate", "--fail-on-warn", "--file", os.devnull], DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr


@pytest.mark.django_db
def test_anonymous_users_get_403_on_the_schema_docs(client):
    assert client.get("/api/docs/").status_code == 403


@pytest.mark.django_db
def test_customers_get_403_on_the_schema_docs_and_staff_see_them(client, alice, staff):
    client.force_login(alice)
    assert client.get("/api/docs/").status_code == 403
    client.force_login(staff)
    response = client.get("/api/docs/")
    assert response.status_code == 200
    # Swagger UI comes from our own static files, never a CDN.
    assert b"cdn." not in response.content
    assert b"/static/drf_spectacular_sidecar/" in response.content


@pytest.mark.django_db
def test_api_needs_authentication(client):
    assert client.get("/api/schema/").status_code == 403


def test_secrets_are_redacted_from_log_lines(caplog):
    import logging

    from realtime_saas.logging import RedactSecretsFilter

    logger = logging.getLogger("tests.redaction")
    handler = logging.StreamHandler()
    handler.addFilter(RedactSecretsFilter())
    record = logger.makeRecord(
        "tests.redaction", logging.INFO, __file__, 1,
        "key %s and %s and %s", ("sk-proj-abcdef123456", "ek_0123456789abcdef", "whsec_abc123xyz"), None,
    )
    assert RedactSecretsFilter().filter(record)
    message = record.getMessage()
    assert "abcdef123456" not in message
    assert "0123456789abcdef" not in message
    assert "abc123xyz" not in message
    assert message.count("[redacted]") == 3


def test_tests_without_redis_never_queue_tasks_where_make_run_s_worker_reads():
    # The embedded default's broker is the filesystem under var/celery; a test's servers and workers
    # (which inherit this process's environment) must use a queue of their own.
    env = {k: v for k, v in os.environ.items() if k not in {"CELERY_BROKER_URL", "CELERY_DATA_DIR"}}
    env.update(DJANGO_SETTINGS_MODULE="realtime_saas.settings_test", REDIS_URL="", PYTHONPATH=str(ROOT))
    code = ("from django.conf import settings; o = settings.CELERY_BROKER_TRANSPORT_OPTIONS; "
            "print(settings.CELERY_BROKER_URL, o['data_folder_in'], o['data_folder_out'], sep='\\n')")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    developer_queue = str(ROOT / "var" / "celery" / "queue")
    assert out[0] == "filesystem://"
    assert developer_queue not in out[1:]
    assert all(Path(folder).is_relative_to(ROOT / "var" / "test-celery") for folder in out[1:])
