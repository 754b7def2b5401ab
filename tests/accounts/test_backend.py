"""The session's user is read with one hand-written statement on PostgreSQL (every signed-in
request pays for it: issue 16), and resolves exactly as ModelBackend's read did."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.backends import ActiveAccountBackend
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_a_user_is_read_with_every_field():
    user = UserFactory(name="Ada", time_zone="Europe/Paris")
    found = ActiveAccountBackend().get_user(user.pk)
    assert found is not None
    assert found.pk == user.pk
    assert (found.email, found.name, found.time_zone, found.is_staff) == (user.email, "Ada", "Europe/Paris", False)
    assert found._state.adding is False  # a saved row: .save() updates it
    found.name = "Grace"
    found.save(update_fields=["name"])
    user.refresh_from_db()
    assert user.name == "Grace"


def test_a_suspended_user_still_resolves_and_an_inactive_one_does_not():
    suspended = UserFactory(is_suspended=True, suspended_reason="abuse", suspended_at="2026-01-01T00:00:00Z")
    inactive = UserFactory(is_active=False)
    backend = ActiveAccountBackend()
    assert backend.get_user(suspended.pk) == suspended
    assert backend.get_user(inactive.pk) is None


@pytest.mark.parametrize("user_id", [999_999, "not-a-number", None, "", 2**70])
def test_unknown_or_malformed_ids_resolve_to_nobody(user_id):
    UserFactory()
    assert ActiveAccountBackend().get_user(user_id) is None


@pytest.mark.postgres
def test_the_read_is_one_plain_statement_on_postgresql():
    user = UserFactory()
    with CaptureQueriesContext(connection) as queries:
        ActiveAccountBackend().get_user(str(user.pk))
    assert len(queries) == 1
    sql = queries[0]["sql"]
    assert "ORDER BY" not in sql and "LIMIT" not in sql  # not the ORM's .first()
