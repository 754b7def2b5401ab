import pytest
from django.core.cache import cache

from tests.sessions.factories import AssistantFactory
from tests.sessions.helpers import fund, make_offer


@pytest.fixture(autouse=True)
def _clear_throttles():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(scope="session")
def offer_sdp() -> str:
    return make_offer()


@pytest.fixture
def openai_settings(settings, fake_openai):
    settings.OPENAI_BASE_URL = fake_openai.base_url
    settings.OPENAI_API_KEY = fake_openai.project_key
    settings.OPENAI_TIMEOUT_SECONDS = 2.0
    return fake_openai


@pytest.fixture
def assistant(db):
    return AssistantFactory()


@pytest.fixture
def funded_alice(alice):
    fund(alice, 10_000)
    return alice
