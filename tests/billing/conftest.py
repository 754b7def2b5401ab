"""Billing test helpers: the product pointed at fakes/stripe, packs, and signed webhook posts."""

import json
import time

import pytest

from billing import services, stripe_client
from billing.models import CreditPack, Wallet
from tests.billing.factories import CreditPackFactory

WEBHOOK_URL = "/billing/stripe/webhook/"


@pytest.fixture
def stripe_settings(settings, fake_stripe):
    """The product talks to a freshly reset fakes/stripe through the official library."""
    settings.STRIPE_SECRET_KEY = fake_stripe.secret_key
    settings.STRIPE_WEBHOOK_SECRET = fake_stripe.webhook_secret
    settings.STRIPE_API_BASE = fake_stripe.api_base
    settings.STRIPE_TIMEOUT_SECONDS = 5.0
    return fake_stripe


@pytest.fixture
def pack(db) -> CreditPack:
    return CreditPackFactory.create(key="testpack", name="Test pack", credits=1000, price_cents=1000)


def start_purchase(user, pack_key="testpack"):
    return services.start_checkout(
        user=user, pack_key=pack_key, success_url="http://testserver/billing/success/",
        cancel_url="http://testserver/billing/buy/?canceled=1",
    )


def sign(body: str, secret: str, timestamp: int | None = None) -> str:
    return stripe_client.signature_header_for_tests(body, secret, timestamp=timestamp or int(time.time()))


def post_event(client, event: dict, secret: str = "whsec_fake", *, timestamp: int | None = None, header=None):
    """POST an event the way Stripe does: raw JSON bytes and a v1 signature over exactly them."""
    body = json.dumps(event)
    sig = header if header is not None else sign(body, secret, timestamp)
    return client.post(WEBHOOK_URL, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=sig)


def make_event(event_type: str, obj: dict, *, event_id: str | None = None, livemode: bool = False) -> dict:
    return {
        "id": event_id or f"evt_test_{abs(hash((event_type, obj.get('id'), time.time_ns())))}",
        "object": "event",
        "type": event_type,
        "api_version": stripe_client.API_VERSION,
        "created": int(time.time()),
        "livemode": livemode,
        "data": {"object": obj},
    }


@pytest.fixture
def deliver(client, django_capture_on_commit_callbacks):
    """Deliver an event to the webhook and run what it enqueued on commit (eager Celery)."""

    def _deliver(event: dict, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return post_event(client, event, **kwargs)

    return _deliver


def fake_events(fake, event_type: str) -> list[dict]:
    return fake.events(type=event_type)


def only(fake, event_type: str, object_id: str | None = None) -> dict:
    """The last event of `event_type` the fake emitted (about `object_id` when given)."""
    events = [e for e in fake.events(type=event_type) if object_id is None or e["data"]["object"]["id"] == object_id]
    assert events, f"the fake emitted no {event_type}"
    return events[-1]


def balance(user) -> int:
    return Wallet.objects.get(user=user).balance
