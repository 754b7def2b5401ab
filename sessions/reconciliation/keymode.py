"""Key mode: each client secret's window reconciled within minutes of its end (issue 11).

A client secret can start any number of calls until it expires (reference §1.1); only the call its
client reports is watched and metered. So once a key-mode window has ended, OpenAI's usage for its
minutes is pulled from the Usage API (1-minute buckets) and compared, minute by minute, with
everything we metered in those minutes — for every call, since other users' calls use the same
project key — with `reconcile`'s neighbour-minute correction, allowances and tolerance. Usage that
only this user's secret can explain, beyond the tolerance, is abuse: one high flag, key mode
withdrawn from the user, and the unexplained usage charged at the call's price.

Each step can be re-run. The flag and the withdrawal are written first (one transaction), then the
charge (billing, idempotent by key), then the flag's final evidence together with the call's
`key_reconciled_at`. So no money moves without a flag naming it, a window is never marked before its
charge, and a run killed anywhere is finished by the next one without writing anything twice.
"""

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from accounts import services as accounts
from billing import exceptions as billing_errors
from billing import services as billing
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
from sessions.reconciliation import checks, flags, importer, locks, streams
from sessions.reconciliation.models import Flag, FlagKind, Severity, UsageBucket

logger = logging.getLogger(__name__)

MINUTE = streams.MINUTE
BATCH = 200  # windows per run, oldest first
# Windows that ended longer ago are left to the periodic reconcile (calls from before this check
# existed, or a Usage API outage of days): charging a user weeks later would surprise everyone.
MAX_AGE = timedelta(days=2)

# How a minute of the window was counted.
COUNTED = "this window"  # only this user's key-mode windows were open, and this one is the oldest
SHARED = "shared"  # another user's key-mode window was open too: the excess cannot be attributed
ELSEWHERE = "counted under "  # + the older window of the same user that counts this minute


def charge_key(call: RealtimeCall) -> str:
    """The idempotency key of the ledger entry that charges a window's unexplained usage."""
    return f"key-window:{call.public_id}:unexplained"


@dataclass
class Assessment:
    """What OpenAI reported in one key-mode window beyond what we metered, and what it costs."""

    call: RealtimeCall
    start: datetime
    end: datetime
    minutes: dict[str, dict] = field(default_factory=dict)  # iso minute -> figures
    unexplained_tokens: int = 0  # in the minutes counted for this window
    shared_tokens: int = 0  # in minutes other users' key-mode windows share
    metered_tokens: int = 0  # what we metered in the minutes counted for this window
    tolerance_tokens: int = 0
    tokens_by_class: dict[str, int] = field(default_factory=dict)
    cost_microusd: int = 0
    credits: int = 0
    priced: bool = True
    charge: dict | None = None  # what billing collected, once charged

    @property
    def abusive(self) -> bool:
        return self.unexplained_tokens > self.tolerance_tokens

    @property
    def doubtful(self) -> bool:
        """Not attributable, but too much to ignore: staff decide."""
        return not self.abusive and self.shared_tokens > self.tolerance_tokens


@dataclass
class KeyWindowsResult:
    due: int = 0
    reconciled: int = 0
    abusive: list[str] = field(default_factory=list)  # public ids
    doubtful: list[str] = field(default_factory=list)
    charged_credits: int = 0
    uncollected_credits: int = 0
    usage_buckets: int = 0
    errors: int = 0


# --- which windows -------------------------------------------------------------------------------


def key_window(call: RealtimeCall) -> tuple[datetime, datetime]:
    """From the mint to the end of the window's usage: the call's end if it ended and was metered
    (reported), else its expected end (the secret's expiry + the assistant's maximum length) — never
    before the secret's expiry, since until then it can start more calls."""
    end = streams.window_end(call)
    if call.secret_expires_at is not None:
        end = max(end, call.secret_expires_at)
    return call.created_at, end


def _grace() -> timedelta:
    return timedelta(seconds=settings.RECONCILIATION_WINDOW_GRACE_SECONDS)


def _minutes(start: datetime, end: datetime) -> list[datetime]:
    """The minutes a window's usage can be reported in: from the mint's minute to the end's
    (widened by the grace, for late buckets and clock skew)."""
    first = start.replace(second=0, microsecond=0)
    last = (end + _grace()).replace(second=0, microsecond=0)
    return [first + i * MINUTE for i in range(int((last - first) / MINUTE) + 1)]


