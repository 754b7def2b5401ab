import pytest
from django.core.cache import cache

from tests.factories import fund
from tests.sessions.factories import AssistantFactory
from tests.sessions.helpers import make_offer


@pytest.fixture(autouse=True)
def _clear_throttles():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(scope="session")
def offer_sdp() -> str:
    return make_offer()


@pytest.fixture
def assistant(db):
    return AssistantFactory()


@pytest.fixture
def funded_alice(alice):
    fund(alice, 10_000)
    return alice
