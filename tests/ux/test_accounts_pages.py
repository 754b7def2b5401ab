"""Sign-up, sign-in and the frame every page shares (issue 12, item 5)."""

import re

import pytest
from django.core import mail
from django.test import override_settings

from accounts.models import User

pytestmark = pytest.mark.django_db


def test_a_password_error_is_shown_under_the_password_field(client):
    response = client.post(
        "/accounts/signup/", {"email": "new@example.com", "password1": "12345678", "password2": "12345678"}
    )

    html = response.content.decode()
    assert response.status_code == 200
    password_errors = re.search(r'data-testid="errors-password1">(.*?)</ul>', html, re.S)
    assert password_errors and "entirely numeric" in password_errors.group(1)
    # Nothing about the password sits with the email field.
    email_part = html[html.index('data-field="email"'):html.index('data-field="password1"')]
    assert "numeric" not in email_part and "errors-email" not in email_part
    assert not User.objects.filter(email="new@example.com").exists()


def test_an_email_error_is_shown_under_the_email_field(client, alice):
    response = client.post(
        "/accounts/signup/", {"email": "not-an-address", "password1": "a long pass phrase 9", "password2": "a long pass phrase 9"}
    )

    html = response.content.decode()
    email_part = html[html.index('data-field="email"'):html.index('data-field="password1"')]
    assert 'data-testid="errors-email"' in email_part
    assert 'aria-invalid="true"' in email_part


@pytest.mark.parametrize("path", ["/accounts/signup/", "/accounts/login/", "/"])
def test_one_wording_sign_in_and_sign_up(client, path):
    html = client.get(path).content.decode()

    assert "Sign Up" not in html and "Sign In" not in html and "Signup" not in html
    assert "Sign up" in html and "Sign in" in html


def test_opening_the_confirmation_link_confirms_and_signs_in(client):
    client.post(
        "/accounts/signup/",
        {"email": "carol@example.com", "password1": "a long pass phrase 9", "password2": "a long pass phrase 9"},
    )
    [message] = mail.outbox
    link = re.search(r"https?://[^\s]+/accounts/confirm-email/[^\s]+", message.body)
    assert link, message.body

    response = client.get(link.group(0).split("testserver", 1)[-1], follow=True)

    carol = User.objects.get(email="carol@example.com")
    assert carol.emailaddress_set.get().verified
    assert response.context["user"] == carol
    assert response.redirect_chain[-1][0] == "/dashboard/"


def test_favicon_is_served(client):
    response = client.get("/favicon.ico")

    assert response.status_code == 301
    assert response["Location"] == "/static/favicon.ico"


@override_settings(SUPPORT_EMAIL="help@voice.example")
def test_contact_us_links_to_the_configured_support_address(client, alice):
    for path in ["/", "/accounts/login/", "/account/suspended/"]:
        html = client.get(path).content.decode()
        assert '<a href="mailto:help@voice.example">' in html, path


def test_every_page_has_a_skip_link_to_the_main_content_and_a_menu_button(alice_client):
    html = alice_client.get("/dashboard/").content.decode()

    assert '<a class="skip-link" href="#main">Skip to content</a>' in html
    assert '<main class="container" id="main"' in html
    assert re.search(r'<button type="button" class="nav-toggle" aria-controls="site-nav" aria-expanded="false"', html)
    assert 'id="site-nav"' in html


def test_staff_see_the_staff_menu_on_every_page(staff_client):
    for path in ["/dashboard/", "/billing/wallet/", "/account/"]:
        html = staff_client.get(path).content.decode()
        menu = html[html.index('data-testid="staff-menu"'):]
        menu = menu[:menu.index("</span>\n</span>") if "</span>\n</span>" in menu else 2000]
        for href in ["/admin/", "/staff/live-calls/", "/staff/reconciliation/", "/admin/realtime/flag/"]:
            assert f'href="{href}"' in menu, (path, href)


def test_users_do_not_see_the_staff_menu(alice_client):
    html = alice_client.get("/dashboard/").content.decode()

    assert 'data-testid="staff-menu"' not in html
    assert "/staff/live-calls/" not in html
