"""Page tests: billing's fixtures (the product pointed at fakes/stripe, packs, deliveries), and for
the browser tests a signed-in Chromium context at a chosen width (Debian's Chromium, as tests/e2e)."""

import contextlib
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from tests.billing.conftest import deliver, pack, stripe_settings  # noqa: F401  (fixtures)
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, product  # noqa: F401  (product: a fixture)

WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}


def session_cookie(user, server_url: str) -> Any:
    """A real session row for `user`, as the cookie a browser on `server_url` would hold."""
    client = Client()
    client.force_login(user)
    return {"name": settings.SESSION_COOKIE_NAME, "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
            "url": server_url}


@pytest.fixture(params=sorted(WIDTHS))
def width(request) -> tuple[int, int]:
    return WIDTHS[request.param]


@pytest.fixture
def signed_in_browser(width):
    """``with signed_in_browser(cookie) as context: page = context.new_page()``: a headless Chromium
    context at the test's width, signed in with `cookie` (`session_cookie`), made after the test's
    database setup (Playwright's sync API runs an event loop while it is open: no ORM calls then).
    Each page's console is kept on ``page.console_log`` for failures."""
    from playwright.sync_api import sync_playwright

    @contextlib.contextmanager
    def opener(cookie: Any):
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            try:
                context = browser.new_context(viewport={"width": width[0], "height": width[1]})
                context.set_default_timeout(30_000)
                if cookie:
                    context.add_cookies([cookie])
                logs: list[str] = []
                context.on("console", lambda message: logs.append(f"{message.type}: {message.text}"))
                context.on("weberror", lambda error: logs.append(f"pageerror: {error.error}"))
                context.console_log = logs  # type: ignore[attr-defined]
                yield context
            finally:
                browser.close()

    return opener
