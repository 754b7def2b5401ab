"""Every database read and write the supervisor makes. Sync functions, run in its thread pool.

Claims are conditional UPDATEs (healthchecks' `sendalerts`): a call is free when its lease is
empty or expired, and a claim succeeds only if the UPDATE changed the row, so two supervisors
never both watch one call. State changes and settlement go through `sessions.services` (the one
write path of a call's state); metering writes `UsageRecord` rows and the call's totals here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import BigIntegerField, ExpressionWrapper, F, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing import services as billing
from sessions import presenters, services
from sessions.models import (
    FINAL_STATES,
    CallEvent,
    CallMode,
    CallState,
    ModelPrice,
    RealtimeCall,
    TokenCounts,
    UsageRecord,
    credits_for_cost,
)
from sessions.reconciliation.models import Flag, FlagKind, Severity
from sessions.reconciliation.reconcile import notify_staff

logger = logging.getLogger(__name__)

WATCHED_STATES = (CallState.ACTIVE, CallState.ENDING)

# CallEvent kinds the supervisor adds to a call's timeline (beside the state changes).
EVENT_SIDEBAND_ATTACHED = CallEvent.Kind.SIDEBAND_ATTACHED
EVENT_SIDEBAND_LOST = CallEvent.Kind.SIDEBAND_LOST
EVENT_WARNING = CallEvent.Kind.WARNING
EVENT_POLICY_DEVIATION = CallEvent.Kind.POLICY_DEVIATION


@dataclass
class CallSnapshot:
    """What a watcher needs to know about its call, read once at claim time."""

    pk: int
    public_id: str
    user_id: int
    mode: str
    state: str
    openai_call_id: str
    model: str
    markup_percent: int
    credits_held: int
    credits_used: int
    cost_microusd: int
    tokens: TokenCounts
    expected_end_at: datetime
    started_at: datetime | None
    created_at: datetime
    was_attached: bool  # a supervisor attached before: a 404 now means the call is gone
    wrap_up_message: str = ""  # the assistant's, else SUPERVISOR_WRAP_UP_MESSAGE (see CallWatcher)
    # The assistant's session policy (Assistant.policy(), as it is now: enforced live) and greeting.
    policy: dict = field(default_factory=dict, repr=False)
    greeting: bool = False
    greeting_instructions: str = ""
    partial_hold: bool = False  # end by credits: metered + one worst-case response reach the hold
    price: ModelPrice | None = field(default=None, repr=False)
    payload: dict | None = field(default=None, repr=False)  # as GET /api/calls/<id> showed it at claim


def _free() -> Q:
    return Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=timezone.now())


def _snapshot(call: RealtimeCall, prices: dict[str, ModelPrice]) -> CallSnapshot:
    return CallSnapshot(
        pk=call.pk, public_id=call.public_id, user_id=call.user_id, mode=call.mode, state=call.state,
        openai_call_id=call.openai_call_id or "", model=call.model, markup_percent=call.markup_percent,
        credits_held=call.credits_held, credits_used=call.credits_used, cost_microusd=call.cost_microusd,
        tokens=call.tokens, expected_end_at=call.expected_end_at, started_at=call.started_at,
        created_at=call.created_at, was_attached=call.metered_at is not None,
        wrap_up_message=call.assistant.wrap_up_message, price=prices.get(call.model),
        payload=_payload(call), policy=call.assistant.policy(), greeting=call.assistant.greeting,
        greeting_instructions=call.assistant.greeting_instructions, partial_hold=call.partial_hold,
    )


def _payload(call: RealtimeCall) -> dict | None:
    """The call as GET /api/calls/<id> shows it, for the live pushes (its events prefetched)."""
    try:
        return presenters.call_payload(call, events=True)
    except Exception:  # a live push is a nicety; never let it stop a claim
        logger.warning("supervisor: could not serialise call %s", call.public_id, exc_info=True)
        return None


def claim(*, owner: str, lease_seconds: float, limit: int) -> list[CallSnapshot]:
    """Take up to `limit` open calls with an OpenAI call id that nobody holds (or whose holder died).

    One conditional UPDATE takes the batch: each row's lease is checked again as the row is
    updated (PostgreSQL re-evaluates the condition on a row another transaction changed meanwhile),
    so two supervisors never both take a call. The calls taken are read back by this claim's own
    expiry, which no other claim or renewal writes.
    """
    close_old_connections()
    until = timezone.now() + timedelta(seconds=lease_seconds)
    free = RealtimeCall.objects.filter(state__in=WATCHED_STATES, openai_call_id__isnull=False).filter(_free())
    took = free.filter(pk__in=free.order_by("pk").values("pk")[:limit]).update(
        lease_owner=owner, lease_expires_at=until
    )
    if not took:
        return []
    calls = list(
        RealtimeCall.objects.filter(lease_owner=owner, lease_expires_at=until)
        .order_by("pk")
        .select_related("assistant")
        .prefetch_related("events")
    )
    prices = {p.model: p for p in ModelPrice.objects.filter(model__in={c.model for c in calls})}
    return [_snapshot(call, prices) for call in calls]


@dataclass(frozen=True)
class CallStatus:
    pk: int
    state: str
    user_suspended: bool
    expected_end_at: datetime


def check(*, owner: str, renew_seconds: float | None) -> dict[int, CallStatus]:
    """Renew this supervisor's leases (when `renew_seconds` is given) and read its calls' status.

    A call missing from the answer is no longer ours (lease taken over, or released).
    """
    close_old_connections()
    mine = RealtimeCall.objects.filter(lease_owner=owner)
    if renew_seconds is not None:
        mine.filter(lease_expires_at__gte=timezone.now()).update(
            lease_expires_at=timezone.now() + timedelta(seconds=renew_seconds)
        )
    rows = mine.filter(lease_expires_at__gte=timezone.now()).values_list(
        "pk", "state", "user__is_suspended", "expected_end_at"
    )
    return {pk: CallStatus(pk, state, suspended, end) for pk, state, suspended, end in rows}


def release(*, owner: str, pks: list[int] | None = None) -> int:
    """Give leases back (shutdown, or a call we stopped watching): expired now, so any supervisor
    claims them at its next poll, and the sweep knows since when nobody watches them."""
    qs = RealtimeCall.objects.filter(lease_owner=owner)
    if pks is not None:
        qs = qs.filter(pk__in=pks)
    return qs.update(lease_owner="", lease_expires_at=timezone.now())


def free_dead_leases() -> int:
    """Clear the owner of leases nobody renewed (tidiness: an expired lease is claimable). The
    expiry stays: it says since when the call is unwatched (sessions.services.sweep_calls)."""
    return RealtimeCall.objects.filter(lease_expires_at__lt=timezone.now()).exclude(lease_owner="").update(
        lease_owner=""
    )


def mark_attached(*, pk: int, first: bool, detail: str = "") -> None:
    now = timezone.now()
    with transaction.atomic(durable=True):
        newly = RealtimeCall.objects.filter(pk=pk, metered_at__isnull=True).update(metered_at=now)
        CallEvent.objects.create(
            call_id=pk, at=now, kind=EVENT_SIDEBAND_ATTACHED,
            detail=detail or ("Supervisor attached to the sideband." if (newly or first) else "Sideband re-attached."),
        )


def mark_attached_batch(*, items: list[tuple[int, bool, str]]) -> None:
    """`mark_attached` for many calls, `(pk, first, detail)` each, in one transaction: two
    statements whatever the batch's size (a burst of attaches writes a batch, not a transaction
    per call)."""
    now = timezone.now()
    pks = [pk for pk, _, _ in items]
    with transaction.atomic(durable=True):
        newly: set[int] = set()
        if any(not detail for _, _, detail in items):
            newly = set(RealtimeCall.objects.filter(pk__in=pks, metered_at__isnull=True).values_list("pk", flat=True))
        RealtimeCall.objects.filter(pk__in=pks, metered_at__isnull=True).update(metered_at=now)
        CallEvent.objects.bulk_create([
            CallEvent(call_id=pk, at=now, kind=EVENT_SIDEBAND_ATTACHED, detail=detail or (
                "Supervisor attached to the sideband." if (pk in newly or first) else "Sideband re-attached."))
            for pk, first, detail in items
        ])


def flag_policy_violation(*, pk: int, summary: str, evidence: dict) -> None:
    """A high-severity flag for staff: usage on a call before the supervisor watched it (a
    modified client). One per call (its natural key); a repeat updates it."""
    call = RealtimeCall.objects.get(pk=pk)
    now = timezone.now()
    flag, _ = Flag.objects.update_or_create(
        natural_key=f"policy_violation:{call.public_id}",
        defaults={
            "kind": FlagKind.POLICY_VIOLATION, "severity": Severity.HIGH, "window_start": call.created_at,
            "window_end": now, "model": call.model, "attribution": "call", "call": call, "user_id": call.user_id,
            "summary": summary[:500], "evidence": evidence, "last_seen_at": now,
        },
        create_defaults={
            "kind": FlagKind.POLICY_VIOLATION, "severity": Severity.HIGH, "window_start": call.created_at,
            "window_end": now, "model": call.model, "attribution": "call", "call": call, "user_id": call.user_id,
            "summary": summary[:500], "evidence": evidence, "first_seen_at": now, "last_seen_at": now,
        },
    )
    notify_staff([flag.pk])


def record_event(*, pk: int, kind: str, detail: str = "", cause: str = "") -> None:
    CallEvent.objects.create(call_id=pk, at=timezone.now(), kind=kind, detail=detail[:500], cause=cause)


@dataclass(frozen=True)
class UsageRow:
    pk: int  # the call
    response_id: str
    kind: str
    tokens: TokenCounts
    cost_microusd: int
    at: datetime


_CREDITS_DIVISOR = 100 * 1_000_000


def meter_batch(*, rows: list[UsageRow]) -> dict[int, tuple[int, int]]:
    """Store usage rows (once per call and response id: a replay inserts nothing) and recompute the
    totals of the calls they belong to from their rows. Returns {call pk: (credits_used, cost)}.

    Totals are sums of the rows, not increments, so a replayed or re-sent batch cannot count twice;
    credits come from the running cost with one rounding up (`credits_for_cost` in SQL).
    """
    if not rows:
        return {}
    pks = sorted({row.pk for row in rows})
    per_call = UsageRecord.objects.filter(call=OuterRef("pk")).order_by().values("call")
    sums = {
        field: Coalesce(Subquery(per_call.annotate(total=Sum(field)).values("total")), Value(0),
                        output_field=BigIntegerField())
        for field in [f"{name}_tokens" for name in TokenCounts.CLASSES] + ["cost_microusd"]
    }
    credits = ExpressionWrapper(
        (F("cost_microusd") * (100 + F("markup_percent")) * settings.REALTIME_CREDITS_PER_USD
         + (_CREDITS_DIVISOR - 1)) / _CREDITS_DIVISOR,
        output_field=BigIntegerField(),
    )
    with transaction.atomic(durable=True):
        UsageRecord.objects.bulk_create(
            [
                UsageRecord(call_id=row.pk, response_id=row.response_id[:100], kind=row.kind, at=row.at,
                            cost_microusd=row.cost_microusd,
                            **{f"{name}_tokens": value for name, value in row.tokens.as_dict().items()})
                for row in rows
            ],
            ignore_conflicts=True,
        )
        RealtimeCall.objects.filter(pk__in=pks).update(**sums)
        RealtimeCall.objects.filter(pk__in=pks).update(credits_used=credits)
        return {pk: (used, cost) for pk, used, cost in
                RealtimeCall.objects.filter(pk__in=pks).values_list("pk", "credits_used", "cost_microusd")}


def begin_ending(*, pk: int, cause: str, detail: str = "", hangup_error: str | None = None) -> None:
    """After our hangup: record it and move the call to `ending` with its cause (first actor wins)."""
    call = RealtimeCall.objects.get(pk=pk)
    if hangup_error is None:
        record_event(pk=pk, kind=CallEvent.Kind.HANGUP_SENT, cause=cause, detail=detail or "Hung up by the supervisor.")
    else:
        record_event(pk=pk, kind=CallEvent.Kind.HANGUP_FAILED, cause=cause, detail=hangup_error)
    if call.state == CallState.ACTIVE:
        services.transition(call, to=CallState.ENDING, cause=cause, detail=detail, end_reason=cause)


def finish(*, pk: int, cause: str, metered: bool = True, detail: str = "") -> RealtimeCall:
    """Settle the call exactly once: what was metered (or the full hold if it was not) and make it
    final. Safe to race with another settler: billing's idempotency key and the conditional state
    change make the second one a no-op."""
    call = RealtimeCall.objects.get(pk=pk)
    if call.state not in FINAL_STATES:
        used = call.credits_used if metered else None
        if call.mode == CallMode.KEY and not metered:
            used = None
        call = services.settle_call(call=call, cause=cause, used_credits=used, detail=detail)
    RealtimeCall.objects.filter(pk=pk).update(lease_owner="", lease_expires_at=None)
    return call


# --- a partial hold that runs out while an auto top-up is on its way (docs/billing.md) -----------


def extend_call_hold(*, pk: int) -> int:
    """Grow the call's hold by what its remaining time could cost at the worst-case rate, as far as
    the wallet's available credits and spending cap allow (billing.extend_hold). Returns the credits
    added (0: none available, or the call is no longer live) and notes it on the call's timeline."""
    call = RealtimeCall.objects.select_related("assistant").get(pk=pk)
    if not call.hold_id or call.state != CallState.ACTIVE:
        return 0
    seconds_left = max(1.0, (call.expected_end_at - timezone.now()).total_seconds())
    per_minute = services.worst_case_microusd_per_minute(call.assistant)
    want = max(credits_for_cost(int(per_minute * seconds_left / 60) + 1, markup_percent=call.markup_percent), 1)
    added = billing.extend_hold(hold_id=call.hold_id, credits=want)
    if added:
        RealtimeCall.objects.filter(pk=pk).update(credits_held=F("credits_held") + added)
        record_event(pk=pk, kind=EVENT_WARNING,
                     detail=f"Credits arrived (auto top-up): the call's hold grew by {added:,} credits.")
    return added


def top_up_coming(*, pk: int) -> bool:
    """Whether an auto top-up of the call's user is on its way (made and not yet credited or failed,
    or about to be made: switched on and below its threshold)."""
    call = RealtimeCall.objects.only("user_id").get(pk=pk)
    return billing.top_up_coming(user_id=call.user_id)
