import pytest
from openai import AsyncOpenAI, OpenAI

# Imported rather than listed in pytest_plugins (forbidden outside the root conftest). If the root
# conftest also loads the plugin, these definitions simply shadow it here: one fake per worker.
from fakes.openai.pytest_plugin import FakeOpenAI, fake_openai, fake_openai_server  # noqa: F401

SESSION = {"type": "realtime", "model": "gpt-realtime", "instructions": "Be brief."}


@pytest.fixture
def client(fake_openai: FakeOpenAI) -> OpenAI:
    return OpenAI(api_key=fake_openai.project_key, base_url=fake_openai.base_url, max_retries=0)


@pytest.fixture
def aclient(fake_openai: FakeOpenAI) -> AsyncOpenAI:
    return AsyncOpenAI(api_key=fake_openai.project_key, base_url=fake_openai.base_url, max_retries=0)


@pytest.fixture
def admin(fake_openai: FakeOpenAI) -> OpenAI:
    return OpenAI(api_key="unused", admin_api_key=fake_openai.admin_key, base_url=fake_openai.base_url,
                  max_retries=0)
