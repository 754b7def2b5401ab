import re

import pytest
from allauth.account.models import EmailAddress
from django.core import mail

from accounts.models import User
from accounts.services import suspend_user
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _confirmation_link(message) -> str:
    match = re.search(r"https?://[^\s]+/accounts/confirm-email/[^\s]+/", message.body)
    assert match, message.body
    return match.group(0).split("://", 1)[1].split("/", 1)[1].join(["/", ""])


def test_signup_sends_a_confirmation_email_and_confirming_signs_in(client, password):
    response = client.post(
        "/accounts/signup/",
        {"email": "Carol@Example.com", "password1": password, "password2": password},
    )
    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    user = User.objects.get(email="carol@example.com")
    assert not EmailAddress.objects.get(user=user).verified
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["carol@example.com"]

    # Not verified yet: the dashboard is out of reach.
    assert client.get("/dashboard/").status_code == 302

    link = _confirmation_link(mail.outbox[0])
    response = client.get(link)  # opening the link confirms: no second click (issue 12)
    assert response.status_code == 302
    assert EmailAddress.objects.get(user=user).verified

    response = client.get("/dashboard/")
    assert response.status_code == 200
    assert b"Hello, carol" in response.content


def test_verified_user_logs_in_with_email_and_sees_dashboard(client, alice, password):
    response = client.post("/accounts/login/", {"login": "alice@example.com", "password": password})
    assert response.status_code == 302
    assert response["Location"] == "/dashboard/"
    assert client.get("/dashboard/").status_code == 200


def test_login_with_wrong_password_is_refused(client, alice):
    response = client.post("/accounts/login/", {"login": "alice@example.com", "password": "wrong"})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_unverified_user_cannot_log_in_and_gets_a_new_confirmation_email(client, password):
    UserFactory(email="dave@example.com", verified=False)
    response = client.post("/accounts/login/", {"login": "dave@example.com", "password": password})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    assert "_auth_user_id" not in client.session
    assert len(mail.outbox) == 1


def test_unverified_user_signed_in_another_way_cannot_reach_the_dashboard(client):
    user = UserFactory(email="erin@example.com", verified=False)
    client.force_login(user)
    response = client.get("/dashboard/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/email/"


def test_suspended_user_cannot_log_in(client, alice, password):
    suspend_user(user=alice, reason="chargeback")
    response = client.post("/accounts/login/", {"login": "alice@example.com", "password": password}, follow=True)
    assert response.redirect_chain[-1][0] == "/account/suspended/"
    assert response.status_code == 403
    assert b"suspended" in response.content
    assert "_auth_user_id" not in client.session


def test_suspended_user_is_signed_out_on_next_request(alice_client, alice):
    assert alice_client.get("/dashboard/").status_code == 200
    suspend_user(user=alice, reason="abuse")
    response = alice_client.get("/dashboard/")
    assert response.status_code == 302
    assert response["Location"] == "/account/suspended/"
    assert "_auth_user_id" not in alice_client.session


def test_suspended_staff_cannot_log_in_to_the_admin(client, staff, password):
    suspend_user(user=staff, reason="left the company")
    response = client.get("/admin/login/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    response = client.post("/accounts/login/", {"login": "staff@example.com", "password": password})
    assert response["Location"] == "/account/suspended/"
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302


def test_suspension_requires_a_reason_and_keeps_the_first_timestamp(alice):
    with pytest.raises(ValueError):
        suspend_user(user=alice, reason="  ")
    first = suspend_user(user=alice, reason="fraud")
    again = suspend_user(user=alice, reason="other")
    assert again.suspended_at == first.suspended_at
    assert again.suspended_reason == "fraud"


def test_password_reset_sends_a_link_that_sets_a_new_password(client, alice):
    response = client.post("/accounts/password/reset/", {"email": "alice@example.com"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    match = re.search(r"http://[^/]+(/accounts/password/reset/key/[^\s]+/)", mail.outbox[0].body)
    assert match, mail.outbox[0].body
    response = client.get(match.group(1), follow=True)
    form_url = response.redirect_chain[-1][0] if response.redirect_chain else match.group(1)
    response = client.post(form_url, {"password1": "a new long passphrase", "password2": "a new long passphrase"})
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("a new long passphrase")


def test_password_change_requires_the_old_password(alice_client, alice, password):
    response = alice_client.post(
        "/accounts/password/change/",
        {"oldpassword": "not it", "password1": "another passphrase 42", "password2": "another passphrase 42"},
    )
    assert response.status_code == 200
    alice.refresh_from_db()
    assert alice.check_password(password)
    response = alice_client.post(
        "/accounts/password/change/",
        {"oldpassword": password, "password1": "another passphrase 42", "password2": "another passphrase 42"},
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("another passphrase 42")


def test_account_page_updates_the_display_name(alice_client, alice):
    response = alice_client.post("/account/", {"name": "Alice Liddell"})
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.name == "Alice Liddell"


def test_logout_needs_a_post(alice_client):
    alice_client.get("/accounts/logout/")
    assert "_auth_user_id" in alice_client.session
    alice_client.post("/accounts/logout/")
    assert "_auth_user_id" not in alice_client.session
