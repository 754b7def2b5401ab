"""Promotional credits and expiry: the sign-up bonus, promo codes redeemed on the wallet page, and
the scheduled job that expires what is left of a grant (docs/billing.md, "Credit grants").

Each writes through `ledger.post_entry` under the wallet's lock, so its grant and its ledger entry
commit together and a replay (same idempotency key) writes nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billing import locks
from billing.exceptions import BillingError
from billing.models import BillingSettings, CreditGrant, LedgerEntry, PromoCode, PromoRedemption
from billing.services.grants import days_from_now
from billing.services.ledger import Kind, post_entry

if TYPE_CHECKING:
    from accounts.models import User

logger = logging.getLogger(__name__)


# --- the sign-up bonus -------------------------------------------------------------------------


def grant_signup_bonus(*, user: User) -> LedgerEntry | None:
    """BillingSettings.signup_bonus_credits as a promotional grant, once per user (key
    `signup_bonus:<user id>`), expiring after signup_bonus_expires_days. None when staff set no
    bonus."""
    config = BillingSettings.load()
    if not config.signup_bonus_credits:
        return None
    with transaction.atomic(durable=True):
        wallet = locks.wallet_for_update(user_id=user.pk)
        entry, _ = post_entry(
            wallet, credits=config.signup_bonus_credits, kind=Kind.BONUS, idempotency_key=f"signup_bonus:{user.pk}",
            reference=f"user:{user.pk}", memo="Welcome bonus", source=CreditGrant.Source.SIGNUP_BONUS,
            expires_at=days_from_now(config.signup_bonus_expires_days),
        )
    return entry


# --- promo codes -------------------------------------------------------------------------------


class PromoCodeRefused(BillingError):
    """A code that gives nothing, with the reason in words for the user (a 4xx, never a 500)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def normalise_code(code: str) -> str:
    """Codes are stored upper-case and matched ignoring case and surrounding spaces."""
    return (code or "").strip().upper()


def redeem_promo_code(*, user: User, code: str, now: datetime | None = None) -> CreditGrant:
    """Redeem a promo code: one promotional grant of the code's credits, expiring
    `grant_expires_days` after now. Atomic under the code's row lock (then the wallet's), so
    `times_redeemed` never passes `max_redemptions` however many redeem at once, and once per
    wallet (PromoRedemption's unique constraint). Raises `PromoCodeRefused` with the reason."""
    now = now or timezone.now()
    wanted = normalise_code(code)
    if not wanted:
        raise PromoCodeRefused("Enter a code.")
    with transaction.atomic(durable=True):
        promo = PromoCode.objects.select_for_update().filter(code=wanted).first()
        if promo is None:
            raise PromoCodeRefused(f"There is no code “{wanted}”. Check the spelling and try again.")
        if not promo.active:
            raise PromoCodeRefused(f"The code {promo.code} is no longer active.")
        if promo.valid_until is not None and promo.valid_until < now:
            raise PromoCodeRefused(f"The code {promo.code} has expired.")
        wallet = locks.wallet_for_update(user_id=user.pk)
        if PromoRedemption.objects.filter(code=promo, wallet=wallet).exists():
            raise PromoCodeRefused(f"You have already redeemed the code {promo.code}.")
        if promo.max_redemptions is not None and promo.times_redeemed >= promo.max_redemptions:
            raise PromoCodeRefused(f"The code {promo.code} has been used up.")
        entry, _ = post_entry(
            wallet, credits=promo.credits, kind=Kind.BONUS, idempotency_key=f"promo:{promo.pk}:wallet:{wallet.pk}",
            reference=f"promo:{promo.code}", memo=promo.memo or f"Promo code {promo.code}",
            source=CreditGrant.Source.PROMO_CODE, expires_at=days_from_now(promo.grant_expires_days, now=now),
        )
        grant = CreditGrant.objects.get(entry=entry)
        PromoRedemption.objects.create(code=promo, wallet=wallet, grant=grant)
        PromoCode.objects.filter(pk=promo.pk).update(times_redeemed=F("times_redeemed") + 1)
    return grant


# --- expiry ------------------------------------------------------------------------------------


def due_grants(*, now: datetime | None = None, limit: int = 1000) -> list[int]:
    """Ids of grants past their expiry with credits left, the oldest expiry first."""
    now = now or timezone.now()
    ids = CreditGrant.objects.filter(expires_at__lte=now, remaining__gt=0).order_by("expires_at", "id")
    return list(ids.values_list("id", flat=True)[:limit])


def expire_grant(*, grant_id: int, now: datetime | None = None) -> LedgerEntry | None:
    """Expire what is left of one grant past its expiry: an EXPIRY ledger entry (key
    `expiry:grant:<id>`), remaining 0, `expired_at` set.

    A wallet with active holds keeps what they need: expiry never takes available credits
    (balance − held) below zero; the rest waits for the next run after the holds settle (a call
    spends the grant that expires first anyway, so usually nothing is left to wait). Such a part
    is expired under `expiry:grant:<id>:part:<remaining before>`, the last part under the grant's
    own key. None when nothing was due (already expired or spent, not due yet, all held)."""
    now = now or timezone.now()
    wallet_id = CreditGrant.objects.filter(pk=grant_id).values_list("wallet_id", flat=True).first()
    if wallet_id is None:
        return None
    with transaction.atomic(durable=True):
        wallet = locks.wallet_by_pk_for_update(wallet_id=wallet_id)
        grant = CreditGrant.objects.get(pk=grant_id)  # read again under the wallet's lock
        if grant.remaining == 0 or grant.expires_at is None or grant.expires_at > now:
            return None
        credits = grant.remaining
        if wallet.held > 0:
            credits = min(credits, max(0, wallet.balance - wallet.held))
        if credits == 0:
            return None
        whole = credits == grant.remaining
        key = f"expiry:grant:{grant.pk}" if whole else f"expiry:grant:{grant.pk}:part:{grant.remaining}"
        entry, _ = post_entry(
            wallet, credits=-credits, kind=Kind.EXPIRY, idempotency_key=key, reference=f"grant:{grant.pk}",
            memo=f"{grant.get_source_display()} credits expired", expiring=grant,
        )
    if not whole:
        logger.info("grant %s: %s credits expired, %s kept for active holds", grant_id, credits, grant.remaining)
    return entry


def expire_due_grants(*, now: datetime | None = None) -> int:
    """Expire every grant that is due (the beat job's body); returns the entries written."""
    written = 0
    for grant_id in due_grants(now=now):
        if expire_grant(grant_id=grant_id, now=now) is not None:
            written += 1
    return written
