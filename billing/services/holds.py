"""Holds: credits reserved for something that will cost at most that much, then settled (what was
used is debited, the rest released) or released whole, exactly once."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, models, transaction
from django.utils import timezone

from billing import locks, notifications
from billing.exceptions import (
    HoldAlreadyFinal,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidAmount,
    WalletBlocked,
)
from billing.models import Hold, LedgerEntry, Wallet
from billing.services import caps, crossings
from billing.services.ledger import Kind, post_entry, push_balance_on_commit, require_positive
from realtime_saas.sql import (
    fetch_one,
    insert_defaults,
    insert_parts,
    instance_from_row,
    is_postgresql,
    loaded,
    one_statement,
    returning_columns,
)

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
    hold = _place_hold_fast(user_id=user.pk, credits=credits, idempotency_key=idempotency_key,
                            reference=reference, memo=memo)
    if hold is not None:
        return hold
    # Not placed by the one statement (or not on PostgreSQL): a replayed key, a refusal, a wallet
    # not created yet. Nothing was written; the general path decides.
    with transaction.atomic(durable=True):
        wallet = locks.wallet_for_update(user_id=user.pk)
        existing = Hold.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.wallet_id != wallet.pk or existing.credits != credits:
                raise IdempotencyConflict(f"Key {idempotency_key!r} was used for a different hold.")
            return existing
        return hold_in_transaction(wallet=wallet, credits=credits, idempotency_key=idempotency_key,
                                   reference=reference, memo=memo)


# The hot paths below are one hand-written statement each on PostgreSQL (the ORM spends more CPU
# building a query than PostgreSQL spends running it: PITFALLS). Each does exactly what the general
# path after it does, or writes nothing and lets that path decide (replays, refusals, overshoot).
# Locks are taken in billing/locks.py's order: the wallet row first, then the hold. Column lists
# come from the models (ledger.insert_parts, returning_columns).
#
# A service that is one statement runs it in autocommit (realtime_saas.sql.one_statement).

_HOLD_VALUES = {
    "wallet_id": "%(wallet)s", "credits": "%(credits)s", "status": "'active'", "reference": "%(reference)s",
    "memo": "%(memo)s", "idempotency_key": "%(key)s", "created_at": "%(now)s",
}


@lru_cache(maxsize=1)
def _place_sql() -> str:
    columns, values = insert_parts(Hold, dict(_HOLD_VALUES, wallet_id="w.id"))
    return f"""
WITH w AS (
    SELECT id, balance, held, open_disputes, monthly_cap_cents FROM billing_wallet WHERE user_id = %(user)s FOR UPDATE
), h AS (
    INSERT INTO billing_hold ({columns}) SELECT {values} FROM w
    WHERE w.balance >= 0 AND w.open_disputes = 0 AND w.balance - w.held >= %(credits)s
        AND w.monthly_cap_cents IS NULL
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, wallet_id
), u AS (
    UPDATE billing_wallet SET held = billing_wallet.held + %(credits)s, updated_at = %(now)s FROM h
    WHERE billing_wallet.id = h.wallet_id
    RETURNING {returning_columns(Wallet, "billing_wallet")}
)
SELECT h.id, u.* FROM h, u
"""  # noqa: S608 (names from the models, values as parameters)


def _hold_params(*, credits: int, idempotency_key: str, reference: str, memo: str) -> dict[str, Any]:
    return {"credits": credits, "reference": reference, "memo": memo, "key": idempotency_key,
            "now": timezone.now(), **insert_defaults(Hold, _HOLD_VALUES)}


def _new_hold(hold_id: int, wallet_id: int, params: dict[str, Any]) -> Hold:
    """The Hold a statement above just inserted, without reading it back."""
    return loaded(Hold(id=hold_id, wallet_id=wallet_id, credits=params["credits"], status=Hold.Status.ACTIVE,
                       reference=params["reference"], memo=params["memo"], idempotency_key=params["key"],
                       created_at=params["now"]))


def _place_hold_fast(*, user_id: int, credits: int, idempotency_key: str, reference: str,
                     memo: str) -> Hold | None:
    """Lock the wallet, check it, insert the hold and move `held`: one statement (the checks read
    the locked row, so racing holds stay exact). None, having written nothing, when the hold is
    refused, its key was used before, the wallet does not exist yet, or not on PostgreSQL."""
    if not is_postgresql():
        return None
    params = _hold_params(credits=credits, idempotency_key=idempotency_key, reference=reference[:255], memo=memo)
    params["user"] = user_id
    row = one_statement(_place_sql(), params)
    if row is None:
        return None
    wallet = instance_from_row(Wallet, row[1:])
    push_balance_on_commit(wallet)
    crossings.note_available(wallet, may_rearm=False)  # auto top-up below its threshold
    return _new_hold(row[0], wallet.pk, params)


@lru_cache(maxsize=1)
def _hold_in_transaction_sql() -> str:
    columns, values = insert_parts(Hold, _HOLD_VALUES)
    return f"""
