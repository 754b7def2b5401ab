"""Account state changes. Views, admin actions and other apps call these, never `save()` directly."""

import logging

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from realtime_saas.live import close_user_sockets

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
            # Open live sockets were authorised before: they are closed, not left receiving.
            user_pk = locked.pk
            transaction.on_commit(lambda: close_user_sockets(user_pk))
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


def withdraw_key_mode(*, user: User, reason: str, actor: User | None = None) -> User:
    """Withdraw key mode from ``user``: no more client secrets (minting answers 403
    ``key_mode_withdrawn``); proxy-mode calls are unaffected. Idempotent: the first reason and time
    are kept.

    Recorded on the user (when, why); who: a staff ``actor`` in the admin history of the user, the
    automatic withdrawal by reconciliation in its reason and its flag (``actor=None``).
    """
    reason = reason.strip()
    if not reason:
        raise ValueError("A reason is required to withdraw key mode.")
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        if locked.key_mode_withdrawn_at is None:
            locked.key_mode_withdrawn_at = timezone.now()
            locked.key_mode_withdrawn_reason = reason[:500]
            locked.save(update_fields=["key_mode_withdrawn_at", "key_mode_withdrawn_reason"])
            _record(locked, actor, f"Key mode withdrawn: {reason}")
            logger.info("user %s: key mode withdrawn by %s: %s", locked.pk, actor.pk if actor else "system", reason)
    return locked


def restore_key_mode(*, user: User, actor: User | None) -> User:
    """Give key mode back to ``user`` (staff, after reviewing the withdrawal). Idempotent. The
    withdrawal it lifts (time and reason) goes into the record with the staff member's name."""
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        if locked.key_mode_withdrawn_at is not None:
            was = f"{locked.key_mode_withdrawn_at:%Y-%m-%d %H:%M} UTC: {locked.key_mode_withdrawn_reason}"
            locked.key_mode_withdrawn_at = None
            locked.key_mode_withdrawn_reason = ""
            locked.save(update_fields=["key_mode_withdrawn_at", "key_mode_withdrawn_reason"])
            _record(locked, actor, f"Key mode restored (withdrawn {was})")
            logger.info("user %s: key mode restored by %s", locked.pk, actor.pk if actor else "system")
    return locked


def _record(user: User, actor: User | None, message: str) -> None:
    """An entry in the user's admin history (who and when), for changes a staff member made."""
    if actor is None:
        return
    from django.contrib.admin.models import CHANGE, LogEntry

    LogEntry.objects.log_actions(
        user_id=actor.pk, queryset=[user], action_flag=CHANGE, change_message=message[:2000], single_object=True
    )


def is_email_verified(user: User) -> bool:
    from allauth.account.models import EmailAddress

    return EmailAddress.objects.filter(user=user, email__iexact=user.email, verified=True).exists()
