"""Content-Security-Policy with nonces (django-csp; on when DEBUG is off, or CSP_ENABLED=true): the
main pages, signed in and as staff, load in Chromium with no CSP violation in the console."""

import re

import httpx
import pytest
from django.test import Client

from tests.e2e.conftest import console_log, open_browser  # noqa: F401 (a fixture)
from tests.sessions.factories import AssistantFactory
from tests.sessions_pages.helpers import make_call

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture(scope="module")
def csp_server(django_db_setup, django_db_blocker, tmp_path_factory):
    from tests.live import start_daphne

    with django_db_blocker.unblock():
        server = start_daphne(tmp_path_factory.mktemp("csp"), CSP_ENABLED="true")
    yield server
    server.stop()


def _cookie(user) -> dict[str, str]:
    client = Client()
    client.force_login(user)
    return {"name": "sessionid", "value": client.cookies["sessionid"].value}


def test_pages_carry_a_nonce_policy_and_their_scripts_and_styles_the_nonce(csp_server, staff):
    cookies = {"sessionid": _cookie(staff)["value"]}
    for path in ("/", "/accounts/login/", "/admin/"):
        response = httpx.get(f"{csp_server.url}{path}", cookies=cookies if path == "/admin/" else None, timeout=10)
        assert response.status_code == 200, (path, response.status_code, response.headers.get("Location"))
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "style-src 'self'" in policy
        assert "unsafe-inline" not in policy
        inline = [tag for tag in re.findall(r"<(?:script|style)\b[^>]*>", response.text) if "src=" not in tag]
        for tag in inline:
            nonce = re.search(r"'nonce-([^']+)'", policy).group(1)  # sent when a page used one
            assert f'nonce="{nonce}"' in tag, (path, tag)


def test_the_main_pages_load_in_chromium_without_a_csp_violation(csp_server, open_browser, alice, staff):  # noqa: F811
    assistant = AssistantFactory()
    call = make_call(user=alice, assistant=assistant)
    alice_cookie, staff_cookie = _cookie(alice), _cookie(staff)
    pages = {
        None: ["/", "/accounts/login/", "/accounts/signup/"],
        "alice": ["/dashboard/", "/talk/", "/billing/buy/", "/billing/purchases/", "/billing/wallet/",
                  f"/calls/{call.public_id}/", "/calls/", "/account/"],
        "staff": ["/admin/", "/admin/billing/wallet/", "/admin/accounts/user/", f"/staff/calls/{call.public_id}/",
                  "/staff/live-calls/", "/staff/reconciliation/"],
    }
    cookies = {"alice": alice_cookie, "staff": staff_cookie}
    with open_browser() as page:
        violations = []
        page.on("console", lambda message: violations.append(f"{page.url}: {message.text}")
                if "Content Security Policy" in message.text else None)
        for who, paths in pages.items():
            page.context.clear_cookies()
            if who:
                page.context.add_cookies([{**cookies[who], "url": csp_server.url}])
            for path in paths:
                response = page.goto(f"{csp_server.url}{path}")
                assert response.status == 200, (path, response.status)
                page.wait_for_load_state("networkidle")
        assert violations == [], violations
        assert not [line for line in console_log(page) if "pageerror" in line]
