import pytest

from tests.supervisor.helpers import SupervisorThread, make_assistant


@pytest.fixture
def openai_settings(settings, fake_openai):
    settings.OPENAI_API_KEY = fake_openai.project_key
    settings.OPENAI_BASE_URL = fake_openai.base_url
    settings.OPENAI_TIMEOUT_SECONDS = 5.0
    return fake_openai


@pytest.fixture
def assistant(transactional_db):
    return make_assistant()


@pytest.fixture
def supervisor(transactional_db, openai_settings):
    started = []

    def start(**overrides) -> SupervisorThread:
        thread = SupervisorThread(**overrides).start()
        started.append(thread)
        return thread

    yield start
    for thread in started:
        thread.stop()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """SQLite only: a test database file of our own, so that other suites running at the same
    time in this checkout (same var/ directory) never share or delete ours."""
    import os
    from pathlib import Path

    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        name = Path(db["TEST"]["NAME"]).with_name(f"test-supervisor-{os.getpid()}-{worker}.sqlite3")
        db["TEST"]["NAME"] = str(name)
