import pytest
from django.db import connection

from tests.factories import DEFAULT_PASSWORD, StaffFactory, UserFactory

# The offline stand-ins, started as subprocesses on free ports when a test asks for them.
pytest_plugins = ["fakes.openai.pytest_plugin", "fakes.stripe.pytest_plugin"]


def pytest_collection_modifyitems(config, items):
    """Skip what this machine cannot run: `postgres` tests on SQLite, `e2e` tests without Chromium
    (`make test` and CI have both, so nothing is skipped there)."""
    from django.conf import settings

    from tests.e2e.conftest import CHROMIUM

    vendor = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    skips = {}
    if vendor != "postgresql":
        skips["postgres"] = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL (CI always does)")
    if not CHROMIUM.exists():
        skips["e2e"] = pytest.mark.skip(reason=f"{CHROMIUM} is missing: run scripts/install-chromium.sh")
    for item in items:
        for marker, skip in skips.items():
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def password() -> str:
    return DEFAULT_PASSWORD


@pytest.fixture
def alice(db):
    return UserFactory(email="alice@example.com", name="Alice")


@pytest.fixture
def bob(db):
    return UserFactory(email="bob@example.com", name="Bob")


@pytest.fixture
def staff(db):
    return StaffFactory(email="staff@example.com", name="Staff")


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def openai_settings(settings, fake_openai):
    """The product talking to a freshly reset fakes/openai with our standard key. The timeout is
    shorter than the `timeout` faults tests inject (3-4 s), so those end as client timeouts."""
    settings.OPENAI_BASE_URL = fake_openai.base_url
    settings.OPENAI_API_KEY = fake_openai.project_key
    settings.OPENAI_TIMEOUT_SECONDS = 2.0
    return fake_openai


@pytest.fixture
def is_postgres() -> bool:
    return connection.vendor == "postgresql"


@pytest.fixture(scope="session")
def live_asgi_server(django_db_setup, django_db_blocker, tmp_path_factory):
    """The product served by a real daphne subprocess (HTTP and WebSockets) on a free port.

    Tests that use it need `transactional_db` so the server sees their rows. Extra environment for
    the server (e.g. fake OpenAI/Stripe URLs) belongs in a fixture of its own that starts another.
    """
    from tests.live import start_daphne

    with django_db_blocker.unblock():
        server = start_daphne(tmp_path_factory.mktemp("live"))
    yield server
    server.stop()
