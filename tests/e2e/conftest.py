"""Browser tests: Debian's Chromium (never `playwright install`) driven by Playwright's sync API.

The browser gets a fake microphone and automatic permission from Chromium's own flags, so
getUserMedia and WebRTC run for real against fakes/openai's aiortc peer.
"""

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

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
CONSOLE_LOG = "console_log"  # the attribute open_browser keeps a page's console on


def console_log(page: "Page") -> list[str]:
    """The console messages and page errors of a page `open_browser` opened, oldest first."""
    log = getattr(page, CONSOLE_LOG)
    assert isinstance(log, list)
    return log


@pytest.fixture
def open_browser():
    """Open a page in a fresh headless Chromium: ``with open_browser() as page: ...``.

    A context manager to use *after* the test's database setup: Playwright's sync API runs an
    event loop in this thread while the browser is open, and Django refuses ORM calls while one
    is running. Console messages and page errors are kept for failures: ``console_log(page)``.
    """
    from playwright.sync_api import sync_playwright

    @contextlib.contextmanager
    def opener(extra_args: tuple[str, ...] = ()):
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra_args], headless=True
            )
            try:
                page = browser.new_context().new_page()
                # Generous: CI machines run other suites beside this one.
                page.set_default_timeout(30_000)
                log: list[str] = []
                setattr(page, CONSOLE_LOG, log)  # Page has no slot of its own for it
                page.on("console", lambda message: log.append(f"{message.type}: {message.text}"))
                page.on("pageerror", lambda error: log.append(f"pageerror: {error}"))
                yield page
            finally:
                browser.close()

    return opener


@pytest.fixture
def speaking_microphone(tmp_path):
    """Chromium flags for a fake microphone that speaks in turns: a WAV of tone bursts (1 s of a
    220 Hz tone at -10 dBFS, then 1.5 s of silence), looped by Chromium, which fakes/openai's VAD
    hears as one turn every 2.5 s. Chromium's own fake device only beeps briefly."""
    import math
    import struct
    import wave

    rate, path = 48_000, tmp_path / "speech.wav"
    frames = bytearray()
    for _ in range(4):
        frames += b"".join(struct.pack("<h", int(10_000 * math.sin(2 * math.pi * 220 * n / rate)))
                           for n in range(rate))
        frames += b"\x00\x00" * int(rate * 1.5)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(bytes(frames))
    return (f"--use-file-for-fake-audio-capture={path}",)


@pytest.fixture
def product(transactional_db, fake_openai, tmp_path):
    """The product served as `make run` serves it (granian for HTTP, daphne for the live WebSocket
    on a port of its own), its OpenAI being the fake (with a real aiortc WebRTC peer). No
    supervisor: calls start, but nothing watches them (see `live_product`)."""
    from tests.live import start_web

    server = start_web(
        tmp_path, OPENAI_BASE_URL=fake_openai.base_url, OPENAI_API_KEY=fake_openai.project_key
    )
    yield server
    server.stop()


@pytest.fixture
def live_product(product, tmp_path):
    """The product as `make run` serves it: its web servers and a call supervisor. A call only listens
    once the supervisor watches it (issue 11); `live_product.supervisor.log()` helps a failure."""
    from tests.live import start_supervisor

    supervisor = start_supervisor(tmp_path, product.env, "--owner", "e2e-live", "--poll-seconds", "0.2")
    product.supervisor = supervisor
    yield product
    supervisor.stop()
