"""The monthly spending cap (docs/billing.md "Spending cap"): what a user may spend per calendar
month of their own time zone, `Wallet.monthly_cap_cents` (None: no cap).

Two meters, each held to the cap on its own:

* **money charged** this month: purchases and auto top-ups started this month that are paid or
  still in flight (pending, processing), less what was refunded, each at its `amount_cents`: what
  was charged, tax included, once known (a checkout's at fulfilment; a taxed top-up's from its
  finalized invoice, before its payment), else the pack's price. A purchase or top-up that would
  take it over the cap is refused (`SpendingCapExceeded`), before anything is charged; a taxed
  top-up is checked again with its tax (billing.services.topups).
* **credits used** this month: settled usage this month plus the credits active holds reserve,
  valued at the price per credit of the user's last paid purchase (before any, the cheapest
  active pack's). A hold is cut to what is left of the cap (a partial hold) or refused.

Reads only; the callers hold the wallet's lock when they decide from them (so two purchases or
two holds racing each other cannot both pass).
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache

from django.db.models import Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.exceptions import SpendingCapExceeded
from billing.models import CreditPack, LedgerEntry, Purchase, Wallet, money

# What counts as money charged: paid, or on its way to being paid (a failed, expired, canceled or
# rejected purchase charged nothing).
CHARGED_STATUSES = (Purchase.Status.PENDING, Purchase.Status.PROCESSING, Purchase.Status.PAID)


@lru_cache(maxsize=1)
def time_zone_names() -> frozenset[str]:
    """Every IANA zone name this machine knows (the choices of the time-zone select)."""
    return frozenset(zoneinfo.available_timezones())


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")  # a name this machine does not know: the month of UTC


def month_bounds(time_zone: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The start of the current calendar month in `time_zone` and the start of the next one."""
    local = (now or timezone.now()).astimezone(_zone(time_zone))
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, following


def reset_day(day: date | datetime) -> str:
    """"1 January": the day the cap's month starts again, in words."""
    return f"{day.day} {day.strftime('%B')}"


@dataclass(frozen=True)
class CapStatus:
    """Where a capped wallet stands this month."""

    cap_cents: int
    currency: str
    charged_cents: int  # meter (a): money charged this month
    used_credits: int  # meter (b): credits used (settled + held) this month
    price_cents: int  # the price per credit, as a fraction price_cents / price_credits
    price_credits: int
    resets_at: datetime

    @property
    def used_cents(self) -> int:
        """Credits used this month, valued (rounded up to the cent)."""
        return -(-self.used_credits * self.price_cents // self.price_credits)

    @property
    def left_cents(self) -> int:
        return max(0, self.cap_cents - self.used_cents)

    @property
    def credits_left(self) -> int:
        """Credits this month's cap still allows holds to reserve."""
        return max(0, self.cap_cents * self.price_credits // self.price_cents - self.used_credits)

    def display(self, cents: int) -> str:
        return money(cents, self.currency)

    @property
    def resets_on(self) -> str:
        return reset_day(self.resets_at)

    def purchase_refusal(self, amount_cents: int) -> str:
        return (
            f"This would take your spending this month to {self.display(self.charged_cents + amount_cents)}, "
            f"over your cap of {self.display(self.cap_cents)}; it resets on {self.resets_on}, or raise the cap."
        )

    def hold_refusal(self, required: int) -> str:
        return (
            f"Your monthly spending cap of {self.display(self.cap_cents)} leaves {max(0, self.credits_left):,} "
            f"credits this month, fewer than the {required:,} needed; it resets on {self.resets_on}, "
            "or raise the cap."
        )


def _price_per_credit(user_id: int) -> tuple[int, int, str]:
    """(price_cents, credits, currency) of the user's last paid purchase, else of the cheapest active
    pack per credit, else a dollar per 100 credits."""
    last = (
        Purchase.objects.filter(user_id=user_id, credited_at__isnull=False)
        .order_by("-credited_at").values_list("amount_cents", "credits", "currency").first()
    )
    if last is not None and last[0] > 0 and last[1] > 0:
        return last
    packs = CreditPack.objects.filter(active=True).values_list("price_cents", "credits", "currency")
    cheapest = min(packs, key=lambda p: p[0] / p[1], default=None)
    return cheapest if cheapest is not None else (100, 100, "usd")


def cap_status(wallet: Wallet, *, now: datetime | None = None, time_zone: str | None = None) -> CapStatus | None:
    """The wallet's month against its cap, or None when it has no cap (no query then)."""
    if wallet.monthly_cap_cents is None:
        return None
    if time_zone is None:
        from accounts.models import User

        time_zone = User.objects.values_list("time_zone", flat=True).get(pk=wallet.user_id)
    start, resets_at = month_bounds(time_zone, now)
    charged = Purchase.objects.filter(
        user_id=wallet.user_id, status__in=CHARGED_STATUSES, created_at__gte=start,
    ).aggregate(total=Coalesce(Sum("amount_cents"), 0), refunded=Coalesce(Sum("refunded_amount_cents"), 0))
    settled = LedgerEntry.objects.filter(
        wallet_id=wallet.pk, kind=LedgerEntry.Kind.USAGE, created_at__gte=start,
    ).aggregate(total=Coalesce(Sum("credits"), 0))["total"]
    price_cents, price_credits, currency = _price_per_credit(wallet.user_id)
    return CapStatus(
        cap_cents=wallet.monthly_cap_cents, currency=currency,
        charged_cents=charged["total"] - charged["refunded"], used_credits=-settled + wallet.held,
        price_cents=price_cents, price_credits=price_credits, resets_at=resets_at,
    )


def check_purchase(*, wallet: Wallet, amount_cents: int) -> None:
    """Refuse (`SpendingCapExceeded`) a purchase or top-up of `amount_cents` that would take the
    money charged this month over the cap. The caller holds the wallet's lock and creates the
    purchase in the same transaction, so racing purchases are counted one after the other."""
    status = cap_status(wallet)
    if status is not None and status.charged_cents + amount_cents > status.cap_cents:
        raise SpendingCapExceeded(status.purchase_refusal(amount_cents))


def check_hold(*, wallet: Wallet, credits: int) -> None:
    """Refuse (`SpendingCapExceeded`) a hold of `credits` that would take the credits used this
    month over the cap (the caller holds the wallet's lock)."""
    status = cap_status(wallet)
    if status is not None and credits > status.credits_left:
        raise SpendingCapExceeded(status.hold_refusal(credits))

