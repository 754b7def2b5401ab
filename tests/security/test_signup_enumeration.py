"""Email squatting and sign-up enumeration (issue 13): an unverified address on someone else's
account blocks neither its owner's sign-up nor reaches that account through a password reset; and
signing up with an address that has an account does the same work as with a new one."""

import re

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.core.cache import cache

from accounts.models import User
from tests.security.hashers import CountingHasher

pytestmark = pytest.mark.django_db

PASSWORD = "a long and unusual passphrase 7"
RESET_LINK = re.compile(r"/accounts/password/reset/key/")


@pytest.fixture(autouse=True)
def _fresh(settings):
    settings.PASSWORD_HASHERS = ["tests.security.hashers.CountingHasher"]
    cache.clear()
    mail.outbox.clear()
    yield
    cache.clear()


@pytest.fixture
def squatted(client, alice):
    """Alice (verified) adds victim@example.com, which she does not own, to her account."""
    client.force_login(alice)
    response = client.post("/accounts/email/", {"action_add": "", "email": "victim@example.com"})
    assert response.status_code == 302
    assert EmailAddress.objects.get(email="victim@example.com").user == alice
    client.logout()
    mail.outbox.clear()
    return alice


def _sign_up(client, email: str):
    return client.post("/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD})


def test_the_owner_of_a_squatted_address_can_still_sign_up(client, squatted):
    response = _sign_up(client, "victim@example.com")
    assert response.status_code == 302
    victim = User.objects.get(email="victim@example.com")
    assert victim != squatted
    assert [message.to for message in mail.outbox] == [["victim@example.com"]]
    assert "confirm" in mail.outbox[0].body.lower()


def test_verifying_the_address_takes_it_off_the_squatters_account(client, squatted):
    _sign_up(client, "victim@example.com")
    link = re.search(r"http://testserver(/accounts/confirm-email/[^\s]+)", mail.outbox[0].body).group(1)
    client.post(link)
    assert EmailAddress.objects.get(email="victim@example.com", verified=True).user.email == "victim@example.com"
    assert not EmailAddress.objects.filter(email="victim@example.com", user=squatted).exists()


def test_a_password_reset_for_a_squatted_address_never_reaches_the_squatters_account(client, squatted):
    response = client.post("/accounts/password/reset/", {"email": "victim@example.com"})
    assert response.status_code == 302
    assert not [message for message in mail.outbox if RESET_LINK.search(message.body)]


def test_a_password_reset_for_a_verified_address_still_works(client, alice):
    client.post("/accounts/password/reset/", {"email": alice.email})
    assert len([message for message in mail.outbox if RESET_LINK.search(message.body)]) == 1


def test_signing_up_with_a_taken_address_does_the_same_work_as_with_a_new_one(client, alice):
    CountingHasher.encodings = 0
    taken = _sign_up(client, alice.email)
    taken_hashes, taken_mails = CountingHasher.encodings, len(mail.outbox)
    CountingHasher.encodings = 0
    mail.outbox.clear()
    new = _sign_up(client, "newcomer@example.com")
    new_hashes, new_mails = CountingHasher.encodings, len(mail.outbox)
    assert (taken.status_code, taken["Location"]) == (new.status_code, new["Location"])
    assert (taken_hashes, taken_mails) == (new_hashes, new_mails)
    assert new_hashes >= 1
    assert User.objects.filter(email=alice.email).count() == 1
