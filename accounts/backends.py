from functools import lru_cache
from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AnonymousUser

from accounts.models import User
from realtime_saas.sql import fetch_one, instance_from_row, is_postgresql, returning_columns

# The largest id a bigint column holds: a larger one names nobody (and must not reach the driver).
_MAX_ID = 2**63 - 1


class ActiveAccountBackend(ModelBackend):
    """ModelBackend that also refuses suspended users a new login."""

    def user_can_authenticate(self, user: User | AnonymousUser | None) -> bool:
        return super().user_can_authenticate(user) and not getattr(user, "is_suspended", False)

    def get_user(self, user_id: Any) -> User | None:
        # An existing session of a suspended user still resolves to the user, so that
        # SuspendedUserMiddleware can end it with a message instead of a silent sign-out.
        try:
            pk = int(user_id)
        except (TypeError, ValueError):
            return None
        if not 0 < pk <= _MAX_ID:
            return None
        if is_postgresql():
            # Every signed-in request reads its user: one plain statement instead of the ORM's
            # query building, about 1 ms of web CPU a request (benchmarks/README.md, issue 16).
            row = fetch_one(_user_sql(), [pk])
            user = instance_from_row(User, row) if row is not None else None
        else:
            user = User._default_manager.filter(pk=pk).first()
        return user if user is not None and user.is_active else None


@lru_cache(maxsize=1)
def _user_sql() -> str:
    table = User._meta.db_table
    return f"SELECT {returning_columns(User, table)} FROM {table} WHERE id = %s"  # noqa: S608 (model names)