WITH h AS (
    INSERT INTO billing_hold ({columns}) VALUES ({values}) RETURNING id
), u AS (
    UPDATE billing_wallet SET held = held + %(credits)s, updated_at = %(now)s WHERE id = %(wallet)s RETURNING held
)
SELECT (SELECT id FROM h), (SELECT held FROM u)
"""  # noqa: S608 (names from the models, values as parameters)


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
    caps.check_hold(wallet=wallet, credits=credits)  # the monthly spending cap (no query without one)
    if is_postgresql():  # the hold and the wallet's `held` in one statement
        params = _hold_params(credits=credits, idempotency_key=idempotency_key, reference=reference[:255],
                              memo=memo)
        params["wallet"] = wallet.pk
        row = fetch_one(_hold_in_transaction_sql(), params)
        assert row is not None  # the INSERT … RETURNING always returns its row
        hold_id, wallet.held = row
        wallet.updated_at = params["now"]
        hold = _new_hold(hold_id, wallet.pk, params)
    else:
        hold = Hold.objects.create(
            wallet=wallet, credits=credits, reference=reference[:255], memo=memo, idempotency_key=idempotency_key
        )
        wallet.held += credits
        wallet.save(update_fields=["held", "updated_at"])
    push_balance_on_commit(wallet)
    crossings.note_available(wallet, may_rearm=False)  # auto top-up below its threshold
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
    key = idempotency_key or f"hold:{hold.pk}:settle"
    if used_credits <= hold.credits and is_postgresql():
        try:
            settled = _settle_fast(hold=hold, used_credits=used_credits, idempotency_key=key)
        except IntegrityError:  # the entry's key was used before: rolled back, the general path says how
            settled = None
        if settled is not None:
            return settled
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
                idempotency_key=key,
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
        crossings.note_available(wallet)  # auto top-up's threshold (the task is enqueued on commit)
    return Settlement.of(locked)


_ENTRY_VALUES = {
    "id": "h.entry_id", "wallet_id": "u.id", "credits": "-%(charged)s", "kind": "'usage'",
    "balance_after": "u.balance", "idempotency_key": "%(key)s", "reference": "%(reference)s", "memo": "%(memo)s",
    "created_at": "%(now)s",
}


# billing.notifications' low-balance rule (`_threshold`, `note_balance_change` after a debit) in the
# settle statement: the wallet's own threshold, else a share of the credits of its user's last
# pack; the warning is marked sent when a debit takes the balance to it or below, once.
# tests/ux/test_emails.py (the settlements there take this path on PostgreSQL) holds both to it.
_LOW_BALANCE_THRESHOLD_SQL = """COALESCE(billing_wallet.low_balance_threshold,
    (SELECT p.credits FROM billing_purchase p WHERE p.user_id = billing_wallet.user_id AND p.credited_at IS NOT NULL
     ORDER BY p.credited_at DESC LIMIT 1) * %(threshold_percent)s / 100)"""


@lru_cache(maxsize=1)
def _settle_sql() -> str:
    columns, values = insert_parts(LedgerEntry, _ENTRY_VALUES)
    return f"""
