"""Rows for page tests, written directly: the pages only read what the services recorded."""

from datetime import timedelta

from django.utils import timezone

from sessions.models import Assistant, CallEvent, CallState, RealtimeCall


def make_assistant(**fields) -> Assistant:
    defaults = {"name": "Helper", "model": "gpt-realtime", "voice": "marin", "max_call_seconds": 600}
    return Assistant.objects.create(**{**defaults, **fields})


def make_call(*, user, assistant, state=CallState.ENDED, seconds=95, **fields) -> RealtimeCall:
    created = fields.pop("created_at", timezone.now() - timedelta(minutes=10))
    started = created + timedelta(seconds=1)
    final = state in (CallState.ENDED, CallState.KILLED, CallState.EXPIRED, CallState.FAILED)
    defaults = {
        "model": assistant.model,
        "markup_percent": 50,
        "allowed_seconds": assistant.max_call_seconds,
        "created_at": created,
        "started_at": started if state != CallState.FAILED else None,
        "expected_end_at": started + timedelta(seconds=assistant.max_call_seconds),
        "ending_at": started + timedelta(seconds=seconds) if final and state != CallState.FAILED else None,
        "ended_at": started + timedelta(seconds=seconds + 1) if final else None,
        "credits_held": 120,
        "credits_charged": 37 if final else None,
        "end_reason": "user_hangup" if state == CallState.ENDED else "",
    }
    call = RealtimeCall.objects.create(user=user, assistant=assistant, state=state, **{**defaults, **fields})
    CallEvent.objects.create(
        call=call, at=created, from_state="", to_state=CallState.PENDING, cause="started"
    )
    if call.started_at:
        CallEvent.objects.create(
            call=call,
            at=call.started_at,
            from_state=CallState.PENDING,
            to_state=CallState.ACTIVE,
            cause="upstream_answered",
        )
    return call
