"""Pages of the sessions app: Talk (start a voice call), History (past calls) and a call's detail.

Read-only: a call starts and ends through the API (`sessions/api`), which the Talk page's script
calls; these views only show what the API and the supervisor recorded.
"""

from dataclasses import dataclass

from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from accounts.decorators import verified_email_required
from billing.services import available_credits, cap_status, get_wallet
from sessions import presenters
from sessions.exceptions import InvalidAssistant
from sessions.models import Assistant, CallState, RealtimeCall, TokenCounts
from sessions.rates import CreditRates, credit_rates, format_minutes
from sessions.receipts import receipt_for

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

# The same end reasons as a headline: what happened to the call, in the customer's words.
END_REASON_TITLES = {
    "user_hangup": "You hung up",
    "staff_hangup": "Ended by our staff",
    "credits_exhausted": "Your credits ran out",
    "time_limit": "Time limit reached",
    "user_suspended": "Account suspended",
    "call_closed": "The connection ended",
    "insufficient_credits": "Not enough credits to start",
    "wallet_blocked": "Credits blocked",
    "invalid_offer": "Could not connect",
    "upstream_error": "The voice service failed",
    "upstream_timeout": "The voice service did not answer",
    "upstream_rate_limited": "The voice service was busy",
    "unmetered": "Charged its full reservation",
    "not_watched": "Ended for safety",
    "policy_violation": "Ended: settings changed from the browser",
}

# A call's state in the customer's words (the state itself is for staff pages).
STATE_WORDS: dict[str, str] = {
    CallState.PENDING: "Starting",
    CallState.ACTIVE: "Live",
    CallState.ENDING: "Ending",
    CallState.ENDED: "Ended",
    CallState.KILLED: "Ended",
    CallState.EXPIRED: "Ended",
    CallState.FAILED: "Did not start",
}

STATE_BADGES: dict[str, str] = {
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
    end_reason_title: str
    state_words: str

    @property
    def minutes(self) -> float | None:
        return None if self.duration_seconds is None else self.duration_seconds / 60

    @property
    def credits_per_minute(self) -> str:
        """What the call cost a minute, for the customer ("3.2"); "" before it is known."""
        if self.credits is None or not self.duration_seconds or self.credits_label != "charged":
            return ""
        return f"{self.credits * 60 / self.duration_seconds:,.1f}"


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
        end_reason_title=END_REASON_TITLES.get(call.end_reason, "") if call.end_reason else "",
        state_words=STATE_WORDS.get(call.state, ""),
    )


def format_usd(microusd: int) -> str:
    """Micro-dollars as dollars, with the precision small calls need ($0.0042)."""
    dollars = microusd / 1_000_000
    return f"${dollars:,.2f}" if dollars >= 1 else f"${dollars:.4f}"


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
    wallet = get_wallet(request.user)
    return render(
        request,
        "sessions/talk.html",
        {
            "assistants": assistants,
            "selected": selected,
            "available_credits": wallet.available,
            # The monthly spending cap, when the user set one: what is used and left (billing.services.caps).
            "month_cap": cap_status(wallet, time_zone=request.user.time_zone),
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
    """The customer's page of one call: what happened, how long, tokens and credits, and what the
    credits left buy with this assistant. No states, events, cost or markup (`staff_call_detail`)."""
    # Another user's call is a 404, like a call that does not exist: its id tells nothing.
    call = get_object_or_404(
        RealtimeCall.objects.select_related("assistant"), public_id=public_id, user=request.user
    )
    figures = figures_for(call)
    tokens = call.tokens
    token_rows = [
        {"label": presenters.TOKEN_CLASS_LABELS[name], "count": getattr(tokens, name)} for name in TokenCounts.CLASSES
    ]
    available = available_credits(request.user)
    assistant = call.assistant
    try:
        rates: CreditRates | None = credit_rates([assistant])[assistant.pk]
    except InvalidAssistant:  # no price on file any more: nothing to say in minutes
        rates = None
    return render(
        request,
        "sessions/call_detail.html",
        {
            "call": call,
            "f": figures,
            "duration": format_duration(figures.duration_seconds),
            "length": presenters.spoken_duration(figures.duration_seconds),
            "token_rows": token_rows,
            "receipt": receipt_for(call),
            "available_credits": available,
            "rates": rates,
            "next_call": rates.minutes_range(available or 0, max_minutes=assistant.max_call_seconds / 60)
            if rates else None,
            "max_minutes": format_minutes(assistant.max_call_seconds / 60),
        },
    )


@require_GET
@staff_member_required
def staff_call_detail(request, public_id: str):
    """Staff: any user's call with its internals (states, events, cost, prices, markup)."""
    call = get_object_or_404(RealtimeCall.objects.select_related("assistant", "user"), public_id=public_id)
    figures = figures_for(call)
    tokens = call.tokens
    token_rows = [
        {"label": presenters.TOKEN_CLASS_LABELS[name], "count": getattr(tokens, name)} for name in TokenCounts.CLASSES
    ]
    events = list(call.events.all().order_by("at", "pk"))
    return render(
        request,
        "sessions/staff_call_detail.html",
        {
            "call": call,
            "f": figures,
            "duration": format_duration(figures.duration_seconds),
            "token_rows": token_rows,
            "events": events,
            "receipt": receipt_for(call),
        },
    )
