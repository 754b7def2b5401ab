"""The live WebSocket in a real browser with the product served as `make run` serves it: pages from
granian, the socket from daphne on a port of its own (LIVE_WEBSOCKET_URL)."""

import re

import pytest
from django.urls import reverse

from tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.e2e


def test_a_signed_in_page_opens_the_live_socket_on_daphnes_port(product, open_browser):
    from billing.services import grant

    user = UserFactory.create(email="lena@example.com", name="Lena")
    grant(user=user, credits=40, idempotency_key="e2e-live-socket", kind="bonus")
    assert product.live is not None and product.ws_url != product.url.replace("http://", "ws://", 1)

    with open_browser() as page:
        sockets: list[str] = []
        page.on("websocket", lambda socket: sockets.append(socket.url))
        page.goto(product.url + reverse("account_login"))
        page.fill("input[name=login]", user.email)
        page.fill("input[name=password]", DEFAULT_PASSWORD)
        page.locator("form button[type=submit], form input[type=submit]").last.click()
        page.wait_for_url(re.compile(r"/dashboard/$"))
        page.wait_for_selector("html[data-live=open]")

    assert sockets[0] == f"{product.ws_url}/ws/live/"
