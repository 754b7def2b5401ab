"""Account state changes. Views, admin actions and other apps call these, never `save()` directly."""

import logging

from django.db import transaction
from django.utils import timezone

from accounts.models import User

logger = logging.getLogger(__name__)


def suspend_user(*, user: User, reason: str, actor: User | None = None) -> User:
    """Suspend ``user``: no login, no new calls. Idempotent; the first reason and time are kept."""
    reason = reason.strip()
    if not reason:
        raise ValueError("A reason is required to suspend a user.")
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        if not locked.is_suspended:
            locked.is_suspended = True
            locked.suspended_reason = reason[:500]
            locked.suspended_at = timezone.now()
            locked.save(update_fields=["is_suspended", "suspended_reason", "suspended_at"])
            logger.info("user %s suspended by %s: %s", locked.pk, actor.pk if actor else "system", reason)
    return locked


def unsuspend_user(*, user: User, actor: User | None = None) -> User:
    """Lift a suspension. Idempotent."""
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        if locked.is_suspended:
            locked.is_suspended = False
            locked.suspended_reason = ""
            locked.suspended_at = None
            locked.save(update_fields=["is_suspended", "suspended_reason", "suspended_at"])
            logger.info("user %s unsuspended by %s", locked.pk, actor.pk if actor else "system")
    return locked


def is_email_verified(user: User) -> bool:
    from allauth.account.models import EmailAddress

    return EmailAddress.objects.filter(user=user, email__iexact=user.email, verified=True).exists()