WITH w AS (
    SELECT id FROM billing_wallet WHERE id = %(wallet)s FOR UPDATE
), h AS (
    UPDATE billing_hold SET status = 'settled', charged_credits = %(charged)s, released_credits = %(released)s,
        finished_at = %(now)s,
        entry_id = CASE WHEN %(charged)s > 0
                        THEN nextval(pg_get_serial_sequence('billing_ledgerentry', 'id')) END
    WHERE id = %(hold)s AND status = 'active' AND wallet_id = (SELECT id FROM w)
        AND credits = %(credits)s
    RETURNING entry_id
), g AS (
    SELECT billing_spend_grants(%(wallet)s::bigint, %(charged)s::bigint) AS short FROM h WHERE %(charged)s > 0
), u AS (
    UPDATE billing_wallet SET held = held - %(credits)s, balance = balance - %(charged)s, updated_at = %(now)s,
        debt = debt + COALESCE((SELECT short FROM g), 0),
        low_balance_notified_at = CASE
            WHEN billing_wallet.low_balance_notified_at IS NULL AND %(charged)s > 0
                 AND billing_wallet.balance - %(charged)s <= {_LOW_BALANCE_THRESHOLD_SQL}
            THEN %(now)s ELSE billing_wallet.low_balance_notified_at END
    FROM h WHERE billing_wallet.id = %(wallet)s
    RETURNING {returning_columns(Wallet, "billing_wallet")}
), e AS (
    INSERT INTO billing_ledgerentry ({columns}) SELECT {values} FROM h, u WHERE h.entry_id IS NOT NULL
)
SELECT h.entry_id, u.* FROM h, u
"""  # noqa: S608 (names from the models, values as parameters)


def _settle_fast(*, hold: Hold, used_credits: int, idempotency_key: str) -> Settlement | None:
    """`settle_hold` for usage within the hold (the usual case), in one statement: lock the wallet,
    finish the hold if it is still active and as large as `hold` says (re-checked on the locked
    row: `extend_hold` may have grown it since it was read), spend the grants in
    spending order (billing_spend_grants, migration 0009: what they lack becomes debt, as
    grants.spend does), move the wallet, append the entry. None, having written nothing, when
    the hold is no longer active or has grown (the general path settles it from the locked row).
    PostgreSQL only.

    The entry's id is drawn first so the hold can point at it in the same statement (the foreign
    key is checked at commit). A reused entry key fails the statement with IntegrityError (the
    caller rolls back and the general path says what that key was used for).
    """
    now = timezone.now()
    charged = used_credits
    memo = f"{used_credits:,} credits used ({hold.reference})"
    params = {"wallet": hold.wallet_id, "hold": hold.pk, "charged": charged, "released": hold.credits - charged,
              "credits": hold.credits, "now": now, "key": idempotency_key, "reference": hold.reference,
              "memo": memo, "threshold_percent": notifications.DEFAULT_THRESHOLD_PERCENT,
              **insert_defaults(LedgerEntry, _ENTRY_VALUES)}
    row = one_statement(_settle_sql(), params)
    if row is None:
        return None
    entry_id = row[0]
    wallet = instance_from_row(Wallet, row[1:])
    push_balance_on_commit(wallet)
    crossings.note_available(wallet)  # committed: auto top-up's threshold, from the row (no query when off)
    if wallet.low_balance_notified_at == now:  # this debit crossed the threshold: warn, once
        transaction.on_commit(partial(notifications.send_low_balance_email.delay, wallet.pk))
    entry = None
    if entry_id is not None:
        entry = LedgerEntry(id=entry_id, wallet_id=wallet.pk, credits=-charged, kind=Kind.USAGE,
                            balance_after=wallet.balance, idempotency_key=idempotency_key,
                            reference=hold.reference, memo=memo, created_at=now)
        loaded(entry)
    settled = Hold(
        id=hold.pk, wallet_id=hold.wallet_id, credits=hold.credits, status=Hold.Status.SETTLED,
        reference=hold.reference, memo=hold.memo, idempotency_key=hold.idempotency_key,
        charged_credits=charged, released_credits=hold.credits - charged, entry_id=entry_id,
        created_at=hold.created_at, finished_at=now,
    )
    loaded(settled)
    settled.entry = entry
    return Settlement.of(settled)


def release_hold(*, hold: Hold, idempotency_key: str | None = None) -> Hold:
    """Give a hold back whole (nothing was used), once, under `idempotency_key` (default
    `hold:<id>:release`).

    A replay with the key that released it returns the hold and changes nothing. A release under
    another key of a hold already released, or of a settled hold, raises `HoldAlreadyFinal`; a key
    that released another hold raises `IdempotencyConflict`.
    """
    key = idempotency_key or f"hold:{hold.pk}:release"
    try:
        with transaction.atomic(durable=True):
            wallet = locks.wallet_by_pk_for_update(wallet_id=hold.wallet_id)
            locked = locks.hold_for_update(hold_id=hold.pk)
            if locked.status == Hold.Status.RELEASED and locked.release_key == key:
                return locked
            if locked.status != Hold.Status.ACTIVE:
                raise HoldAlreadyFinal(hold_id=locked.pk, status=locked.status)
            wallet.held -= locked.credits
            wallet.save(update_fields=["held", "updated_at"])
            locked.status = Hold.Status.RELEASED
            locked.released_credits = locked.credits
            locked.release_key = key
            locked.finished_at = timezone.now()
            locked.save()  # the unique release_key, not a prior read, decides
            push_balance_on_commit(wallet)
    except IntegrityError:
        if Hold.objects.filter(release_key=key).exclude(pk=hold.pk).exists():
            raise IdempotencyConflict(f"Key {key!r} released another hold.") from None
        raise
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


# --- growing a live call's hold (auto top-up, billing.services.topups) ---------------------------


def extend_hold(*, hold_id: int, credits: int) -> int:
    """Grow an ACTIVE hold by up to `credits`, as far as the wallet's available credits and the
    monthly spending cap allow (a call's partial hold, when a top-up has just added credits).
    Returns the credits added (0: nothing available, or the hold is no longer active). Under the
    wallet's lock, in billing/locks.py's order (wallet, then hold)."""
    require_positive(credits)
    with transaction.atomic(durable=True):
        hold = Hold.objects.filter(pk=hold_id).only("wallet_id").first()
        if hold is None:
            return 0
        wallet = locks.wallet_by_pk_for_update(wallet_id=hold.wallet_id)
        locked = locks.hold_for_update(hold_id=hold_id)
        if locked.status != Hold.Status.ACTIVE or wallet.blocked_reason:
            return 0
        grow = min(credits, wallet.balance - wallet.held)
        if (cap := caps.cap_status(wallet)) is not None:
            grow = min(grow, cap.credits_left)
        if grow <= 0:
            return 0
        Hold.objects.filter(pk=hold_id).update(credits=models.F("credits") + grow)
        wallet.held += grow
        wallet.save(update_fields=["held", "updated_at"])
        push_balance_on_commit(wallet)
        crossings.note_available(wallet, may_rearm=False)
    return grow
