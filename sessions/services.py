"""Starting, ending and settling realtime calls. The only code that changes a RealtimeCall's state.

Every operation follows the same order (DESIGN.md, STYLE.md rule 3): short transactions write our
rows and take or settle the hold (a start writes its call and its hold in one), and only then do we
talk to OpenAI, with no lock held. Each failure path releases what it reserved. A state change is a conditional
UPDATE from the state we read plus a CallEvent, so two actors racing (user hangup, staff, sweep,
supervisor) change a call once; billing's idempotency keys make settlement exactly once.
"""

import contextlib
import logging
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache, partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Field, Q, prefetch_related_objects
from django.utils import timezone

from accounts.models import User
from accounts.services import is_email_verified
from billing import exceptions as billing_errors
from billing import services as billing
from realtime_saas.live import bundled, push_to_user
from realtime_saas.sql import (
    fetch_one,
    instance_from_row,
    instance_insert,
    is_postgresql,
    loaded,
    one_statement,
    returning_columns,
)
from sessions import caches, notifications, openai_client, presenters
from sessions import exceptions as errors
from sessions.models import (
    FINAL_STATES,
    KILL_CAUSES,
    LIVE_STATES,
    OPEN_STATES,
    WORST_CASE_TOKENS_PER_MINUTE,
    Assistant,
    CallEvent,
    CallMode,
    CallState,
    Cause,
    RealtimeCall,
    credits_for_cost,
    sources_of,
)

logger = logging.getLogger(__name__)

OPENAI_CALL_ID = re.compile(r"^rtc_[A-Za-z0-9_]{4,90}$")
START_RATE_WINDOW = timedelta(minutes=1)


# --- policy ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HoldPlan:
    credits: int  # what we hold
    seconds: int  # the call's time limit: the assistant's maximum length, whatever the hold
    full_credits: int  # what the assistant's maximum length would need at the worst-case rate

    @property
    def partial(self) -> bool:
        """The hold pays for less than the maximum length at the worst-case rate: the supervisor
        ends the call by its metered credits (one worst-case response before the hold)."""
        return self.credits < self.full_credits


def worst_case_microusd_per_minute(assistant: Assistant) -> int:
    """The hold rate: the assistant's own figure, else the price table's worst case."""
    if assistant.hold_microusd_per_minute is not None:
        return assistant.hold_microusd_per_minute
    price = caches.model_price(assistant.model)
    if price is None:
        raise errors.InvalidAssistant(f"The assistant {assistant.name!r} has no price; staff must add one.")
    return price.cost_microusd(WORST_CASE_TOKENS_PER_MINUTE)


