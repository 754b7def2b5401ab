"""The ledger: wallets, grants, clawbacks, staff adjustments and the wallet lock.

Every balance change in billing ends in `post_entry`: one append-only LedgerEntry, unique by its
idempotency key, and the cached balance on the wallet row moved in the same transaction, under
the wallet's lock. The other modules of this package call it; nothing outside the package does.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from django.db import IntegrityError, connection, transaction

from billing import locks, notifications
from billing.exceptions import IdempotencyConflict, InsufficientCredits, InvalidAmount
from billing.models import CreditGrant, LedgerEntry, Purchase, Wallet
from billing.services import grants
from billing.services.grants import DEFAULT_EXPIRY
from realtime_saas import live
from realtime_saas.sql import fetch_one, instance_from_row, is_postgresql, returning_columns

if TYPE_CHECKING:
    from datetime import datetime

    from accounts.models import User

Kind = LedgerEntry.Kind
GRANT_KINDS = {Kind.PURCHASE, Kind.BONUS, Kind.REFUND_REVERSAL, Kind.DISPUTE_WON, Kind.ADJUSTMENT, Kind.CREDIT_REFUND}
CLAWBACK_KINDS = {Kind.REFUND, Kind.DISPUTE}


# --- reading -----------------------------------------------------------------------------------


def get_wallet(user: User) -> Wallet:
    """The user's wallet, created empty on first use."""
    wallet, _ = Wallet.objects.get_or_create(user_id=user.pk)
    return wallet


def available_credits(user: User) -> int:
    """Balance − held, or 0 while the wallet is blocked (negative balance, open dispute)."""
    wallet = Wallet.objects.filter(user_id=user.pk).first()
    return wallet.available if wallet else 0


def balance_payload(wallet: Wallet) -> dict[str, int]:
    return {"balance": wallet.balance, "held": wallet.held, "available": wallet.available}


# --- for the modules of billing.services (callers hold the wallet lock) ------------------------


def push_balance_on_commit(wallet: Wallet) -> None:
    """Send the wallet's new figures to its user's browsers once the transaction commits."""
    user_id, data = wallet.user_id, balance_payload(wallet)
    transaction.on_commit(lambda: live.push_to_user(user_id, "balance", data))


def post_entry(
    wallet: Wallet,
    *,
    credits: int,
    kind: str,
    idempotency_key: str,
    reference: str = "",
    actor: User | None = None,
    memo: str = "",
    memo_shown_to_user: bool = True,
    purchase: Purchase | None = None,
    source: str | None = None,
    expires_at: datetime | None = DEFAULT_EXPIRY,
    expiring: CreditGrant | None = None,
) -> tuple[LedgerEntry, bool]:
    """Append one entry and move the cached balance (the caller holds the wallet's lock). Returns
    (entry, created); a replayed key returns the first entry and changes nothing.

    The grants move with it (billing.services.grants): an entry that adds credits makes one grant
    (its category from the kind; `source` and `expires_at` default from the kind and
    BillingSettings; `purchase` the one it pays or gives back). One that removes credits takes
    them from the grants: a refund or dispute from `purchase`'s paid grants then other paid ones,
    an expiry from the grant `expiring`, anything else in spending order; the rest is debt."""
    try:
        with transaction.atomic():  # a savepoint: the unique key, not a prior read, decides
            entry = LedgerEntry.objects.create(
                wallet=wallet,
                credits=credits,
                kind=kind,
                balance_after=wallet.balance + credits,
                idempotency_key=idempotency_key,
                reference=reference[:255],
                actor=actor,
                memo=memo,
                memo_shown_to_user=memo_shown_to_user,
            )
    except IntegrityError:
        first = LedgerEntry.objects.filter(idempotency_key=idempotency_key).first()
        if first is None:
            raise
        if first.wallet_id != wallet.pk or first.credits != credits or first.kind != kind:
            raise IdempotencyConflict(f"Key {idempotency_key!r} was used for a different entry.") from None
        return first, False
    if credits > 0:
        grants.add_grant(wallet, entry, source=source, expires_at=expires_at, purchase=purchase,
                         memo=memo if memo_shown_to_user else "")
    elif kind in CLAWBACK_KINDS:
        grants.spend_paid(wallet, -credits, purchase=purchase)
    elif kind == Kind.EXPIRY:
        if expiring is None:
            raise InvalidAmount("An expiry entry names the grant that expires.")
        grants.expire_from(wallet, expiring, -credits, now=entry.created_at)
    else:
        grants.spend(wallet, -credits)
    wallet.balance += credits
    wallet.save(update_fields=["balance", "updated_at"])
    push_balance_on_commit(wallet)
    notifications.note_balance_change(wallet_id=wallet.pk, credits=credits)
    return entry, True


def require_positive(credits: int) -> int:
    """The credits, if they are a positive integer; `InvalidAmount` otherwise."""
    if isinstance(credits, bool) or not isinstance(credits, int) or credits <= 0:
        raise InvalidAmount(f"Credits must be a positive integer, not {credits!r}.")
    return credits


def _replayed_entry(idempotency_key: str) -> LedgerEntry | None:
    return LedgerEntry.objects.filter(idempotency_key=idempotency_key).first()



# --- ledger ------------------------------------------------------------------------------------


