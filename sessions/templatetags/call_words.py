"""Ledger lines in the customer's words, for billing's pages (billing cannot import sessions):

    {% load call_words %}
    {% ledger_lines page as lines %}
    {% for line in lines %}{{ line.entry.created_at }} {{ line.words }}{% endfor %}

A call's usage reads "Call on Dec 1, 4 min: 4 credits" (one query for all the calls of the
page); every other entry keeps its own explanation (`LedgerEntry.explain`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django import template
from django.utils import formats, timezone

from billing.models import LedgerEntry
from billing.templatetags.money import format_credits
from sessions.models import RealtimeCall
from sessions.presenters import duration_seconds, spoken_duration

register = template.Library()

CALL_REFERENCE = "realtime-call:"  # what sessions.services writes as a call's hold reference


@dataclass(frozen=True)
class LedgerLine:
    entry: LedgerEntry
    words: str
    call_id: str  # the call's public id, for a link ("" when the entry is not a call's)


def call_words(call: RealtimeCall, credits: int) -> str:
    """"Call on Dec 1, 4 min: 4 credits" (the date in the reader's time zone and format)."""
    day = formats.date_format(timezone.localtime(call.created_at), "M j")
    amount = f"{format_credits(credits)} credit{'' if credits == 1 else 's'}"
    return f"Call on {day}, {spoken_duration(duration_seconds(call))}: {amount}"


@register.simple_tag
def ledger_lines(entries: Iterable[LedgerEntry]) -> list[LedgerLine]:
    entries = list(entries)
    call_ids = {
        entry.reference.removeprefix(CALL_REFERENCE)
        for entry in entries
        if entry.kind == LedgerEntry.Kind.USAGE and entry.reference.startswith(CALL_REFERENCE)
    }
    calls = {call.public_id: call for call in RealtimeCall.objects.filter(public_id__in=call_ids)} if call_ids else {}
    lines = []
    for entry in entries:
        call = calls.get(entry.reference.removeprefix(CALL_REFERENCE)) if entry.kind == LedgerEntry.Kind.USAGE else None
        if call is not None:
            lines.append(LedgerLine(entry, call_words(call, abs(entry.credits)), call.public_id))
        elif entry.kind == LedgerEntry.Kind.USAGE:
            # Usage of something that is not a call of ours: its memo is an internal note.
            lines.append(LedgerLine(entry, f"Used {format_credits(abs(entry.credits))} credits", ""))
        else:
            lines.append(LedgerLine(entry, entry.explain(), ""))
    return lines
