"""Row locks for sessions, taken inside a transaction and evaluated at once."""

from django.contrib.auth import get_user_model


def user_for_update(*, user_id: int):
    """Serialises one user's call starts, so the concurrency and start-rate counts are exact."""
    return get_user_model().objects.select_for_update().only("pk").get(pk=user_id)
