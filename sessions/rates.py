"""What credits buy with an assistant, in minutes: the range the Talk page shows before a call.

Worst case: the hold rate (sessions.services.worst_case_microusd_per_minute), which sizes every
hold. Typical: what our own metering of this assistant's recent calls cost per minute; before
there are enough of them, a third of the worst case (a conversation is mostly listening, and the
worst case assumes the whole conversation is re-read uncached several times a minute).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from sessions.models import Assistant, CallState, RealtimeCall, credits_for_cost
from sessions.services import worst_case_microusd_per_minute

RECENT_DAYS = 30
RECENT_CALLS = 50  # per assistant, newest first
MIN_CALLS = 3  # fewer metered calls than this: the default typical rate
MIN_SECONDS = 30  # a call shorter than this says little about a rate
DEFAULT_TYPICAL_FRACTION = 3  # typical = worst case / 3 until there is data


@dataclass(frozen=True)
class CreditRates:
    worst_per_minute: int  # credits a minute at the hold rate (at least 1)
    typical_per_minute: int  # credits a minute from recent metering (at least 1, at most the worst)
    measured: bool  # typical comes from metering, not the default

    def minutes_covered(self, credits: int, *, max_minutes: float) -> tuple[float, float]:
        """(worst case, typical) minutes that `credits` pay for, capped by the call's maximum."""
        credits = max(credits, 0)
        return (min(credits / self.worst_per_minute, max_minutes), min(credits / self.typical_per_minute, max_minutes))

    def minutes_range(self, credits: int, *, max_minutes: float | None = None) -> MinutesRange:
        """What `credits` buy as words: worst case (the hold rate) to typical, in whole minutes
        rounded down (never promise more than the credits buy); capped by one call's maximum when
        given (what is available for the next call), not for a pack (which pays for many)."""
        credits = max(credits, 0)
        worst, typical = credits / self.worst_per_minute, credits / self.typical_per_minute
        capped = max_minutes is not None and typical >= max_minutes
        if max_minutes is not None:
            worst, typical = min(worst, max_minutes), min(typical, max_minutes)
        return MinutesRange(worst=format_minutes(worst), typical=format_minutes(typical), capped=capped,
                            measured=self.measured)


def format_minutes(minutes: float) -> str:
    """Minutes rounded down: whole ones from 10 on, tenths below ("2.5"), as static/js/talk.js does."""
    if minutes >= 10:
        return f"{math.floor(minutes):,}"
    return f"{math.floor(minutes * 10) / 10:g}"


@dataclass(frozen=True)
class MinutesRange:
    worst: str  # minutes at the hold rate
    typical: str  # minutes at the typical rate
    capped: bool  # one call's maximum length caps it
    measured: bool  # the typical rate comes from our metering

    def __str__(self) -> str:
        return f"{self.worst} min" if self.worst == self.typical else f"{self.worst}–{self.typical} min"


def credit_rates(assistants: list[Assistant]) -> dict[int, CreditRates]:
    """Rates for each assistant (one query for all their recent calls)."""
    since = timezone.now() - timedelta(days=RECENT_DAYS)
    rows = (
        RealtimeCall.objects.filter(
            assistant__in=assistants, state__in=(CallState.ENDED, CallState.KILLED), started_at__isnull=False,
            ended_at__gte=since, metered_at__isnull=False,
        )
        .order_by("-ended_at")
        .values_list("assistant_id", "credits_used", "started_at", "ending_at", "ended_at")[: RECENT_CALLS * max(len(assistants), 1)]
    )
    totals: dict[int, list[float]] = {}
    for assistant_id, credits, started, ending, ended in rows:
        end = ending or ended
        if end is None or started is None:  # the filter excludes it; the columns are nullable
            continue
        seconds = (end - started).total_seconds()
        entry = totals.setdefault(assistant_id, [0, 0.0, 0])
        if seconds >= MIN_SECONDS and entry[2] < RECENT_CALLS:
            entry[0] += credits
            entry[1] += seconds
            entry[2] += 1
    rates = {}
    for assistant in assistants:
        worst_microusd = worst_case_microusd_per_minute(assistant)
        worst = max(credits_for_cost(worst_microusd, markup_percent=assistant.markup_percent), 1)
        used, used_seconds, calls = totals.get(assistant.pk, (0, 0.0, 0))
        if calls >= MIN_CALLS and used_seconds > 0:
            typical = min(max(round(used * 60 / used_seconds), 1), worst)
            rates[assistant.pk] = CreditRates(worst, typical, measured=True)
        else:
            rates[assistant.pk] = CreditRates(worst, max(worst // DEFAULT_TYPICAL_FRACTION, 1), measured=False)
    return rates
