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

