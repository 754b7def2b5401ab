from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AnonymousUser

from accounts.models import User


class ActiveAccountBackend(ModelBackend):
    """ModelBackend that also refuses suspended users a new login."""

    def user_can_authenticate(self, user: User | AnonymousUser | None) -> bool:
        return super().user_can_authenticate(user) and not getattr(user, "is_suspended", False)

    def get_user(self, user_id: Any) -> User | None:
        # An existing session of a suspended user still resolves to the user, so that
        # SuspendedUserMiddleware can end it with a message instead of a silent sign-out.
        user = get_user_model()._default_manager.filter(pk=user_id).first()
        return user if user is not None and user.is_active else None
