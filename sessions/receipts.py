"""A call's receipt: its bill itemised, each token class × its price → cost → credits, then what
billing did with the hold. Shown on the call's page (sessions/views.py `call_detail`)."""

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from billing import services as billing
from sessions.models import Cause, ModelPrice, RealtimeCall, TokenCounts, credits_for_cost
from sessions.presenters import TOKEN_CLASS_LABELS


def format_usd_exact(microusd: int) -> str:
    """Micro-dollars as dollars to the micro-dollar ($0.000121): receipt lines are that small."""
    sign = "-" if microusd < 0 else ""
    whole, micro = divmod(abs(int(microusd)), 1_000_000)
    return f"{sign}${whole:,}.{micro:06d}"


@dataclass(frozen=True)
class ReceiptLine:
    token_class: str
    label: str
    tokens: int
    price_usd_per_mtok: str
    cost_microusd: int
    cost_usd: str
    credits: Decimal  # to the hundredth, rounded up: only the call's total is rounded to whole credits


@dataclass(frozen=True)
class Receipt:
    """A call's bill, itemised: each token class × its price → cost → credits, then what billing did.

    The arithmetic is the supervisor's own (`ModelPrice.cost_microusd`, `credits_for_cost`), so the
    page cannot disagree with what was charged. The supervisor rounds each response's cost up to a
    micro-dollar and the call's credits up once; lines are priced from the call's token totals
    (credits to the hundredth), so a "rounding" line reconciles them with the metered totals.
    """

    lines: list[ReceiptLine]
    price_known: bool
    markup_percent: int
    credits_per_usd: int
    cost_microusd: int  # the call's metered cost (sum of its usage records)
    cost_usd: str
    rounding_cost_microusd: int
    rounding_cost_usd: str
    credits_used: int
    rounding_credits: Decimal
    credits_held: int
    settled: bool
    credits_charged: int | None
    charged_under_hold: int | None
    released: int | None
    overshoot: int
    uncollected: int
    full_hold_charged: bool  # not metered: the whole hold was debited
    usage_records: int


def format_price(microusd_per_mtok: int) -> str:
    """A price per million tokens in dollars: two decimals, more only when it has them ($0.075)."""
    exact = format_usd_exact(microusd_per_mtok)
    whole, fraction = exact.split(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"


def _credits_to_the_hundredth(cost_microusd: int, markup_percent: int) -> Decimal:
    # The supervisor's own function, counting in hundredths of a credit.
    return Decimal(credits_for_cost(cost_microusd * 100, markup_percent=markup_percent)) / 100


def receipt_for(call: RealtimeCall) -> Receipt:
    price = ModelPrice.objects.filter(model=call.model).first()
    tokens = call.tokens
    lines = []
    for name in TokenCounts.CLASSES:
        count = getattr(tokens, name)
        cost = price.cost_microusd(TokenCounts(**{name: count})) if price else 0
        per_mtok = price.price_of(name) if price else 0
        lines.append(ReceiptLine(
            token_class=name, label=TOKEN_CLASS_LABELS[name], tokens=count,
            price_usd_per_mtok=format_price(per_mtok) if price else "–",
            cost_microusd=cost, cost_usd=format_usd_exact(cost),
            credits=_credits_to_the_hundredth(cost, call.markup_percent),
        ))
    credits_used = credits_for_cost(call.cost_microusd, markup_percent=call.markup_percent)
    rounding_cost = call.cost_microusd - sum(line.cost_microusd for line in lines)
    settled = call.credits_charged is not None
    settlement = billing.hold_settlement(hold_id=call.hold_id) if call.hold_id and settled else None
    charged_under_hold = released = None
    overshoot = uncollected = 0
    if settlement is not None:
        charged_under_hold, released = settlement.charged_credits, settlement.released_credits
        overshoot, uncollected = settlement.overshoot_credits, settlement.uncollected_credits
    full_hold = settled and bool(call.credits_charged) and (
        call.end_reason == Cause.UNMETERED
        or (charged_under_hold is not None and charged_under_hold > credits_used)
    )
    return Receipt(
        lines=lines, price_known=price is not None, markup_percent=call.markup_percent,
        credits_per_usd=settings.REALTIME_CREDITS_PER_USD, cost_microusd=call.cost_microusd,
        cost_usd=format_usd_exact(call.cost_microusd), rounding_cost_microusd=rounding_cost,
        rounding_cost_usd=format_usd_exact(rounding_cost), credits_used=credits_used,
        rounding_credits=credits_used - sum((line.credits for line in lines), Decimal(0)), credits_held=call.credits_held,
        settled=settled, credits_charged=call.credits_charged, charged_under_hold=charged_under_hold,
        released=released, overshoot=overshoot, uncollected=uncollected, full_hold_charged=full_hold,
        usage_records=call.usage_records.count(),
    )
