"""Holds: credits reserved for something that will cost at most that much, then settled (what was
used is debited, the rest released) or released whole, exactly once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from billing import locks
from billing.exceptions import (
    HoldAlreadyFinal,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidAmount,
    WalletBlocked,
)
from billing.models import Hold, LedgerEntry, Wallet
from billing.services.ledger import Kind, post_entry, push_balance_on_commit, require_positive

if TYPE_CHECKING:
    from accounts.models import User


@dataclass(frozen=True)
class Settlement:
    """The outcome of settling a hold (the same object on every replay)."""

    hold: Hold
    charged_credits: int
    released_credits: int
    overshoot_credits: int
    uncollected_credits: int
    entry: LedgerEntry | None

    @classmethod
    def of(cls, hold: Hold) -> Settlement:
        return cls(
            hold=hold,
            charged_credits=hold.charged_credits,
            released_credits=hold.released_credits,
            overshoot_credits=hold.overshoot_credits,
            uncollected_credits=hold.uncollected_credits,
            entry=hold.entry,
        )



def place_hold(*, user: User, credits: int, idempotency_key: str, reference: str, memo: str = "") -> Hold:
    """Reserve credits for something that will cost at most that much.

    Raises `WalletBlocked` (negative balance, open dispute) or `InsufficientCredits` (available <
    credits). A replayed key returns the first hold, whatever its state now.
    """
    require_positive(credits)
    with transaction.atomic(durable=True):
        wallet = locks.wallet_for_update(user_id=user.pk)
        existing = Hold.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.wallet_id != wallet.pk or existing.credits != credits:
                raise IdempotencyConflict(f"Key {idempotency_key!r} was used for a different hold.")
            return existing
        return hold_in_transaction(wallet=wallet, credits=credits, idempotency_key=idempotency_key,
                                   reference=reference, memo=memo)



def hold_in_transaction(*, wallet: Wallet, credits: int, idempotency_key: str, reference: str,
                        memo: str = "") -> Hold:
    """`place_hold` for a wallet the caller has locked (`lock_wallet`) in its open transaction.

    Same checks; no replay lookup, so the key must be new (a reused key fails on its unique
    constraint and the caller's transaction rolls back, hold and all).
    """
    require_positive(credits)
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("hold_in_transaction() must run inside the transaction that locked the wallet.")
    if reason := wallet.blocked_reason:
        raise WalletBlocked(reason=reason)
    available = wallet.balance - wallet.held
    if available < credits:
        raise InsufficientCredits(available=max(0, available), required=credits)
    hold = Hold.objects.create(
        wallet=wallet, credits=credits, reference=reference[:255], memo=memo, idempotency_key=idempotency_key
    )
    wallet.held += credits
    wallet.save(update_fields=["held", "updated_at"])
    push_balance_on_commit(wallet)
    return hold


def settle_hold(*, hold: Hold, used_credits: int, idempotency_key: str | None = None) -> Settlement:
    """Debit what was used under a hold and release the rest, exactly once.

    `min(used, hold)` is always debited (even if a clawback has since taken the balance below
    zero: the usage happened). Usage beyond the hold is debited from available credits only, never
    below zero; the rest is reported as `uncollected_credits`. A second call returns the first
    Settlement; settling a released hold raises `HoldAlreadyFinal`.
    """
    if isinstance(used_credits, bool) or not isinstance(used_credits, int) or used_credits < 0:
        raise InvalidAmount(f"Used credits must be a whole number ≥ 0, not {used_credits!r}.")
    with transaction.atomic(durable=True):
        wallet = locks.wallet_by_pk_for_update(wallet_id=hold.wallet_id)
        locked = locks.hold_for_update(hold_id=hold.pk)
        if locked.status == Hold.Status.SETTLED:
            return Settlement.of(locked)
        if locked.status != Hold.Status.ACTIVE:
            raise HoldAlreadyFinal(hold_id=locked.pk, status=locked.status)
        charged = min(used_credits, locked.credits)
        overshoot = used_credits - charged
        wallet.held -= locked.credits
        spare = wallet.balance - charged - wallet.held
        collected = max(0, min(overshoot, spare))
        uncollected = overshoot - collected
        wallet.save(update_fields=["held", "updated_at"])
        entry = None
        if charged + collected:
            memo = f"{used_credits:,} credits used ({locked.reference})"
            if uncollected:
                memo += f"; {uncollected:,} used beyond the hold could not be collected"
            entry, _ = post_entry(
                wallet, credits=-(charged + collected), kind=Kind.USAGE,
                idempotency_key=idempotency_key or f"hold:{locked.pk}:settle",
                reference=locked.reference, memo=memo,
            )
        else:
            push_balance_on_commit(wallet)
        locked.status = Hold.Status.SETTLED
        locked.charged_credits = charged
        locked.released_credits = locked.credits - charged
        locked.overshoot_credits = overshoot
        locked.uncollected_credits = uncollected
        locked.entry = entry
        locked.finished_at = timezone.now()
        locked.save()
    return Settlement.of(locked)


def release_hold(*, hold: Hold, idempotency_key: str | None = None) -> Hold:
    """Give a hold back whole (nothing was used). Idempotent; a settled hold raises
    `HoldAlreadyFinal`."""
    with transaction.atomic(durable=True):
        wallet = locks.wallet_by_pk_for_update(wallet_id=hold.wallet_id)
        locked = locks.hold_for_update(hold_id=hold.pk)
        if locked.status == Hold.Status.RELEASED:
            return locked
        if locked.status != Hold.Status.ACTIVE:
            raise HoldAlreadyFinal(hold_id=locked.pk, status=locked.status)
        wallet.held -= locked.credits
        wallet.save(update_fields=["held", "updated_at"])
        locked.status = Hold.Status.RELEASED
        locked.released_credits = locked.credits
        locked.finished_at = timezone.now()
        locked.save()
        push_balance_on_commit(wallet)
    return locked


# --- reads, for the apps that keep a hold's id (sessions: RealtimeCall.hold_id) --------------


def get_hold(*, hold_id: int) -> Hold:
    """The hold to pass to `settle_hold` / `release_hold`. Other apps keep only its id and never
    read its fields: `hold_settlement` says what became of it. Raises `Hold.DoesNotExist`."""
    return Hold.objects.get(pk=hold_id)


def hold_settlement(*, hold_id: int) -> Settlement | None:
    """What became of a hold: its Settlement once it is final (a hold released whole charged
    nothing and released everything), None while it is active or if there is no such hold. Reads
    only; the figures are those `settle_hold` returned."""
    hold = Hold.objects.select_related("entry").filter(pk=hold_id).first()
    if hold is None or hold.status == Hold.Status.ACTIVE:
        return None
    return Settlement.of(hold)
