"""Structured logs (issue 13, item 5): with LOG_FORMAT=json one JSON object per line, carrying the
request id, user id, call and Stripe event where they apply; secrets redacted as before."""

import io
import json
import logging
import subprocess
import sys

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from billing import tasks
from realtime_saas.logging import ContextFilter, JsonFormatter, RedactSecretsFilter, log_context
from realtime_saas.middleware import RequestContextMiddleware
from tests.live import ROOT, subprocess_env

pytestmark = pytest.mark.django_db


@pytest.fixture
def json_lines():
    """A handler configured as settings.LOGGING configures the console with LOG_FORMAT=json; the
    lines it wrote, parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecretsFilter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)


def test_a_request_logs_its_id_and_its_signed_in_user(json_lines, alice):
    def view(request):
        assert request.user.pk == alice.pk  # the user, loaded by the view as any view does
        logging.getLogger("tests.view").warning("key sk-proj-abcdefghijkl refused")
        return HttpResponse("ok")

    request = RequestFactory().get("/anything", HTTP_X_REQUEST_ID="req-42")
    request.user = alice
    response = RequestContextMiddleware(view)(request)
    logging.getLogger("tests.view").warning("after the request")

    assert response["X-Request-ID"] == "req-42"
    during, after = json_lines()[-2:]
    assert during["message"] == "key sk-pro…[redacted] refused"
    assert (during["level"], during["logger"]) == ("WARNING", "tests.view")
    assert (during["request_id"], during["user_id"]) == ("req-42", alice.pk)
    assert "request_id" not in after and "user_id" not in after  # the context ended with the request


def test_the_log_never_loads_the_user_itself(json_lines, django_assert_num_queries):
    from django.contrib.auth.middleware import get_user
    from django.utils.functional import SimpleLazyObject

    def view(request):
        logging.getLogger("tests.view").warning("before anyone asked who is signed in")
        return HttpResponse("ok")

    request = RequestFactory().get("/")
    request.session = {}
    request.user = SimpleLazyObject(lambda: get_user(request))
    with django_assert_num_queries(0):
        RequestContextMiddleware(view)(request)
    line = json_lines()[-1]
    assert "user_id" not in line and len(line["request_id"]) == 32


def test_webhook_processing_logs_name_the_stripe_event(json_lines, settings):
    from billing.models import StripeEvent

    settings.STRIPE_EVENT_MAX_ATTEMPTS = 1
    # A handled type whose object is not one Stripe sends: its handler fails, the attempt is the last.
    event = StripeEvent.objects.create(event_id="evt_log_1", type="charge.dispute.created",
                                       payload={"id": "evt_log_1", "type": "charge.dispute.created",
                                                "data": {"object": "not-an-object"}})
    tasks.process_stripe_event_task.apply(args=[event.pk])
    dead = [line for line in json_lines() if "is dead" in line["message"]]
    assert [line["stripe_event"] for line in dead] == ["evt_log_1"]
    assert "exc_info" not in dead[0]


def test_a_watched_call_s_lines_name_it(json_lines):
    with log_context(call="call_abc"):
        logging.getLogger("sessions.supervisor.runner").info("metered")
    assert json_lines()[-1]["call"] == "call_abc"


def test_log_format_json_is_what_the_product_writes(tmp_path):
    """The settings wire it: a management command's log line on stderr is one redacted JSON object."""
    code = "import logging; logging.getLogger('realtime_saas.probe').warning('token sk_live_abcdefgh used')"
    result = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env=subprocess_env(LOG_FORMAT="json"))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if "realtime_saas.probe" in line]
    assert len(lines) == 1
    assert lines[0]["message"] == "token sk_liv…[redacted] used"
    assert lines[0]["level"] == "WARNING"


def test_a_bad_log_format_fails_at_start(tmp_path):
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env=subprocess_env(LOG_FORMAT="xml"))
    assert result.returncode != 0
    assert "LOG_FORMAT must be plain or json, not 'xml'." in result.stderr
