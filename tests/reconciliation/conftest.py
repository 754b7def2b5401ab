from datetime import datetime

import httpx
import pytest
from django.core.cache import cache

from sessions.models import ModelPrice, RealtimeCall, UsageRecord
from tests.factories import fund
from tests.sessions.factories import AssistantFactory
from tests.sessions.helpers import make_offer

REFERENCE_PRICES = {  # reference §7, micro-dollars per million tokens
    "gpt-realtime": (4_000_000, 400_000, 16_000_000, 32_000_000, 400_000, 64_000_000),
    "gpt-realtime-mini": (600_000, 60_000, 2_400_000, 10_000_000, 300_000, 20_000_000),
}
CLASS_MAP = {  # our token class -> the fake's usage column (uncached input, as the Usage API)
    "text_in": "input_text_tokens",
    "text_cached": "input_cached_text_tokens",
    "text_out": "output_text_tokens",
    "audio_in": "input_audio_tokens",
    "audio_cached": "input_cached_audio_tokens",
    "audio_out": "output_audio_tokens",
}
USAGE = {  # one response.done usage block
    "total_tokens": 1500,
    "input_tokens": 1000,
    "output_tokens": 500,
    "input_token_details": {
        "text_tokens": 400,
        "audio_tokens": 600,
        "image_tokens": 0,
        "cached_tokens": 200,
        "cached_tokens_details": {"text_tokens": 200, "audio_tokens": 0, "image_tokens": 0},
    },
    "output_token_details": {"text_tokens": 100, "audio_tokens": 400},
}


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def prices(db):
    for model, values in REFERENCE_PRICES.items():
        names = ["text_in", "text_cached", "text_out", "audio_in", "audio_cached", "audio_out"]
        ModelPrice.objects.update_or_create(
            model=model, defaults={f"{n}_microusd_per_mtok": v for n, v in zip(names, values, strict=True)}
        )


@pytest.fixture
def recon(settings, fake_openai, prices):
    """Product settings pointing at the fake, our key and project configured for attribution."""
    settings.OPENAI_BASE_URL = fake_openai.base_url
    settings.OPENAI_API_KEY = fake_openai.project_key
    settings.OPENAI_ADMIN_KEY = fake_openai.admin_key
    settings.OPENAI_TIMEOUT_SECONDS = 5.0
    settings.RECONCILIATION_OPENAI_KEY_IDS = [fake_openai.project_key_id]
    settings.RECONCILIATION_OPENAI_PROJECT_IDS = [fake_openai.project_id]
    settings.RECONCILIATION_TOLERANCE_TOKENS = 200
    settings.RECONCILIATION_TOLERANCE_PERCENT = 5.0
    settings.STAFF_NOTIFY_EMAILS = ["ops@example.com"]
    return fake_openai


@pytest.fixture(scope="session")
def offer() -> str:
    return make_offer()


@pytest.fixture
def assistant(prices):
    return AssistantFactory(max_call_seconds=60, key_ttl_seconds=10, allow_key=True)


@pytest.fixture
def funded(alice):
    fund(alice, 100_000)
    return alice


def meter_from_fake(fake, call: RealtimeCall, *, skip: int = 0) -> int:
    """What the supervisor does (issue 6): one UsageRecord per response.done the fake served for the
    call, at the time it was served. `skip` leaves the last responses unmetered."""
    records = fake.usage_records(call.openai_call_id)
    if skip:
        records = records[:-skip]
    for index, record in enumerate(records):
        UsageRecord.objects.get_or_create(
            call=call,
            response_id=f"resp_{call.openai_call_id}_{index}",
            defaults={
                "at": datetime.fromtimestamp(record["ts"]).astimezone(),
                **{f"{ours}_tokens": int(record.get(theirs) or 0) for ours, theirs in CLASS_MAP.items()},
            },
        )
    RealtimeCall.objects.filter(pk=call.pk).update(metered_at=call.started_at or call.created_at)
    return len(records)


def outside_call(fake, secret: str, offer: str) -> str:
    """An outside client starting a call with a client secret (raw SDP, as a browser does)."""
    resp = httpx.post(
        fake.base_url + "/realtime/calls",
        content=offer,
        timeout=10,
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/sdp"},
    )
    assert resp.status_code == 201, resp.text
    return resp.headers["location"].rsplit("/", 1)[-1]
