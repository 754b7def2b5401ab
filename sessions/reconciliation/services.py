"""Staff actions on reconciliation flags: review, suspend the user, claw back credits, resolve.

Each is keyword-only and idempotent enough to be pressed twice: suspension keeps its first reason,
a clawback is keyed by the flag (a second press with the same amount writes nothing).
"""

from django.db import transaction
from django.utils import timezone

from accounts import services as accounts
from accounts.models import User
from billing import services as billing
from billing.models import LedgerEntry
from sessions.reconciliation.models import Flag, FlagStatus


class FlagActionError(Exception):
    """A staff action could not be applied; the message says why."""


def review(*, flag: Flag, status: str, reviewer: User | None, notes: str = "") -> Flag:
    """Set a flag's status (acknowledged, resolved, false positive, or back to open), recording the
    reviewer, the time and any notes (appended, so earlier notes survive)."""
    if status not in FlagStatus.values:
        raise FlagActionError(f"Unknown status {status!r}.")
    with transaction.atomic(durable=True):
        locked = Flag.objects.select_for_update().get(pk=flag.pk)
        locked.status = status
        locked.reviewer = reviewer
        locked.reviewed_at = timezone.now()
        if notes.strip():
            stamp = f"[{locked.reviewed_at:%Y-%m-%d %H:%M} {getattr(reviewer, 'email', '')}] "
            locked.notes = (locked.notes + "\n" if locked.notes else "") + stamp + notes.strip()
        locked.save(update_fields=["status", "reviewer", "reviewed_at", "notes"])
    return locked


def resolve(*, flag: Flag, reviewer: User | None, notes: str = "") -> Flag:
    return review(flag=flag, status=FlagStatus.RESOLVED, reviewer=reviewer, notes=notes)


def suspend_user(*, flag: Flag, reviewer: User, reason: str = "") -> User:
    """Suspend the user the flag names (the owner of the likely leaked secret or overrunning call)."""
    flag_user = flag.user
    if flag_user is None:
        raise FlagActionError(f"Flag #{flag.pk} names no user.")
    reason = reason.strip() or f"Reconciliation flag #{flag.pk}: {flag.get_kind_display()}."
    user = accounts.suspend_user(user=flag_user, reason=reason, actor=reviewer)
    review(
        flag=flag,
        status=FlagStatus.ACKNOWLEDGED if flag.status == FlagStatus.OPEN else flag.status,
        reviewer=reviewer,
        notes=f"Suspended {user.email}: {reason}",
    )
    return user


def claw_back(*, flag: Flag, reviewer: User, credits: int, reason: str) -> LedgerEntry:
    """Take `credits` back from the user the flag names, through billing (a staff adjustment with
    the reason, keyed by the flag so pressing twice takes them once)."""
    reason = (reason or "").strip()
    if not reason:
        raise FlagActionError("A reason is required to claw back credits.")
    if isinstance(credits, bool) or not isinstance(credits, int) or credits <= 0:
        raise FlagActionError("Credits to claw back must be a whole number above 0.")
    flag_user = flag.user
    if flag_user is None:
        raise FlagActionError(f"Flag #{flag.pk} names no user.")
    try:
        entry = billing.adjust(
            user=flag_user,
            credits=-credits,
            actor=reviewer,
            reason=f"Reconciliation flag #{flag.pk}: {reason}",
            idempotency_key=f"reconciliation-flag:{flag.pk}:clawback:{credits}",
        )
    except Exception as exc:  # billing's own errors carry the reason (insufficient credits, not staff)
        raise FlagActionError(f"Billing refused the clawback: {exc}") from exc
    review(
        flag=flag,
        status=FlagStatus.ACKNOWLEDGED if flag.status == FlagStatus.OPEN else flag.status,
        reviewer=reviewer,
        notes=f"Clawed back {credits:,} credits: {reason}",
    )
    return entry
