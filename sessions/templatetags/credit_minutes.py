"""What credits buy in minutes, for pages outside this app (the Buy page):

    {% load credit_minutes %}
    {% assistant_rates request.GET.assistant as choice %}
    {% for pack in packs %}{{ pack.credits|minutes_with:choice }}{% endfor %}

`assistant_rates` picks the assistant named (or the first one a user can talk to) with its rates
(sessions/rates.py, one query); `minutes_with` says what a number of credits buys with it, as
"24–80 min" (worst case to typical, not capped by one call's length: a pack pays for many calls).
"""

from __future__ import annotations

from dataclasses import dataclass

from django import template

from sessions.exceptions import InvalidAssistant
from sessions.models import Assistant
from sessions.rates import CreditRates, MinutesRange, credit_rates

register = template.Library()


@dataclass(frozen=True)
class AssistantChoice:
    assistant: Assistant
    rates: CreditRates
    others: list[Assistant]


@register.simple_tag
def assistant_rates(assistant_id: str | int | None = None) -> AssistantChoice | None:
    assistants = list(Assistant.objects.filter(is_active=True, allow_proxy=True).order_by("name", "pk"))
    if not assistants:
        return None
    chosen = next((a for a in assistants if str(a.pk) == str(assistant_id or "")), assistants[0])
    try:
        rates = credit_rates([chosen])[chosen.pk]
    except InvalidAssistant:  # no price on file: nothing to say in minutes
        return None
    return AssistantChoice(assistant=chosen, rates=rates, others=[a for a in assistants if a.pk != chosen.pk])


@register.filter
def minutes_with(credits: int, choice: AssistantChoice | None) -> MinutesRange | str:
    if choice is None:
        return ""
    return choice.rates.minutes_range(int(credits))
