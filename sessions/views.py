"""Pages of the sessions app: Talk (start a voice call), History (past calls) and a call's detail.

Read-only: a call starts and ends through the API (`sessions/api`), which the Talk page's script
calls; these views only show what the API and the supervisor recorded.
"""

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from accounts.decorators import verified_email_required
from billing.services import available_credits
from sessions import presenters
from sessions.models import (
    Assistant,
    CallState,
    Cause,
    ModelPrice,
    RealtimeCall,
    TokenCounts,
    credits_for_cost,
)
from sessions.rates import credit_rates

HISTORY_PAGE_SIZE = 25

# A call's end reason (`Cause`) as the user should read it. The Talk page gets the same words, so a
# call ended by the server reads the same live and in History.
END_REASON_WORDS = {
    "user_hangup": "You ended the call.",
    "staff_hangup": "The call was ended by our staff.",
    "credits_exhausted": "Your credits for this call ran out, so it was ended.",
    "time_limit": "The call reached its maximum length.",
    "user_suspended": "The call was ended because the account was suspended.",
    "call_closed": "The call was closed (the connection ended).",
    "insufficient_credits": "Not enough credits to start the call.",
    "wallet_blocked": "Your credits are blocked, so the call could not start.",
    "invalid_offer": "The browser's call offer was refused.",
    "upstream_error": "The voice service reported an error; nothing was charged.",
    "upstream_timeout": "The voice service did not answer in time; nothing was charged.",
    "upstream_rate_limited": "The voice service was busy; nothing was charged.",
    "unmetered": "The call was not metered, so its full hold was charged at its expected end.",
    "not_watched": "The call could not be watched for its cost, so it was ended for safety.",
    "policy_violation": "The call was ended because the assistant's settings were changed from the browser.",
}

TOKEN_CLASS_LABELS = dict(
    zip(
        TokenCounts.CLASSES,
        ("Text in", "Text in (cached)", "Text out", "Audio in", "Audio in (cached)", "Audio out"),
        strict=True,
    )
)

STATE_BADGES = {
    CallState.PENDING: "warn",
    CallState.ACTIVE: "ok",
    CallState.ENDING: "warn",
    CallState.ENDED: "",
    CallState.KILLED: "err",
    CallState.EXPIRED: "warn",
    CallState.FAILED: "err",
}


@dataclass(frozen=True)
class CallFigures:
    """What the pages show of one call, computed once so History and detail agree."""

    duration_seconds: int | None
    tokens_total: int
    cost_usd: str
    credits: int | None
    credits_label: str
    badge: str
    end_reason_words: str


def figures_for(call: RealtimeCall) -> CallFigures:
    tokens = call.tokens
    if call.credits_charged is not None:
        credits, label = call.credits_charged, "charged"
    elif call.is_open:
        credits, label = call.credits_held, "held"
    else:
        credits, label = None, ""
    return CallFigures(
        duration_seconds=presenters.duration_seconds(call),
        tokens_total=sum(tokens.as_dict().values()),
        cost_usd=format_usd(call.cost_microusd),
        credits=credits,
        credits_label=label,
        badge=STATE_BADGES.get(call.state, ""),
        end_reason_words=END_REASON_WORDS.get(call.end_reason, call.get_end_reason_display())
        if call.end_reason
        else "",
    )


def format_usd(microusd: int) -> str:
    """Micro-dollars as dollars, with the precision small calls need ($0.0042)."""
    dollars = microusd / 1_000_000
    return f"${dollars:,.2f}" if dollars >= 1 else f"${dollars:.4f}"


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
    hold = call.hold
    settled = call.credits_charged is not None
    charged_under_hold = released = None
    overshoot = uncollected = 0
    if hold is not None and settled:
        charged_under_hold, released = hold.charged_credits, hold.released_credits
        overshoot, uncollected = hold.overshoot_credits, hold.uncollected_credits
    full_hold = settled and bool(call.credits_charged) and (
        call.end_reason == Cause.UNMETERED
        or (charged_under_hold is not None and charged_under_hold > credits_used)
    )
    return Receipt(
        lines=lines, price_known=price is not None, markup_percent=call.markup_percent,
        credits_per_usd=settings.REALTIME_CREDITS_PER_USD, cost_microusd=call.cost_microusd,
        cost_usd=format_usd_exact(call.cost_microusd), rounding_cost_microusd=rounding_cost,
        rounding_cost_usd=format_usd_exact(rounding_cost), credits_used=credits_used,
        rounding_credits=credits_used - sum(line.credits for line in lines), credits_held=call.credits_held,
        settled=settled, credits_charged=call.credits_charged, charged_under_hold=charged_under_hold,
        released=released, overshoot=overshoot, uncollected=uncollected, full_hold_charged=full_hold,
        usage_records=call.usage_records.count(),
    )


def format_duration(seconds: int | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@require_GET
@login_required
@verified_email_required
def talk(request):
    assistants = list(Assistant.objects.filter(is_active=True, allow_proxy=True).order_by("name", "pk"))
    selected = request.GET.get("assistant", "")
    rates = credit_rates(assistants)
    for assistant in assistants:
        assistant.rates = rates[assistant.pk]
    return render(
        request,
        "sessions/talk.html",
        {
            "assistants": assistants,
            "selected": selected,
            "available_credits": available_credits(request.user),
            "end_reasons": END_REASON_WORDS,
        },
    )


@require_GET
@login_required
@verified_email_required
def call_history(request):
    calls = (
        RealtimeCall.objects.filter(user=request.user)
        .select_related("assistant")
        .order_by("-created_at", "-pk")
    )
    page = Paginator(calls, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [(call, figures_for(call)) for call in page.object_list]
    return render(
        request,
        "sessions/history.html",
        {
            "page": page,
            "rows": [{"call": c, "f": f, "duration": format_duration(f.duration_seconds)} for c, f in rows],
        },
    )


@require_GET
@login_required
@verified_email_required
def call_detail(request, public_id: str):
    # Another user's call is a 404, like a call that does not exist: its id tells nothing.
    call = get_object_or_404(
        RealtimeCall.objects.select_related("assistant"), public_id=public_id, user=request.user
    )
    figures = figures_for(call)
    tokens = call.tokens
    token_rows = [{"label": TOKEN_CLASS_LABELS[name], "count": getattr(tokens, name)} for name in TokenCounts.CLASSES]
    events = list(call.events.all().order_by("at", "pk"))
    return render(
        request,
        "sessions/call_detail.html",
        {
            "call": call,
            "f": figures,
            "duration": format_duration(figures.duration_seconds),
            "token_rows": token_rows,
            "events": events,
            "receipt": receipt_for(call),
        },
    )
