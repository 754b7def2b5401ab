import pytest
from openai import AsyncOpenAI, OpenAI

# The fixtures fake_openai / fake_openai_server come from fakes.openai.pytest_plugin, which the root
# conftest loads (pytest_plugins is not allowed in a nested conftest).
from fakes.openai.pytest_plugin import FakeOpenAI

SESSION = {"type": "realtime", "model": "gpt-realtime", "instructions": "Be brief."}


@pytest.fixture
def client(fake_openai: FakeOpenAI) -> OpenAI:
    return OpenAI(api_key=fake_openai.project_key, base_url=fake_openai.base_url, max_retries=0)


@pytest.fixture
def aclient(fake_openai: FakeOpenAI) -> AsyncOpenAI:
    return AsyncOpenAI(api_key=fake_openai.project_key, base_url=fake_openai.base_url, max_retries=0)


@pytest.fixture
def admin(fake_openai: FakeOpenAI) -> OpenAI:
    return OpenAI(
        api_key="unused", admin_api_key=fake_openai.admin_key, base_url=fake_openai.base_url, max_retries=0
    )