def plan_hold(*, assistant: Assistant, available: int) -> HoldPlan:
    """Size a call's hold: the assistant's maximum length at its worst-case rate, capped by what
    the user can afford, refused below the assistant's minimum.

    A capped (partial) hold does not shorten the call: its time limit stays the assistant's
    maximum length, and the supervisor ends it when the metered credits plus one worst-case
    response reach the hold (cause `credits_exhausted`), not at a worst-case clock.
    """
    per_minute = worst_case_microusd_per_minute(assistant)
    full_cost = -(-per_minute * assistant.max_call_seconds // 60)
    full_credits = max(credits_for_cost(full_cost, markup_percent=assistant.markup_percent), 1)
    required = max(assistant.min_credits, 1)
    if available < required:
        raise errors.InsufficientCredits(
            f"Starting a call with {assistant.name} needs at least {required:,} credits; "
            f"you have {max(available, 0):,} available.",
        )
    return HoldPlan(credits=min(full_credits, available), seconds=assistant.max_call_seconds,
                    full_credits=full_credits)


def validate_offer(sdp: str) -> None:
    """A cheap local check, so an obviously bad offer costs neither a hold nor an upstream call."""
    if not sdp.strip():
        raise errors.InvalidOffer("The request body must be an SDP offer; it is empty.")
    lines = [line.strip() for line in sdp.strip().splitlines()]
    if lines[0] != "v=0":
        raise errors.InvalidOffer("The SDP offer must start with 'v=0'.")
    if not any(line.startswith("m=audio") for line in lines):
        raise errors.InvalidOffer("The SDP offer has no audio media section (m=audio).")
    for attribute in ("a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:"):
        if not any(line.startswith(attribute) for line in lines):
            raise errors.InvalidOffer(f"The SDP offer has no {attribute.rstrip(':')} line: it is not a WebRTC offer.")


def _active_assistant(assistant_id: int | str | None, *, mode: str) -> caches.CachedAssistant:
    """The active assistant the caller named (from the per-process cache: sessions.caches)."""
    cached = None
    if assistant_id is not None:  # no `?assistant=`
        with contextlib.suppress(TypeError, ValueError):
            cached = caches.active_assistant(int(assistant_id))
    if cached is None:
        raise errors.InvalidAssistant("Choose an active assistant (its id from /api/assistants/).")
    if mode not in cached.assistant.modes:
        raise errors.InvalidAssistant(f"The assistant {cached.assistant.name!r} does not allow {mode} mode.")
    return cached


def _check_user(user: User) -> None:
    if getattr(user, "is_suspended", False):
        raise errors.AccountSuspended("This account is suspended: it cannot start calls.")
    if not is_email_verified(user):
        raise errors.EmailUnverified("Confirm your email address before starting a call.")


def _check_outstanding_secret(*, user: User, now: datetime) -> None:
    """Key mode: one client secret a user has not reported a call for, at a time. A secret can
    start any number of calls until it expires; only a reported one is watched."""
    # A mint still waiting for OpenAI (pending, no expiry yet) counts too: two concurrent mints
    # are serialised by the wallet lock, and the second must see the first.
    outstanding = RealtimeCall.objects.filter(
        Q(state=CallState.PENDING) | Q(state=CallState.ACTIVE, secret_expires_at__gt=now),
        user=user, mode=CallMode.KEY, openai_call_id__isnull=True,
    ).values_list("secret_expires_at", flat=True)[:1]
    for expires_at in outstanding:
        wait = (expires_at - now).total_seconds() if expires_at is not None else 5
        raise errors.CallConflict(
            "You already hold a client secret whose call is not reported yet: report its call id, "
            "or wait until it expires.",
            code="secret_outstanding", retry_after=max(1, math.ceil(wait)),
        )


# Live calls and recent starts of one user, in one statement (sessions' index on user and state).
_LIVE_IN = ", ".join(f"'{state}'" for state in LIVE_STATES)
_LIMITS_SQL = f"""
SELECT COUNT(*) FILTER (WHERE state IN ({_LIVE_IN})), COUNT(*) FILTER (WHERE created_at > %(since)s)
FROM {RealtimeCall._meta.db_table} WHERE user_id = %(user)s AND (state IN ({_LIVE_IN}) OR created_at > %(since)s)
"""  # noqa: S608 (the model's table and state constants)


def _check_limits(*, user: User, assistant: Assistant, now: datetime) -> None:
    """The concurrency and start-rate limits, counted in one query (the caller holds the lock
    that serialises this user's starts, so the counts are exact)."""
    window_start = now - START_RATE_WINDOW
    recent_filter = Q(created_at__gt=window_start)
    row = fetch_one(_LIMITS_SQL, {"user": user.pk, "since": connection.ops.adapt_datetimefield_value(window_start)})
    assert row is not None  # an aggregate always answers
    live, recent = row
    if live >= assistant.max_concurrent_calls:
        raise errors.ConcurrencyLimit(
            f"You already have {live} call(s) in progress; {assistant.name} allows "
            f"{assistant.max_concurrent_calls} at a time. End one first.",
            retry_after=5,
        )
    if recent >= assistant.max_starts_per_minute:
        recent = list(
            RealtimeCall.objects.filter(recent_filter, user=user)
            .order_by("-created_at")
            .values_list("created_at", flat=True)[: assistant.max_starts_per_minute]
        )
        wait = recent[-1] + START_RATE_WINDOW - now
        raise errors.StartRateLimited(
            f"{assistant.name} allows {assistant.max_starts_per_minute} call starts a minute; try again shortly.",
            retry_after=max(1, math.ceil(wait.total_seconds())),
        )


# --- reading ---------------------------------------------------------------------------------


def call_with_timeline(*, user: User, public_id: str) -> tuple[RealtimeCall, list[CallEvent]] | None:
    """One of the user's calls with its assistant and its timeline (in order), or None: what the
    Talk page polls every 0.5-3 s. One statement on PostgreSQL (a row per event, the call's
    columns repeated), the ORM's two elsewhere."""
    if not is_postgresql():
        call = (RealtimeCall.objects.filter(user=user, public_id=public_id).select_related("assistant")
                .prefetch_related("events").first())
        return None if call is None else (call, list(call.events.all()))
    with connection.cursor() as cursor:
        cursor.execute(_timeline_sql(), {"user": user.pk, "public_id": public_id})
        rows = cursor.fetchall()
    if not rows:
        return None
    width = len(RealtimeCall._meta.concrete_fields)
    call = instance_from_row(RealtimeCall, rows[0][:width])
    # The assistant's name only: its other fields are deferred (read on use, never a wrong default).
    call.assistant = Assistant.from_db(connection.alias, ["id", "name"], (call.assistant_id, rows[0][width]))
    events = [instance_from_row(CallEvent, row[width + 1:]) for row in rows if row[width + 1] is not None]
    return call, events


@lru_cache(maxsize=1)
def _timeline_sql() -> str:
    calls, events = RealtimeCall._meta.db_table, CallEvent._meta.db_table
    return (f"SELECT {returning_columns(RealtimeCall, 'c')}, a.name, {returning_columns(CallEvent, 'e')}"  # noqa: S608
            f" FROM {calls} c JOIN {Assistant._meta.db_table} a ON a.id = c.assistant_id"
            f" LEFT JOIN {events} e ON e.call_id = c.id"
            " WHERE c.public_id = %(public_id)s AND c.user_id = %(user)s ORDER BY e.at, e.id")


# --- state changes ---------------------------------------------------------------------------


def _stamp_field(state: str) -> str | None:
    if state == CallState.ACTIVE:
        return "started_at"
    if state == CallState.ENDING:
        return "ending_at"
    if state in FINAL_STATES:
        return "ended_at"
    return None


def _push_call(call_pk: int) -> None:
    call = RealtimeCall.objects.select_related("assistant").filter(pk=call_pk).first()
    if call is not None:
        push_to_user(call.user_id, "call", presenters.call_payload(call, events=True))


def _record(call: RealtimeCall, *, kind: str, cause: str = "", detail: str = "", actor: User | None = None,
            at: datetime | None = None) -> None:
    """An event that is not a state change (hangup sent, attached, ...)."""
    CallEvent.objects.create(
        call=call, at=at or timezone.now(), kind=kind, cause=cause, detail=detail[:500], actor=actor
    )


def transition(call: RealtimeCall, *, to: str, cause: str, actor: User | None = None, detail: str = "",
               push: bool = True, **fields: Any) -> bool:
    """Move `call` to state `to` if the state machine allows it from its current state; record it.

    Returns False (and changes nothing) when another actor got there first or `to` is not reachable.
    `fields` are written in the same UPDATE. Refreshes `call` either way. The user's pages get the
    call once it commits, unless `push=False` (a caller that pushes it later itself).
    """
    now = timezone.now()
    allowed = sources_of(to)
    values = dict(fields, state=to, updated_at=now)
    if (stamp := _stamp_field(to)) and stamp not in values:
        values[stamp] = now
    event = CallEvent(call_id=call.pk, at=now, kind=CallEvent.Kind.STATE, to_state=to, cause=cause, actor=actor,
                      detail=detail[:500])
    if is_postgresql():
        changed = _transition_statement(call, allowed, values, event)
    else:
        changed = False
        with transaction.atomic(durable=True):
            for _ in range(3):  # the state moved between our read and our update: read it again
                current = RealtimeCall.objects.filter(pk=call.pk).values_list("state", flat=True).first()
                if current not in allowed:
                    break
                if RealtimeCall.objects.filter(pk=call.pk, state=current).update(**values):
                    event.from_state = current
                    event.save(force_insert=True)
                    changed = True
                    break
        call.refresh_from_db()
    if changed and push:
        transaction.on_commit(partial(_push_transition, call))
    return changed


def _transition_statement(call: RealtimeCall, allowed: list[str], values: dict[str, Any], event: CallEvent) -> bool:
    """The transition in one statement (autocommit): lock the row if its state allows the move
    (a racing actor's commit is waited for and the state read again, as READ COMMITTED does for
    FOR UPDATE), update it, insert the event with the state it left; the row comes back, so
    `call` is refreshed without another query (or with one, when nothing changed)."""
    table = RealtimeCall._meta.db_table
    fields = [field for name in sorted(values) if isinstance(field := RealtimeCall._meta.get_field(name), Field)]
    assignments = ", ".join(f"{field.column} = %(v_{field.column})s" for field in fields)
    params = {f"v_{field.column}": field.get_db_prep_save(values[field.name], connection) for field in fields}
    event_columns, event_values, event_params = instance_insert(
        event, prefix="e_", overrides={"call_id": "c.id", "from_state": "c.from_state"}
    )
    # Names from the models, values as parameters:
    sql = (f"WITH was AS (SELECT id, state FROM {table} WHERE id = %(pk)s AND state = ANY(%(allowed)s)"  # noqa: S608
           f" FOR UPDATE), c AS (UPDATE {table} SET {assignments} FROM was WHERE {table}.id = was.id"
           f" RETURNING was.state AS from_state, {returning_columns(RealtimeCall, table)}),"
           f" e AS (INSERT INTO {CallEvent._meta.db_table} ({event_columns}) SELECT {event_values} FROM c)"
           " SELECT * FROM c")
    row = one_statement(sql, params | event_params | {"pk": call.pk, "allowed": allowed})
    if row is None:
        call.refresh_from_db()
        return False
    fresh = instance_from_row(RealtimeCall, row[1:])
    for field in RealtimeCall._meta.concrete_fields:
        setattr(call, field.attname, getattr(fresh, field.attname))
    # A timeline prefetched before lacks the event just written (refresh_from_db would drop it too).
    getattr(call, "_prefetched_objects_cache", {}).pop("events", None)
    event.from_state = row[0]
    return True


def _push_transition(call: RealtimeCall) -> None:
    """A transition's live push: the call in hand (refreshed by the transition; its assistant read
    unless the caller selected it) and its timeline."""
    push_to_user(call.user_id, "call", presenters.call_payload(call, events=True))


def _final_state(end_reason: str) -> str:
    if end_reason == Cause.UNMETERED:
        return CallState.EXPIRED
    if end_reason in KILL_CAUSES:
        return CallState.KILLED
    return CallState.ENDED


def settle_call(*, call: RealtimeCall, cause: str, used_credits: int | None = None, actor: User | None = None,
                detail: str = "") -> RealtimeCall:
    """Settle an open call's hold and make it final, exactly once.

    `used_credits=None` charges the full hold (nobody metered the call). The final state follows the
    reason the call ended (the cause of its hangup, else `cause`): killed for staff, credits, time
    and suspension; expired when unmetered; ended otherwise. Billing settles first (idempotent by
    key, so a settler that races us gets the first settlement back), then the call becomes final.
    """
    call.refresh_from_db()
    if call.state in FINAL_STATES:
        return call
    end_reason = call.end_reason or cause
    used = call.credits_held if used_credits is None else max(int(used_credits), 0)
    charged = 0
    if call.hold_id:
        settlement: billing.Settlement | None
        try:
            settlement = billing.settle_hold(
                hold=billing.get_hold(hold_id=call.hold_id), used_credits=used,
                idempotency_key=f"realtime-call:{call.public_id}:settle",
            )
        except billing_errors.HoldAlreadyFinal:  # released whole: what billing says became of it
            settlement = billing.hold_settlement(hold_id=call.hold_id)
        if settlement is not None:
            charged = settlement.charged_credits + settlement.overshoot_credits - settlement.uncollected_credits
    if used_credits is None and not detail:
        detail = "Not metered: charged the full hold."
    settled = transition(
        call, to=_final_state(end_reason), cause=cause, actor=actor, detail=detail,
        end_reason=end_reason, credits_charged=charged,
    )
    if settled and end_reason == Cause.CREDITS_EXHAUSTED:
        notifications.call_cut_off(call)
    return call


def _fail(call: RealtimeCall, *, cause: str, detail: str) -> None:
    """A call that never started: release its hold (if any) and mark it failed."""
    if call.hold_id:
        try:
            billing.release_hold(
                hold=billing.get_hold(hold_id=call.hold_id), idempotency_key=f"realtime-call:{call.public_id}:release"
            )
        except billing_errors.HoldAlreadyFinal:
            logger.warning("call %s: hold %s was already final when releasing it", call.public_id, call.hold_id)
    transition(call, to=CallState.FAILED, cause=cause, detail=detail, end_reason=cause, credits_charged=0)


# --- starting calls --------------------------------------------------------------------------


def _open_call(*, user: User, assistant: Assistant, mode: str) -> tuple[RealtimeCall, HoldPlan]:
    """Checks, then a pending call row and its hold, committed together. Raises a CallError,
    having written nothing.

    One transaction: the wallet's row lock serialises this user's starts (so the limits are
    counted exactly) and guards the balance the hold is sized from.
    """
    _check_user(user)
    now = timezone.now()
    call = RealtimeCall(
        user=user, assistant=assistant, mode=mode, state=CallState.PENDING, model=assistant.model,
        markup_percent=assistant.markup_percent, created_at=now, updated_at=now,
    )
    with transaction.atomic(durable=True):
        wallet = billing.lock_wallet(user=user)
        if reason := wallet.blocked_reason:
            raise errors.WalletBlocked(f"Your wallet cannot start calls: {reason}")
        _check_limits(user=user, assistant=assistant, now=now)
        if mode == CallMode.KEY:
            _check_outstanding_secret(user=user, now=now)
        available = wallet.available
        if (cap := billing.cap_status(wallet)) is not None:  # the monthly spending cap (docs/billing.md)
            required = max(assistant.min_credits, 1)
            if cap.credits_left < required <= available:
                raise errors.SpendingCapReached(cap.hold_refusal(required))
            available = min(available, cap.credits_left)  # a partial hold: the supervisor ends the call
        plan = plan_hold(assistant=assistant, available=available)
        hold = billing.hold_in_transaction(
            wallet=wallet, credits=plan.credits, idempotency_key=f"realtime-call:{call.public_id}:hold",
            reference=f"realtime-call:{call.public_id}", memo=f"{assistant.name}, up to {plan.seconds} s"
            + (" or until these credits run out" if plan.partial else ""),
        )
        call.hold_id, call.credits_held, call.allowed_seconds = hold.pk, plan.credits, plan.seconds
        call.partial_hold = plan.partial
        call.expected_end_at = now + timedelta(seconds=plan.seconds + settings.OPENAI_TIMEOUT_SECONDS)
        _write_call(call, CallEvent(
            at=now, kind=CallEvent.Kind.STATE, to_state=CallState.PENDING, cause=Cause.STARTED,
            actor=user, detail=f"{mode} mode; holding {plan.credits:,} credits, up to {plan.seconds} s"
            + (f" (partial: {plan.full_credits:,} would cover the worst case)" if plan.partial else ""),
        ))
    # No push here: the caller is still waiting for this request, and the next transition
    # (active or failed) pushes the call anyway.
    return call, plan


def _write_call(call: RealtimeCall, event: CallEvent) -> None:
    """Insert a new call and its first event (in the caller's transaction): one statement on
    PostgreSQL, the ORM elsewhere."""
    if not is_postgresql():
        call.save(force_insert=True)
        event.call = call
        event.save(force_insert=True)
        return
    call_columns, call_values, params = instance_insert(call, prefix="c_")
    event_columns, event_values, event_params = instance_insert(event, prefix="e_", overrides={"call_id": "c.id"})
    # Names from the models, values as parameters:
    sql = (f"WITH c AS (INSERT INTO {RealtimeCall._meta.db_table} ({call_columns}) VALUES ({call_values})"  # noqa: S608
           f" RETURNING id) INSERT INTO {CallEvent._meta.db_table} ({event_columns}) SELECT {event_values} FROM c"
           " RETURNING call_id")
    row = fetch_one(sql, params | event_params)
    assert row is not None  # both inserts return their row
    loaded(call).pk = row[0]
    event.call_id = row[0]


def _release_connection() -> None:
    """Give the database connection back to the pool before waiting for OpenAI, so a slow upstream
    never holds one (the next statement takes one again). Without a pool, or inside a transaction
    (tests), the connection stays."""
    if "pool" in connection.settings_dict.get("OPTIONS", {}) and not connection.in_atomic_block:
        connection.close()


def _activate(call: RealtimeCall, *, cause: str, **fields: Any) -> bool:
    """pending → active, the hot path of a start: a conditional UPDATE and its event, with the
    live push built from the row in hand. False (the call refreshed) if the call has moved on."""
    now = timezone.now()
    values = dict(fields, state=CallState.ACTIVE, updated_at=now)
    values.setdefault("started_at", now)
    event = CallEvent(call_id=call.pk, at=now, kind=CallEvent.Kind.STATE, from_state=CallState.PENDING,
                      to_state=CallState.ACTIVE, cause=cause)
    if is_postgresql():  # one statement, in autocommit: the conditional UPDATE and its event
        changed = _activate_statement(call.pk, values, event)
    else:
        with transaction.atomic(durable=True):
            changed = bool(RealtimeCall.objects.filter(pk=call.pk, state=CallState.PENDING).update(**values))
            if changed:
                event.save(force_insert=True)
    if not changed:
        call.refresh_from_db()
        return False
    for name, value in values.items():
        setattr(call, name, value)
    transaction.on_commit(partial(_push_figures, call))
    return True


def _activate_statement(call_pk: int, values: dict[str, Any], event: CallEvent) -> bool:
    fields = [field for name in sorted(values) if isinstance(field := RealtimeCall._meta.get_field(name), Field)]
    assignments = ", ".join(f"{field.column} = %(v_{field.column})s" for field in fields)
    params = {f"v_{field.column}": field.get_db_prep_save(values[field.name], connection) for field in fields}
    event_columns, event_values, event_params = instance_insert(event, prefix="e_", overrides={"call_id": "c.id"})
    # Names from the models, values as parameters:
    sql = (f"WITH c AS (UPDATE {RealtimeCall._meta.db_table} SET {assignments}"  # noqa: S608
           " WHERE id = %(pk)s AND state = %(from_state)s RETURNING id)"
           f" INSERT INTO {CallEvent._meta.db_table} ({event_columns}) SELECT {event_values} FROM c RETURNING call_id")
    row = one_statement(sql, params | event_params | {"pk": call_pk, "from_state": CallState.PENDING})
    return row is not None


def _push_figures(call: RealtimeCall) -> None:
    """The live push of a start, from the row in hand: no query for the events (there are none
    the page needs yet), the API's call without `events`."""
    push_to_user(call.user_id, "call", presenters.call_payload(call))


def _upstream_failed(
    call: RealtimeCall, exc: openai_client.UpstreamError | openai_client.InvalidOffer
) -> errors.CallError:
    if isinstance(exc, openai_client.InvalidOffer):
        _fail(call, cause=Cause.INVALID_OFFER, detail=exc.message)
        return errors.InvalidOffer(exc.message)
    cause = Cause.UPSTREAM_ERROR
    if isinstance(exc, openai_client.UpstreamTimeout):
        cause = Cause.UPSTREAM_TIMEOUT
    elif isinstance(exc, openai_client.UpstreamRateLimited):
        cause = Cause.UPSTREAM_RATE_LIMITED
    _fail(call, cause=cause, detail=exc.message)
    logger.warning("call %s failed upstream: %s", call.public_id, exc.message)
    return errors.Upstream(exc.message, code=exc.code, status=exc.status, retry_after=exc.retry_after)


@bundled()
def start_proxy_call(*, user: User, assistant_id: int | str | None, offer_sdp: str) -> tuple[RealtimeCall, str]:
    """Start a proxy-mode call: checks, a hold, then OpenAI creates the call from the browser's
    offer and the assistant's session config. Returns the call (active) and the SDP answer.

    Raises a `sessions.exceptions.CallError`; on any failure after the hold, the hold is released
    and the call is `failed`. The user's pages get one live push when it returns (`bundled`): the
    wallet's figures and the call's state together.
    """
    validate_offer(offer_sdp)
    cached = _active_assistant(assistant_id, mode=CallMode.PROXY)
    call, plan = _open_call(user=user, assistant=cached.assistant, mode=CallMode.PROXY)
    _release_connection()
    try:
        created = openai_client.create_call(sdp=offer_sdp, session=cached.session_json)
    except (openai_client.UpstreamError, openai_client.InvalidOffer) as exc:
        raise _upstream_failed(call, exc) from None
    now = timezone.now()
    if _activate(
        call, cause=Cause.UPSTREAM_ANSWERED, openai_call_id=created.call_id,
        started_at=now, expected_end_at=now + timedelta(seconds=plan.seconds),
    ):
        return call, created.answer_sdp
    # Hung up (or swept) while OpenAI was answering: end the call it just created.
    RealtimeCall.objects.filter(pk=call.pk, openai_call_id__isnull=True).update(openai_call_id=created.call_id)
    _send_hangup(call, created.call_id)
    raise errors.CallConflict("The call was ended before it started.", code="call_ended")


@bundled()
def mint_client_secret(*, user: User, assistant_id: int | str | None) -> tuple[RealtimeCall, openai_client.MintedSecret]:
    """Key mode: checks and a hold as for a proxy call, then a client secret minted with the
    assistant's session config and its short key lifetime. The secret is returned once and only
    its fingerprint is stored. The call stays `active` until its window closes (the secret's expiry
    plus the allowed length); if the client never reports its call id, the sweep charges the full
    hold then.
    """
    assistant = _active_assistant(assistant_id, mode=CallMode.KEY).assistant
    if getattr(user, "key_mode_withdrawn_at", None) is not None:
        raise errors.KeyModeWithdrawn(
            "Key mode was withdrawn from this account after a client secret was used beyond the call "
            "it reported. Use proxy mode, or ask support to restore it."
        )
    call, plan = _open_call(user=user, assistant=assistant, mode=CallMode.KEY)
    try:
        minted = openai_client.mint_client_secret(
            session=assistant.session_config(), ttl_seconds=assistant.key_ttl_seconds
        )
    except openai_client.UpstreamError as exc:
        raise _upstream_failed(call, exc) from None
    now = timezone.now()
    expires_at = datetime.fromtimestamp(minted.expires_at, tz=UTC)
    # Use our clock when the upstream's disagrees (the fake's can be shifted): the window must not
    # close before the key could be used.
    expires_at = max(expires_at, now + timedelta(seconds=assistant.key_ttl_seconds))
    _activate(
        call, cause=Cause.MINTED, secret_fingerprint=minted.fingerprint,
        secret_expires_at=expires_at, started_at=now,
        expected_end_at=expires_at + timedelta(seconds=plan.seconds),
    )
    return call, minted


def attach_call_id(*, user: User, call: RealtimeCall, openai_call_id: str) -> RealtimeCall:
    """Key mode: the client reports the OpenAI call id its secret started, so it can be metered
    and hung up. Idempotent for the same id."""
    if call.mode != CallMode.KEY:
        raise errors.CallConflict("Only key-mode calls report their call id.", code="not_key_mode")
    if not OPENAI_CALL_ID.match(openai_call_id or ""):
        raise errors.CallError("call_id must be the OpenAI call id (rtc_…).", code="invalid_call_id")
    if call.openai_call_id == openai_call_id:
        return call
    try:
        with transaction.atomic(durable=True):
            updated = RealtimeCall.objects.filter(
                pk=call.pk, user=user, state=CallState.ACTIVE, openai_call_id__isnull=True
            ).update(openai_call_id=openai_call_id, updated_at=timezone.now())
            if updated:
                _record(call, kind=CallEvent.Kind.ATTACHED, actor=user, detail=openai_call_id)
                transaction.on_commit(lambda: _push_call(call.pk))
    except IntegrityError:
        raise errors.CallConflict("That call id belongs to another call.", code="call_id_taken") from None
    call.refresh_from_db()
    if not updated and call.openai_call_id != openai_call_id:
        if call.openai_call_id:
            raise errors.CallConflict("This call already reported another call id.", code="already_attached")
        raise errors.CallConflict(f"This call is {call.state}: it can no longer be attached.", code="call_not_open")
    return call


# --- ending calls ----------------------------------------------------------------------------


def _send_hangup(call: RealtimeCall, openai_call_id: str, *, actor: User | None = None) -> None:
    try:
        openai_client.hangup(openai_call_id)
    except openai_client.CallNotFound:
        _record(call, kind=CallEvent.Kind.HANGUP_SENT, actor=actor, detail="OpenAI had already ended the call.")
    except openai_client.UpstreamError as exc:
        logger.warning("hangup of call %s failed: %s", call.public_id, exc.message)
        _record(call, kind=CallEvent.Kind.HANGUP_FAILED, actor=actor, detail=exc.message)
    else:
        _record(call, kind=CallEvent.Kind.HANGUP_SENT, actor=actor)


@bundled()
def request_hangup(*, call: RealtimeCall, cause: str, actor: User | None = None) -> RealtimeCall:
    """End a call: mark it `ending` (recording why), then ask OpenAI to hang it up.

    Idempotent: an ending or final call is returned as it is. A key-mode call whose client never
    reported its call id cannot be hung up, so it is settled at once at its full hold. A call it
    hung up comes back with its timeline loaded (`call.events.all()` is no query), the same the
    user's pages are pushed once the hangup is sent.

    `call` may be stale: the transition reads the state under the row's lock; only a key-mode call
    is read first (whether it reported its call id decides between a hangup and a settlement).
    """
    if call.mode == CallMode.KEY:
        call.refresh_from_db()
    if call.state not in OPEN_STATES or call.state == CallState.ENDING:
        return call
    if call.mode == CallMode.KEY and call.state == CallState.ACTIVE and not call.openai_call_id:
        # Nothing to hang up or meter. The secret dies within its short lifetime.
        return settle_call(call=call, cause=cause, actor=actor)
    if not transition(call, to=CallState.ENDING, cause=cause, actor=actor, end_reason=cause, push=False):
        return call
    if call.openai_call_id:
        _send_hangup(call, call.openai_call_id, actor=actor)
    # The timeline as it is now (the hangup_sent event included), for the push and the caller's
    # answer alike. A prefetch made before the hangup is stale: forget it, as refresh_from_db does.
    getattr(call, "_prefetched_objects_cache", {}).pop("events", None)
    prefetch_related_objects([call], "events")
    push_to_user(call.user_id, "call", presenters.call_payload(call, events=True))
    return call


def sweep_calls(*, limit: int = 500) -> int:
    """Settle calls nobody else will, with no live supervisor lease: open past their expected end
    (+ grace); hung up and not settled within the ending grace; or running at OpenAI with no
    supervisor watching them for REALTIME_UNWATCHED_GRACE_SECONDS (every supervisor stopped or
    died: fail closed). They are hung up if still running and charged their full hold (they were
    not metered, or not to the end). Returns how many were settled."""
    now = timezone.now()
    unwatched_since = now - timedelta(seconds=settings.REALTIME_UNWATCHED_GRACE_SECONDS)
    overdue = RealtimeCall.objects.filter(state__in=OPEN_STATES).filter(
        Q(expected_end_at__lt=now - timedelta(seconds=settings.REALTIME_SWEEP_GRACE_SECONDS))
        | Q(state=CallState.ENDING, ending_at__lt=now - timedelta(seconds=settings.REALTIME_ENDING_GRACE_SECONDS))
        | Q(state=CallState.ACTIVE, openai_call_id__isnull=False, lease_expires_at__lt=unwatched_since)
        | Q(state=CallState.ACTIVE, openai_call_id__isnull=False, lease_expires_at__isnull=True,
            started_at__lt=unwatched_since)
    ).filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
    settled = 0
    for call in overdue.order_by("expected_end_at")[:limit]:
        if call.state == CallState.ACTIVE and call.openai_call_id:
            _send_hangup(call, call.openai_call_id)
        settle_call(call=call, cause=Cause.UNMETERED)
        settled += call.state in FINAL_STATES
    if settled:
        logger.info("sweep settled %d unmetered call(s)", settled)
    return settled
