"""Validly signed but malformed Stripe webhook bodies: 400 with the reason, nothing stored; and
the webhook secret never shows on Django's DEBUG error page."""

import json
import sys
import time

import pytest
from django.views.debug import ExceptionReporter

from billing import stripe_client
from billing.models import StripeEvent

WEBHOOK_URL = "/billing/stripe/webhook/"
SECRET = "whsec_test_0123456789abcdef0123456789abcdef"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _webhook_secret(settings):
    settings.STRIPE_WEBHOOK_SECRET = SECRET


def _post_signed(client, body: str):
    header = stripe_client.signature_header_for_tests(body, SECRET, timestamp=int(time.time()))
    return client.post(WEBHOOK_URL, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)


def _event(**changes) -> dict:
    event = {
        "id": "evt_malformed_1", "object": "event", "type": "checkout.session.completed", "livemode": False,
        "created": int(time.time()), "data": {"object": {"id": "cs_test_1", "object": "checkout.session"}},
    }
    event.update(changes)
    return event


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("[1]", "not a JSON object"),
        ('"x"', "not a JSON object"),
        ("null", "not a JSON object"),
        ("{not json", "not JSON"),
        (json.dumps(_event(data={"object": "cs_test_1"})), "data.object"),
        (json.dumps(_event(data="x")), "data.object"),
        (json.dumps(_event(data={"object": {"id": ["cs"]}})), "data.object.id"),
        (json.dumps(_event(id="evt_" + "x" * 300)), "id"),
        (json.dumps(_event(id=12)), "id"),
        (json.dumps(_event(type=["checkout.session.completed"])), "type"),
        (json.dumps(_event(data={"object": {"id": "cs_" + "x" * 300}})), "data.object.id"),
        (json.dumps(_event(object="charge")), "Not a Stripe event"),
    ],
)
def test_a_signed_but_malformed_body_is_refused_with_the_reason_and_nothing_is_stored(client, body, reason):
    response = _post_signed(client, body)
    assert response.status_code == 400
    assert reason in response.content.decode()
    assert StripeEvent.objects.count() == 0


def test_a_well_formed_signed_event_is_still_stored(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        response = _post_signed(client, json.dumps(_event()))
    assert response.status_code == 200
    assert StripeEvent.objects.get().event_id == "evt_malformed_1"


def test_the_debug_error_page_never_shows_the_webhook_secret(rf, settings):
    settings.DEBUG = True
    request = rf.post(WEBHOOK_URL)
    try:
        stripe_client.construct_event(payload=None, sig_header="t=1,v1=00")
    except Exception:
        html = ExceptionReporter(request, *sys.exc_info()).get_traceback_html()
    else:
        pytest.fail("a payload that is not bytes must raise")
    assert "construct_event" in html  # the frame is on the page...
    assert SECRET not in html  # ...without the secret among its variables