def grant(
    *,
    user: User,
    credits: int,
    idempotency_key: str,
    kind: str,
    reference: str = "",
    actor: User | None = None,
    memo: str = "",
    source: str | None = None,
    expires_at: datetime | None = DEFAULT_EXPIRY,
) -> LedgerEntry:
    """Add credits (a purchase, a bonus, a failed refund or won dispute given back) as one grant
    of the kind's category (`source` and `expires_at` default from the kind, see post_entry)."""
    require_positive(credits)
    if kind not in GRANT_KINDS:
        raise InvalidAmount(f"{kind!r} is not a kind of grant.")
    with transaction.atomic(durable=True):
        wallet = locks.wallet_for_update(user_id=user.pk)
        entry, _ = post_entry(
            wallet, credits=credits, kind=kind, idempotency_key=idempotency_key,
            reference=reference, actor=actor, memo=memo, source=source, expires_at=expires_at,
        )
    return entry


def clawback(
    *,
    user: User,
    credits: int,
    idempotency_key: str,
    kind: str,
    reference: str,
    actor: User | None = None,
    memo: str = "",
    purchase: Purchase | None = None,
) -> LedgerEntry:
    """Take credits back after a refund or dispute, from paid grants only (`purchase`'s first);
    what they lack becomes debt. May take the balance below zero (which blocks new holds); holds
    already placed stay valid."""
    require_positive(credits)
    if kind not in CLAWBACK_KINDS:
        raise InvalidAmount(f"{kind!r} is not a kind of clawback.")
    with transaction.atomic(durable=True):
        wallet = locks.wallet_for_update(user_id=user.pk)
        entry, _ = post_entry(
            wallet, credits=-credits, kind=kind, idempotency_key=idempotency_key,
            reference=reference, actor=actor, memo=memo, purchase=purchase,
        )
    return entry


def adjust(
    *, user: User, credits: int, actor: User | None, reason: str, idempotency_key: str,
    show_reason_to_user: bool = True, expires_at: datetime | None = None,
) -> LedgerEntry:
    """A staff correction, signed. The reason is required and recorded with the staff member; the
    user's wallet page shows it only with `show_reason_to_user`. Added credits are a promotional
    grant (expiring at `expires_at`, default never); a removal takes credits in spending order
    and may not take credits that are held or that the wallet does not have."""
    if isinstance(credits, bool) or not isinstance(credits, int) or credits == 0:
        raise InvalidAmount("An adjustment must be a non-zero whole number of credits.")
    reason = (reason or "").strip()
    if not reason:
        raise InvalidAmount("A reason is required for every adjustment.")
    if actor is None or not getattr(actor, "is_staff", False):
        raise InvalidAmount("Only staff may adjust credits.")
    # The key names the staff action (an admin form's one-time token, a flag), so a repeated
    # submit adjusts once; a key made up here (it was a timestamp) would adjust twice.
    if not isinstance(idempotency_key, str) or not idempotency_key.strip():
        raise InvalidAmount("An adjustment needs an idempotency key (the staff action it comes from).")
    key = idempotency_key
    with transaction.atomic(durable=True):
        wallet = locks.wallet_for_update(user_id=user.pk)
        if credits < 0 and _replayed_entry(key) is None:
            spare = wallet.balance - wallet.held
            if -credits > spare:
                raise InsufficientCredits(available=max(0, spare), required=-credits)
        entry, _ = post_entry(
            wallet, credits=credits, kind=Kind.ADJUSTMENT, idempotency_key=key,
            reference=f"staff:{actor.pk}", actor=actor, memo=reason, memo_shown_to_user=show_reason_to_user,
            expires_at=expires_at,
        )
    return entry


def credit_refund(
    *, user: User, credits: int, actor: User | None, reason: str, idempotency_key: str,
    show_reason_to_user: bool = True, expires_at: datetime | None = None,
) -> LedgerEntry:
    """Staff give credits back for a call that went wrong (kind CREDIT_REFUND): a grant of the
    refund category, spent after promotional and before paid credits, never taken back by a
    refund or dispute. The reason is required, as for an adjustment."""
    require_positive(credits)
    reason = (reason or "").strip()
    if not reason:
        raise InvalidAmount("A reason is required for every credit refund.")
    if actor is None or not getattr(actor, "is_staff", False):
        raise InvalidAmount("Only staff may give credits back.")
    if not isinstance(idempotency_key, str) or not idempotency_key.strip():
        raise InvalidAmount("A credit refund needs an idempotency key (the staff action it comes from).")
    with transaction.atomic(durable=True):
        wallet = locks.wallet_for_update(user_id=user.pk)
        entry, _ = post_entry(
            wallet, credits=credits, kind=Kind.CREDIT_REFUND, idempotency_key=idempotency_key,
            reference=f"staff:{actor.pk}", actor=actor, memo=reason, memo_shown_to_user=show_reason_to_user,
            expires_at=expires_at,
        )
    return entry



def lock_wallet(*, user: User) -> Wallet:
    """The user's wallet, locked until the caller's transaction ends (creating it if needed).

    For callers that write their own rows in the same transaction as a hold (a call and its hold
    commit together): lock, decide from `wallet.available`, then `hold_in_transaction`.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("lock_wallet() must run inside transaction.atomic().")
    if is_postgresql():  # the call-start path: a plain statement, no query to build
        row = fetch_one(_lock_wallet_sql(), [user.pk])
        if row is not None:
            return instance_from_row(Wallet, row)
    return locks.wallet_for_update(user_id=user.pk)


@lru_cache(maxsize=1)
def _lock_wallet_sql() -> str:
    columns = returning_columns(Wallet, "billing_wallet")
    return f"SELECT {columns} FROM billing_wallet WHERE user_id = %s FOR UPDATE"  # noqa: S608 (model names)
