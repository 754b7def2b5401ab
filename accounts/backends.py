from django.contrib.auth.backends import ModelBackend


class ActiveAccountBackend(ModelBackend):
    """ModelBackend that also refuses suspended users (the admin login goes through it)."""

    def user_can_authenticate(self, user) -> bool:
        return super().user_can_authenticate(user) and not getattr(user, "is_suspended", False)
