import pytest

from tests.supervisor.helpers import SupervisorThread, make_assistant


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

