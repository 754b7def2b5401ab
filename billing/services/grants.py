"""Credit grants: which credits a wallet holds, of what kind, until when (see CreditGrant).

Bookkeeping only, for `ledger.post_entry` (the caller holds the wallet's lock and writes the
ledger entry): every entry that adds credits makes one grant (`add_grant`), every entry that
removes credits takes them from the grants (`spend`, or `spend_paid` for refunds and disputes),
and whatever the grants cannot cover becomes `wallet.debt`, so that always

    wallet.balance == sum(grant.remaining) − wallet.debt

(tests/conftest.py checks it after every test that uses the database). Imports only the models.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db.models import F, QuerySet
from django.utils import timezone

from billing.models import BillingSettings, CreditGrant, LedgerEntry, Purchase, Wallet

if TYPE_CHECKING:
    from collections.abc import Iterable

Kind = LedgerEntry.Kind
Category = CreditGrant.Category
Source = CreditGrant.Source

# The category of the credits an entry of each adding kind brings. A refund reversal or a won
# dispute gives back paid credits (they were taken from paid grants only).
CATEGORY_OF_KIND: dict[str, str] = {
    Kind.PURCHASE: Category.PAID,
    Kind.REFUND_REVERSAL: Category.PAID,
    Kind.DISPUTE_WON: Category.PAID,
    Kind.BONUS: Category.PROMOTIONAL,
    Kind.ADJUSTMENT: Category.PROMOTIONAL,
    Kind.CREDIT_REFUND: Category.REFUND,
}

_DEFAULT_SOURCE: dict[str, str] = {
    Kind.PURCHASE: Source.PURCHASE,
    Kind.REFUND_REVERSAL: Source.REFUND_REVERSAL,
    Kind.DISPUTE_WON: Source.DISPUTE_WON,
    Kind.BONUS: Source.STAFF,
    Kind.ADJUSTMENT: Source.STAFF,
    Kind.CREDIT_REFUND: Source.STAFF,
}

# Sentinel for "no expiry given: use BillingSettings" (None means "never expires").
DEFAULT_EXPIRY: datetime = datetime.min  # a marker, never stored


def spending_order(grants: QuerySet[CreditGrant]) -> QuerySet[CreditGrant]:
    """CreditGrant's spending order: the one that expires first (never-expiring last), then
    promotional, refund, paid, then the oldest. The one-statement settlement in PostgreSQL
    (migration 0009, billing_spend_grants) orders the same way."""
    return grants.order_by(F("expires_at").asc(nulls_last=True), "spend_rank", "id")


def days_from_now(days: int | None, *, now: datetime | None = None) -> datetime | None:
    """The moment `days` days from now, or None (never) for an empty setting."""
    if days is None:
        return None
    return (now or timezone.now()) + timedelta(days=days)


def _default_expiry(kind: str, purchase: Purchase | None) -> datetime | None:
    """When the credits of an entry expire when its caller did not say: bought credits after
    BillingSettings.paid_credits_expire_days; credits given back keep the expiry of the
    purchase's own grant; everything else never."""
    if kind == Kind.PURCHASE:
        return days_from_now(BillingSettings.load().paid_credits_expire_days)
    if kind in (Kind.REFUND_REVERSAL, Kind.DISPUTE_WON) and purchase is not None:
        first = purchase.grants.filter(category=Category.PAID).order_by("id").first()
        return first.expires_at if first else None
    return None


def add_grant(
    wallet: Wallet,
    entry: LedgerEntry,
    *,
    category: str | None = None,
    source: str | None = None,
    expires_at: datetime | None = DEFAULT_EXPIRY,
    purchase: Purchase | None = None,
    memo: str = "",
) -> CreditGrant:
    """The grant of an entry that added credits. Paid credits first pay the wallet's debt (what
    a clawback could not take from paid grants): the grant keeps its full `credits` and has that
    much less `remaining`. Saves `wallet.debt`; the caller saves the balance."""
    category = category or CATEGORY_OF_KIND[entry.kind]
    if source is None:
        source = _DEFAULT_SOURCE[entry.kind]
        if purchase is not None and purchase.source == Purchase.Source.AUTO_TOP_UP and entry.kind == Kind.PURCHASE:
            source = Source.TOP_UP
    if expires_at is DEFAULT_EXPIRY:
        expires_at = _default_expiry(entry.kind, purchase)
    remaining = entry.credits
    if category == Category.PAID and wallet.debt > 0:
        paid_back = min(wallet.debt, remaining)
        wallet.debt -= paid_back
        remaining -= paid_back
        Wallet.objects.filter(pk=wallet.pk).update(debt=wallet.debt)
    return CreditGrant.objects.create(
        wallet=wallet, category=category, source=source, spend_rank=CreditGrant.SPEND_RANK[Category(category)],
        credits=entry.credits, remaining=remaining, expires_at=expires_at, entry=entry, purchase=purchase,
        memo=memo[:500],
    )


def _take(grants: Iterable[CreditGrant], credits: int) -> int:
    """Take up to `credits` from `grants` in their order; returns what they could not cover."""
    left = credits
    for grant in grants:
        if left <= 0:
            break
        take = min(grant.remaining, left)
        grant.remaining -= take
        left -= take
        CreditGrant.objects.filter(pk=grant.pk).update(remaining=F("remaining") - take)
    return left


def _owe(wallet: Wallet, credits: int) -> None:
    if credits > 0:
        wallet.debt += credits
        Wallet.objects.filter(pk=wallet.pk).update(debt=wallet.debt)


def spend(wallet: Wallet, credits: int) -> None:
    """Take `credits` from the wallet's grants in spending order (usage, a staff removal); what
    they cannot cover (a settlement after a clawback took the balance below zero) becomes debt."""
    grants = spending_order(CreditGrant.objects.filter(wallet=wallet, remaining__gt=0))
    _owe(wallet, _take(grants, credits))


def spend_paid(wallet: Wallet, credits: int, *, purchase: Purchase | None) -> None:
    """Take `credits` back from paid grants only (a refund, a dispute): the purchase's own grants
    first, then the other paid grants in spending order; the rest becomes debt, paid by the next
    paid credits. Promotional and refund credits are never taken back."""
    paid = CreditGrant.objects.filter(wallet=wallet, remaining__gt=0, category=Category.PAID)
    own: list[CreditGrant] = []
    if purchase is not None:
        own = list(paid.filter(purchase=purchase).order_by("id"))
    others = spending_order(paid.exclude(pk__in=[g.pk for g in own]))
    _owe(wallet, _take([*own, *others], credits))


def expire_from(wallet: Wallet, grant: CreditGrant, credits: int, *, now: datetime) -> None:
    """Take `credits` from one grant (its expiry entry); when nothing is left it is expired."""
    grant.remaining -= credits
    fields: dict[str, object] = {"remaining": F("remaining") - credits}
    if grant.remaining == 0:
        grant.expired_at = now
        fields["expired_at"] = now
    CreditGrant.objects.filter(pk=grant.pk).update(**fields)