def due_windows(*, now: datetime | None = None, limit: int = BATCH) -> list[RealtimeCall]:
    """Key-mode windows not reconciled yet whose end is RECONCILIATION_KEY_WINDOW_DELAY_SECONDS
    (Usage API lag) behind us, oldest first."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.RECONCILIATION_KEY_WINDOW_DELAY_SECONDS)
    candidates = (
        RealtimeCall.objects.filter(
            mode=CallMode.KEY, key_reconciled_at__isnull=True, expected_end_at__gte=now - MAX_AGE
        )
        .exclude(state=CallState.FAILED)  # never minted: no secret
        .filter(Q(expected_end_at__lte=cutoff) | Q(state__in=FINAL_STATES, ended_at__lte=cutoff))
        .select_related("user")
        .order_by("expected_end_at", "pk")[:limit]
    )
    return [call for call in candidates if key_window(call)[1] <= cutoff]


# --- the comparison ------------------------------------------------------------------------------


def _reported(model: str, since: datetime, until: datetime) -> dict[datetime, dict]:
    """minute -> {"total", <class>...} of the usage OpenAI reported for `model` (our scope)."""
    names = ["total", *streams.USAGE_COLUMNS]
    rows = (
        UsageBucket.objects.filter(streams.scope_q(), model=model, start_time__gte=since, start_time__lt=until)
        .values("start_time")
        .annotate(
            total=Sum(F("input_tokens") + F("output_tokens")),
            **{name: Sum(column) for name, column in streams.USAGE_COLUMNS.items()},
        )
        .order_by("start_time")
        .values_list("start_time", *names)
    )
    return {start: {k: int(v or 0) for k, v in zip(names, sums, strict=True)} for start, *sums in rows}


def _metered(model: str, since: datetime, until: datetime) -> dict[int, dict]:
    """epoch minute -> {"total", <class>...} of what the supervisor metered, every call of `model`."""
    rows = (
        UsageRecord.objects.filter(call__model=model, at__gte=since, at__lt=until)
        .annotate(minute=streams.EpochMinute("at"))
        .values("minute")
        .annotate(**{name: Sum(column) for name, column in streams.METERED_COLUMNS.items()})
        .order_by("minute")
        .values_list("minute", *streams.METERED_COLUMNS)
    )
    result = {}
    for minute, *sums in rows:
        classes = {k: int(v or 0) for k, v in zip(streams.METERED_COLUMNS, sums, strict=True)}
        result[minute] = {"total": sum(classes.values()), **classes}
    return result


def assess(call: RealtimeCall) -> Assessment:
    """Compare OpenAI's usage in the window's minutes with what we metered in them (read-only: the
    buckets must have been imported). Per minute, as `reconcile` does: reported − metered − the
    neighbours' unreported metering − the allowance of the unmetered windows open then (this one
    included when its client never reported its call). A minute's excess counts for this window
    when no other user's key-mode window was open in it, and this is the user's oldest one open."""
    start, end = key_window(call)
    minutes = _minutes(start, end)
    since, until = minutes[0] - MINUTE, minutes[-1] + 2 * MINUTE  # with both neighbours
    model = call.model
    reported = _reported(model, since, until)
    metered = _metered(model, since, until)
    reported_at = {minute: {model: row["total"]} for minute, row in reported.items()}
    metered_at = {minute: {model: row["total"]} for minute, row in metered.items()}
    windows = [w for w in streams.call_windows(since=since, until=until) if w.model == model]
    grace = _grace()
    price = ModelPrice.objects.filter(model=model).first()
    result = Assessment(call=call, start=start, end=end, priced=price is not None)
    cost = Fraction(0)  # micro-dollars × 10⁶, exact until the end
    tokens: dict[str, Fraction] = dict.fromkeys(TokenCounts.CLASSES, Fraction(0))
    zero = dict.fromkeys(("total", *TokenCounts.CLASSES), 0)

    def figures(minute: datetime) -> tuple[dict, dict]:
        return reported.get(minute, zero), metered.get(streams.epoch_minute(minute), zero)

    for minute in minutes:
        here_reported, here_metered = figures(minute)
        open_windows = [w for w in windows if w.open_at(minute, grace)]
        unmetered = sum(1 for w in open_windows if w.unmetered)
        surplus = checks.neighbour_surplus(minute, model, metered=metered_at, reported_at=reported_at)
        excess = checks.unexplained_tokens(
            reported=here_reported["total"], metered=here_metered["total"], surplus=surplus,
            unmetered_windows=unmetered,
        )
        keyed = sorted((w for w in open_windows if w.mode == CallMode.KEY), key=lambda w: (w.start, w.pk))
        if any(w.user_id != call.user_id for w in keyed):
            counted = SHARED
        elif keyed and keyed[0].pk != call.pk:
            counted = ELSEWHERE + keyed[0].public_id
        else:
            counted = COUNTED
        result.minutes[minute.isoformat()] = {
            "reported": here_reported["total"],
            "metered": here_metered["total"],
            "neighbours": surplus,
            "allowance": unmetered * checks.WORST_CASE_PER_MINUTE,
            "excess": max(excess, 0),
            "key_windows": [w.public_id for w in keyed],
            "counted": counted,
        }
        if counted == SHARED:
            result.shared_tokens += max(excess, 0)
            continue
        if counted != COUNTED:
            continue
        result.metered_tokens += here_metered["total"]
        if excess <= 0:
            continue
        result.unexplained_tokens += excess
        # Price the excess by token class: what OpenAI reported beyond our metering in each class
        # (after the same neighbour correction), scaled down to the excess when allowances explain
        # part of it. With neither, that is exactly the unmetered responses' own tokens.
        sides = [figures(minute + step * MINUTE) for step in (-1, 1)]
        beyond = {
            name: max(0, here_reported[name] - here_metered[name]
                      - sum(max(0, side_metered[name] - side_reported[name]) for side_reported, side_metered in sides))
            for name in TokenCounts.CLASSES
        }
        total_beyond = sum(beyond.values())
        if not total_beyond:
            continue
        scale = min(Fraction(1), Fraction(excess, total_beyond))
        for name, value in beyond.items():
            tokens[name] += scale * value
            if price is not None:
                cost += scale * value * price.price_of(name)
    result.tolerance_tokens = math.ceil(checks.tolerance_tokens(result.metered_tokens))
    result.tokens_by_class = {name: round(value) for name, value in tokens.items()}
    result.cost_microusd = math.ceil(cost / 1_000_000)
    result.credits = credits_for_cost(result.cost_microusd, markup_percent=call.markup_percent)
    return result


# --- writing it down -----------------------------------------------------------------------------


def _summary(a: Assessment, charge: dict | None) -> str:
    call = a.call
    if not a.abusive:
        return (
            f"OpenAI reports {a.shared_tokens:,} {call.model} tokens beyond what we metered in minutes of "
            f"key-mode call {call.public_id}'s window that other users' key-mode windows share: no single "
            "secret explains them. Nothing was charged or withdrawn; the evidence names the windows."
        )
    text = (
        f"The client secret of key-mode call {call.public_id} was used beyond the call it reported: OpenAI "
        f"reports {a.unexplained_tokens:,} {call.model} tokens in its window that nothing we metered explains "
        f"(tolerance {a.tolerance_tokens:,}). Key mode withdrawn; "
    )
    if charge is None:
        return text + f"charging {a.credits:,} credits."
    text += f"{charge['collected']:,} credits charged"
    if charge["uncollected"]:
        text += f", {charge['uncollected']:,} could not be collected"
    return text + "."


def _finding(a: Assessment, charge: dict | None) -> flags.Finding:
    call = a.call
    price = {"model": call.model, "markup_percent": call.markup_percent, "priced": a.priced,
             "cost_microusd": a.cost_microusd, "credits": a.credits}
    extra = {
        "call": call.public_id,
        "secret_fingerprint": call.secret_fingerprint or None,
        "reported_call_id": call.openai_call_id,
        "minted_at": call.created_at.isoformat(),
        "secret_expires_at": call.secret_expires_at.isoformat() if call.secret_expires_at else None,
        "window_start": a.start.isoformat(),
        "window_end": a.end.isoformat(),
        "unexplained_tokens": a.unexplained_tokens,
        "unexplained_tokens_by_class": a.tokens_by_class,
        "shared_tokens": a.shared_tokens,
        "metered_tokens_in_counted_minutes": a.metered_tokens,
        "tolerance_tokens": a.tolerance_tokens,
        "allowance_per_unmetered_window_per_minute": checks.WORST_CASE_PER_MINUTE,
        "price": price,
    }
    if a.abusive:
        extra["key_mode_withdrawn"] = True
        extra["charge"] = charge or {"idempotency_key": charge_key(call), "credits": a.credits, "pending": True}
    return flags.Finding(
        kind=FlagKind.KEY_MODE_ABUSE,
        severity=Severity.HIGH if a.abusive else Severity.MEDIUM,
        natural_key=f"key_mode_abuse:{call.public_id}",
        summary=_summary(a, charge),
        model=call.model,
        attribution="call",
        call_id=call.pk,
        user_id=call.user_id,
        minutes=dict(a.minutes),
        extra=extra,
    )


def charge_unexplained(*, call: RealtimeCall, credits: int) -> dict:
    """Debit `credits` from the call's user for usage the window's secret caused beyond its call.

    Through billing's usage path: a hold of what is available (at most `credits`), settled at
    `credits`, so the balance never goes below zero and what the wallet cannot pay is reported as
    uncollected (billing's settle_hold). Keyed by the call: a re-run settles the same hold once.
    """
    key = charge_key(call)
    hold_key = f"{key}:hold"
    hold = billing.hold_by_key(idempotency_key=hold_key)  # a re-run's hold, placed by the run before
    for _ in range(3):  # the user's available credits may move between our read and the hold
        if hold is not None:
            break
        available = billing.available_credits(call.user)
        if available <= 0:
            break
        try:
            hold = billing.place_hold(
                user=call.user, credits=min(credits, available), idempotency_key=hold_key,
                reference=f"key-window:{call.public_id}",
                memo=f"Usage of the client secret of call {call.public_id} beyond the call it reported",
            )
        except (billing_errors.InsufficientCredits, billing_errors.WalletBlocked):
            continue
        except billing_errors.IdempotencyConflict:  # a concurrent run placed it first
            hold = billing.hold_by_key(idempotency_key=hold_key)
    if hold is None:
        return {"idempotency_key": key, "credits": credits, "collected": 0, "uncollected": credits,
                "ledger_entry": None, "note": "no credits were available"}
    settlement = billing.settle_hold(hold=hold, used_credits=credits, idempotency_key=key)
    used = settlement.charged_credits + settlement.overshoot_credits  # the first settlement's, on a re-run
    return {
        "idempotency_key": key,
        "credits": used,
        "collected": used - settlement.uncollected_credits,
        "uncollected": settlement.uncollected_credits,
        "ledger_entry": settlement.entry.pk if settlement.entry else None,
    }


def reconcile_window(call: RealtimeCall) -> Assessment | None:
    """Reconcile one ended key-mode window whose minutes were imported. Returns its assessment, or
    None if another run reconciled it first."""
    a = assess(call)
    finding = _finding(a, None) if (a.abusive or a.doubtful) else None
    if finding is not None:
        with transaction.atomic(durable=True):
            if locks.unreconciled_call_for_update(call_pk=call.pk) is None:
                return None
            flags.upsert([finding])
            if a.abusive:
                flag = Flag.objects.get(natural_key=finding.natural_key)
                accounts.withdraw_key_mode(
                    user=call.user, actor=None,
                    reason=f"The client secret of call {call.public_id} started calls that were never reported: "
                    f"{a.unexplained_tokens:,} tokens we could not meter, charged to the wallet (reconciliation "
                    f"flag #{flag.pk}).",
                )
    charge = None
    if a.abusive:
        charge = charge_unexplained(call=call, credits=a.credits) if a.credits > 0 else {
            "idempotency_key": charge_key(call), "credits": 0, "collected": 0, "uncollected": 0,
            "ledger_entry": None, "note": "unpriced" if not a.priced else "nothing to charge"}
        a.charge = charge
    with transaction.atomic(durable=True):
        if locks.unreconciled_call_for_update(call_pk=call.pk) is None:
            return None
        if finding is not None:
            flags.upsert([_finding(a, charge)])
        if charge is not None:
            detail = (
                f"OpenAI reports {a.unexplained_tokens:,} tokens in this key-mode window beyond what we metered "
                f"(calls its client secret started that were never reported): {charge['collected']:,} credits "
                "charged"
                + (f", {charge['uncollected']:,} could not be collected" if charge["uncollected"] else "")
                + "; key mode withdrawn from the account."
            )
            CallEvent.objects.create(call_id=call.pk, at=timezone.now(), kind=CallEvent.Kind.WARNING, detail=detail)
        RealtimeCall.objects.filter(pk=call.pk).update(key_reconciled_at=timezone.now())
    if a.abusive:
        logger.warning("key-mode window of %s: %d unexplained tokens, %s credits charged, key mode withdrawn",
                       call.public_id, a.unexplained_tokens, charge["collected"] if charge else 0)
    return a


def reconcile_due_windows(*, now: datetime | None = None, limit: int = BATCH) -> KeyWindowsResult:
    """Import the minutes of every due key-mode window (one Usage API pull) and reconcile each.

    Raises `openai_client.UpstreamError` when the pull fails: nothing is written and the windows
    stay due for the next run. A billing error on one window leaves that window for the next run.
    """
    calls = due_windows(now=now, limit=limit)
    result = KeyWindowsResult(due=len(calls))
    if not calls:
        return result
    spans = [_minutes(*key_window(call)) for call in calls]
    pulled = importer.import_usage_range(
        since=min(span[0] for span in spans) - MINUTE, until=max(span[-1] for span in spans) + 2 * MINUTE
    )
    result.usage_buckets = pulled.buckets
    for call in calls:
        try:
            a = reconcile_window(call)
        except billing_errors.BillingError:
            logger.exception("key-mode window of %s: billing failed; left for the next run", call.public_id)
            result.errors += 1
            continue
        if a is None:
            continue
        result.reconciled += 1
        if a.abusive:
            result.abusive.append(call.public_id)
            assert a.charge is not None  # reconcile_window charges every abusive window it returns
            result.charged_credits += a.charge["collected"]
            result.uncollected_credits += a.charge["uncollected"]
        elif a.doubtful:
            result.doubtful.append(call.public_id)
    return result
