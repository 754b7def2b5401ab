"""/admin/login/ goes through allauth's login and its limits, like /accounts/login/."""

import pytest
from django.core.cache import cache

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_rate_limits(settings):
    settings.ACCOUNT_RATE_LIMITS = {}  # allauth's defaults, as in production (the test settings turn them off)
    cache.clear()  # allauth keeps its counters in the cache
    yield
    cache.clear()


def test_a_signed_in_user_cannot_guess_a_staff_password_on_the_admin_login(alice_client, alice, staff, password):
    # The finding: a signed-in non-staff user got Django's own admin form, with no attempt limit.
    for _ in range(6):
        response = alice_client.post("/admin/login/", {"username": staff.email, "password": "wrong guess"})
        assert response.status_code == 403
    response = alice_client.post("/admin/login/", {"username": staff.email, "password": password})
    assert response.status_code == 403
    assert int(alice_client.session["_auth_user_id"]) == alice.pk


def test_the_admin_login_sends_anonymous_visitors_to_allauths_login(client, staff, password):
    response = client.post("/admin/login/?next=/admin/", {"username": staff.email, "password": password})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")
    assert "_auth_user_id" not in client.session


def test_the_sixth_wrong_password_for_a_staff_address_is_refused(client, staff, password):
    for _ in range(5):
        response = client.post("/accounts/login/?next=/admin/", {"login": staff.email, "password": "wrong guess"})
        assert response.status_code == 200  # the form again, with its error
    # Even the right password: the address is locked for the rest of allauth's window.
    response = client.post("/accounts/login/?next=/admin/", {"login": staff.email, "password": password})
    assert response.status_code == 200
    assert "Too many failed login attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_staff_sign_in_through_allauth_and_reach_the_admin(client, staff, password):
    response = client.post("/accounts/login/", {"login": staff.email, "password": password, "next": "/admin/"})
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/login/").status_code == 302  # already in: on to the index
