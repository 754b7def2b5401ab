"""Browser tests: Debian's Chromium (never `playwright install`) driven by Playwright's sync API.

The browser gets a fake microphone and automatic permission from Chromium's own flags, so
getUserMedia and WebRTC run for real against fakes/openai's aiortc peer.
"""

import contextlib
import os
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def pytest_collection_modifyitems(config, items):
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is missing: run scripts/install-chromium.sh")
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def open_browser():
    """Open a page in a fresh headless Chromium: ``with open_browser() as page: ...``.

    A context manager to use *after* the test's database setup: Playwright's sync API runs an
    event loop in this thread while the browser is open, and Django refuses ORM calls while one
    is running. Console messages and page errors are kept on ``page.console_log`` for failures.
    """
    from playwright.sync_api import sync_playwright

    @contextlib.contextmanager
    def opener():
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            try:
                page = browser.new_context().new_page()
                # Generous: CI machines run other suites beside this one.
                page.set_default_timeout(30_000)
                page.console_log = []
                page.on("console", lambda message: page.console_log.append(f"{message.type}: {message.text}"))
                page.on("pageerror", lambda error: page.console_log.append(f"pageerror: {error}"))
                yield page
            finally:
                browser.close()

    return opener


@pytest.fixture
def product(transactional_db, fake_openai, tmp_path):
    """The product in daphne, its OpenAI being the fake (with a real aiortc WebRTC peer)."""
    from tests.live import start_daphne

    server = start_daphne(
        tmp_path, OPENAI_BASE_URL=fake_openai.base_url, OPENAI_API_KEY=fake_openai.project_key
    )
    yield server
    server.stop()
