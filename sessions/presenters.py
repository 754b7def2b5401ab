"""What a call looks like outside the database, in one place: plain functions returning plain values
and dicts, for the API (`sessions.api.serializers` renders a call with `call_payload`), the live
pushes (`sessions.services`, the supervisor) and the pages.

One rule, one function: how long a call lasted (`duration_seconds`), how long it has left
(`seconds_to_end`, and the API's `seconds_left`), whether it is watched, and the payload itself.
Nothing here writes, and nothing here imports the API layer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from sessions.models import LIVE_STATES, CallEvent, RealtimeCall, TokenCounts

# How the pages (a call's tokens, its receipt) name each billed token class.
TOKEN_CLASS_LABELS = dict(
    zip(
        TokenCounts.CLASSES,
        ("Text in", "Text in (cached)", "Text out", "Audio in", "Audio in (cached)", "Audio out"),
        strict=True,
    )
)


def duration_seconds(call: RealtimeCall, *, now: datetime | None = None) -> int | None:
    """Seconds the user was connected: from the upstream answer to the hangup or the end; None if
    the call never started.

    A hangup puts the call in `ending` before it settles, and the talking stopped then, so
    `ending_at` wins over `ended_at`. An open call counts up to now.
    """
    if call.started_at is None:
        return None
    end = call.ending_at or call.ended_at
    if end is None:
        end = (now or timezone.now()) if call.is_open else call.started_at
    return max(int((end - call.started_at).total_seconds()), 0)


def spoken_duration(seconds: int | None) -> str:
    """A call's length as a customer says it: "45 s", "4 min", "1 h 5 min"; None: it never connected."""
    if seconds is None:
        return "did not connect"
    if seconds < 60:
        return f"{seconds} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def seconds_to_end(expected_end_at: datetime, *, now: datetime | None = None) -> int:
    """Whole seconds until `expected_end_at`, never below 0: the countdown of a call in flight."""
    return max(int((expected_end_at - (now or timezone.now())).total_seconds()), 0)


def seconds_left(call: RealtimeCall, *, now: datetime | None = None) -> int | None:
    """The countdown while the call is pending or active; None once it is ending or over, or past
    its expected end."""
    now = now or timezone.now()
    if call.state not in LIVE_STATES or call.expected_end_at <= now:
        return None
    return seconds_to_end(call.expected_end_at, now=now)


def watched(call: RealtimeCall) -> bool:
    """A supervisor attached to the call's sideband (and so turned the assistant's turn detection on)."""
    return call.metered_at is not None


def iso_datetime(value: datetime | None) -> str | None:
    """A datetime as the API writes it (DRF's ISO 8601): in the current time zone, UTC as `Z`."""
    if value is None:
        return None
    text = timezone.localtime(value).isoformat()
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


def event_kind(event: CallEvent) -> str:
    """The state a transition entered, or the kind of any other event (hangup_sent, warning, ...)."""
    return event.to_state if event.kind == CallEvent.Kind.STATE else event.kind


def event_payload(event: CallEvent) -> dict:
    return {"at": iso_datetime(event.at), "kind": event_kind(event), "cause": event.cause, "detail": event.detail}


def call_payload(call: RealtimeCall, *, events: bool = False, now: datetime | None = None,
                 timeline: list[CallEvent] | None = None) -> dict:
    """A call as GET /api/calls/<id> shows it, `events` (its timeline: one query, the prefetched
    rows, or `timeline` when the caller read them itself) only when asked: the live push of a
    start is built from the row in hand, without them.

    Reads `call.assistant` (select it with the call).
    """
    now = now or timezone.now()
    payload: dict[str, Any] = {
        "id": call.public_id,
        "assistant": {"id": call.assistant_id, "name": call.assistant.name},
        "mode": call.mode,
        "state": call.state,
        "created_at": iso_datetime(call.created_at),
        "started_at": iso_datetime(call.started_at),
        "ended_at": iso_datetime(call.ended_at),
        "expected_end_at": iso_datetime(call.expected_end_at),
        "seconds_left": seconds_left(call, now=now),
        "duration_seconds": duration_seconds(call, now=now),
        "credits_held": call.credits_held,
        "credits_used": call.credits_used,
        "credits_charged": call.credits_charged,
        "cost_microusd": call.cost_microusd,
        "tokens": call.tokens.as_dict(),
        "watched": watched(call),
        "partial_hold": call.partial_hold,
        "end_reason": call.end_reason,
    }
    if events:
        payload["events"] = [event_payload(event) for event in (call.events.all() if timeline is None else timeline)]
    return payload
