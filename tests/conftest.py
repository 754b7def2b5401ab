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


_DB_FIXTURES = ("db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback")

# Every wallet's figures in one statement (one snapshot, so a live server still writing cannot
# make the sums disagree): the cached balance, the ledger's sum, the grants' remaining and debt.
_WALLET_SUMS_SQL = """
SELECT w.id, w.balance, w.debt,
       (SELECT COALESCE(SUM(e.credits), 0) FROM billing_ledgerentry e WHERE e.wallet_id = w.id),
       (SELECT COALESCE(SUM(g.remaining), 0) FROM billing_creditgrant g WHERE g.wallet_id = w.id)
FROM billing_wallet w ORDER BY w.id
"""


@pytest.fixture(autouse=True)
def wallets_add_up(request):
    """After every test that uses the database: each wallet's balance equals the sum of its
    ledger, and the sum of its grants' remaining credits less its debt (issue 15; CreditGrant).

    It asks for the test's database fixture itself, so that fixture is set up first and torn down
    (rolled back) after this check. Tests without database access are left alone."""
    marker = request.node.get_closest_marker("django_db")
    names = set(request.fixturenames)
    if marker is None and not names.intersection(_DB_FIXTURES):
        yield
        return
    transactional = "transactional_db" in names or bool(marker and marker.kwargs.get("transaction"))
    request.getfixturevalue("transactional_db" if transactional else "db")
    yield
    if connection.needs_rollback:  # the test left its transaction broken; nothing can be read
        return
    with connection.cursor() as cursor:
        cursor.execute(_WALLET_SUMS_SQL)
        rows = cursor.fetchall()
    wrong = [
        f"wallet {wallet_id}: balance {balance}, ledger sum {ledger}, grants {grants} − debt {debt}"
        for wallet_id, balance, debt, ledger, grants in rows
        if balance != ledger or balance != grants - debt
    ]
    if wrong:
        pytest.fail("Wallets that do not add up:\n" + "\n".join(wrong), pytrace=False)


@pytest.fixture(autouse=True)
def celery_joins_allowed():
    """Every test starts with Celery's "a join would block" flag off.

    In eager mode (the tests' Celery) `Task.apply_async` runs the task inside
    `celery.result.denied_join_result()`, which saves a process-global flag, sets it, and puts the
    saved value back. Two threads dispatching at once (the racing-worker tests: PostgreSQL
    threads whose commits enqueue tasks) can interleave those steps and leave the flag set, and
    every later `EagerResult.get()` in that process then raises "Never call result.get() within a
    task!" (tests/ops/test_celery_production.py failed that way after a billing race test on the
    same xdist worker). Production workers are not eager; nothing outside the tests dispatches
    that way."""
    from celery._state import _set_task_join_will_block

    _set_task_join_will_block(False)
    yield


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
