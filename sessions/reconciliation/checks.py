"""What counts as wrong, one check per kind of flag; each returns (or records) findings.

Per minute, called by the sweep with that minute's figures: usage while none of our windows was
open (`outside_window`), and reported tokens beyond what explains them (`unexplained_usage`, with
the rule the key-mode check shares: `neighbour_surplus`, `unexplained_tokens`, `tolerance_tokens`).
Per call and per day, one query each over the period: calls used past their end (`call_overrun`),
key-mode calls never reported (`unmonitored_call`), and whole days whose cost drifts (`cost_drift`).
"""

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, F, Max, Min, Q, Sum
from django.utils import timezone

from sessions.models import (
    WORST_CASE_TOKENS_PER_MINUTE,
    CallMode,
    CostBucket,
    FlagKind,
    ModelPrice,
    RealtimeCall,
    Severity,
    TokenCounts,
    UsageBucket,
    UsageRecord,
)
from sessions.reconciliation.flags import Finding
from sessions.reconciliation.streams import (
    METERED_COLUMNS,
    MINUTE,
    USAGE_COLUMNS,
    CallWindow,
    epoch_minute,
    scope_q,
)

DAY = timedelta(days=1)
WORST_CASE_PER_MINUTE = sum(WORST_CASE_TOKENS_PER_MINUTE.as_dict().values())


# --- the per-minute rule -------------------------------------------------------------------------


def tolerance_tokens(metered: int) -> float:
    """How far reported usage may exceed what explains it before it is flagged: the larger of
    RECONCILIATION_TOLERANCE_TOKENS and RECONCILIATION_TOLERANCE_PERCENT of the metered tokens."""
    return max(
        settings.RECONCILIATION_TOLERANCE_TOKENS, settings.RECONCILIATION_TOLERANCE_PERCENT / 100 * metered
    )


def neighbour_surplus(
    minute: datetime,
    model: str,
    *,
    metered: dict[int, dict[str, int]],
    reported_at: dict[datetime, dict[str, int]],
) -> int:
    """Metered tokens of the minutes either side of `minute` that OpenAI did not report in those
    minutes: a response we metered just before a minute boundary may be reported just after it
    (clock skew), and the other way round. `metered` is keyed by epoch minute, `reported_at` by
    minute; both by model."""
    extra = 0
    at_int = epoch_minute(minute)
    for step in (-1, 1):
        m = metered.get(at_int + step, {}).get(model, 0)
        r = reported_at.get(minute + step * MINUTE, {}).get(model, 0)
        extra += max(0, m - r)
    return extra


def unexplained_tokens(*, reported: int, metered: int, surplus: int, unmetered_windows: int) -> int:
    """Reported tokens of one minute and model beyond what explains them: what we metered in it,
    the neighbours' unreported metering, and the allowance of the unmetered windows open in it (each
    may use up to the worst case per minute: its full hold pays for that). Negative: all explained."""
    return reported - (metered + surplus + unmetered_windows * WORST_CASE_PER_MINUTE)


# --- per minute: usage outside every window, unexplained usage -----------------------------------


def _attribution(api_key_ids: set[str]) -> str:
    known = set(settings.RECONCILIATION_OPENAI_KEY_IDS)
    return (
        "key" if api_key_ids and (not known or api_key_ids <= known) and "" not in api_key_ids else "project"
    )


def _bucket_detail(minute: datetime) -> list[dict]:
    return [
        {"project_id": p, "api_key_id": k, "model": m, "tokens": int(t)}
        for p, k, m, t in UsageBucket.objects.filter(scope_q(), start_time=minute)
        .annotate(tokens=F("input_tokens") + F("output_tokens"))
        .order_by("project_id", "api_key_id", "model")
        .values_list("project_id", "api_key_id", "model", "tokens")
    ]


def record_outside_window(
    pending: dict[str, Finding], *, minute: datetime, total: int, recent: Sequence[CallWindow]
) -> None:
    """Usage in a minute when none of our windows was open: recorded in `pending` under the window
    that closed last before it (`recent`, oldest first), with the minute's buckets as evidence."""
    key_minute = minute.isoformat()
    names = [w.describe() for w in reversed(recent)]
    subject = recent[-1] if recent else None
    nk = f"outside_window:{subject.public_id}" if subject else f"outside_window:none:{minute:%Y-%m-%d}"
    finding = pending.get(nk)
    if finding is None:
        detail = (
            f"secret {subject.fingerprint[:19]}… of call {subject.public_id}"
            if subject and subject.fingerprint
            else f"call {subject.public_id}"
            if subject
            else "no call of ours"
        )
        finding = pending[nk] = Finding(
            kind=FlagKind.OUTSIDE_WINDOW,
            severity=Severity.HIGH,
            natural_key=nk,
            summary=(
                f"OpenAI reports usage while none of our calls was open; the window that closed "
                f"last before it was {detail}"
                + (f", expected to end at {subject.expected_end:%Y-%m-%d %H:%M:%S} UTC." if subject else ".")
            ),
            call_id=subject.pk if subject else None,
            user_id=subject.user_id if subject else None,
            extra={"likely_leaked": names},
        )
    buckets = _bucket_detail(minute)
    finding.minutes[key_minute] = {"reported": total, "metered": 0, "buckets": buckets}
    keys = {b["api_key_id"] for b in buckets}
    finding.attribution = _attribution(keys)
    finding.api_key_id = next(iter(keys)) if len(keys) == 1 else ""
    projects = {b["project_id"] for b in buckets}
    finding.project_id = next(iter(projects)) if len(projects) == 1 else ""


def record_unexplained_usage(
    pending: dict[str, Finding],
    *,
    minute: datetime,
    models: dict[str, int],
    metered: dict[int, dict[str, int]],
    reported_at: dict[datetime, dict[str, int]],
    open_unmetered: dict[str, int],
    open_windows: int,
) -> None:
    """Per model, reported tokens of `minute` beyond its metering, the neighbours' unreported
    metering and the allowance of the unmetered windows open in it, by more than the tolerance:
    recorded in `pending` under the model and hour (high above 10× the tolerance)."""
    key_minute = minute.isoformat()
    for model, reported in models.items():
        here = metered.get(epoch_minute(minute), {}).get(model, 0)
        allowance = open_unmetered.get(model, 0) * WORST_CASE_PER_MINUTE
        excess = unexplained_tokens(
            reported=reported,
            metered=here,
            surplus=neighbour_surplus(minute, model, metered=metered, reported_at=reported_at),
            unmetered_windows=open_unmetered.get(model, 0),
        )
        if excess <= tolerance_tokens(here):
            continue
        hour = minute.replace(minute=0)
        nk = f"unexplained_usage:{model or '-'}:{hour:%Y-%m-%dT%H}"
        finding = pending.get(nk)
        if finding is None:
            finding = pending[nk] = Finding(
                kind=FlagKind.UNEXPLAINED_USAGE,
                severity=Severity.MEDIUM,
                natural_key=nk,
                model=model,
                summary=f"OpenAI reports more {model} tokens than we metered in the hour from "
                f"{hour:%Y-%m-%d %H:%M} UTC, beyond the tolerance.",
                extra={
                    "tolerance": {
                        "percent": settings.RECONCILIATION_TOLERANCE_PERCENT,
                        "tokens": settings.RECONCILIATION_TOLERANCE_TOKENS,
                    },
                    "allowance_per_unmetered_window_per_minute": WORST_CASE_PER_MINUTE,
                },
                attribution="project",
            )
        finding.minutes[key_minute] = {
            "reported": reported,
            "metered": here,
            "allowance": allowance,
            "excess": excess,
            "open_windows": open_windows,
        }
        if excess > 10 * tolerance_tokens(here):
            finding.severity = Severity.HIGH


# --- per call ------------------------------------------------------------------------------------


def call_overruns(since: datetime, until: datetime, grace: timedelta) -> list[Finding]:
    """Responses our supervisor metered after a call's expected end or after our hangup."""
    tokens = sum(F(column) for column in METERED_COLUMNS.values())
    late = (
        UsageRecord.objects.filter(at__gte=since, at__lt=until)
        .filter(
            Q(at__gt=F("call__expected_end_at") + grace)
            | Q(call__ending_at__isnull=False, at__gt=F("call__ending_at") + grace)
        )
        .values("call")
        # not `tokens`: UsageRecord has a property of that name
        .annotate(late_tokens=Sum(tokens), first=Min("at"), last=Max("at"), responses=Count("id"))
        .order_by("call")
    )
    findings = []
    for row in late.iterator(chunk_size=1000):
        call = RealtimeCall.objects.get(pk=row["call"])
        findings.append(
            Finding(
                kind=FlagKind.CALL_OVERRUN,
                severity=Severity.MEDIUM,
                natural_key=f"call_overrun:{call.public_id}",
                summary=f"Call {call.public_id} was still used after "
                + (
                    "our hangup"
                    if call.ending_at and call.ending_at < call.expected_end_at
                    else "its expected end"
                )
                + f": {row['late_tokens']:,} tokens in {row['responses']} response(s).",
                model=call.model,
                attribution="call",
                call_id=call.pk,
                user_id=call.user_id,
                window=(
                    row["first"].replace(second=0, microsecond=0),
                    row["last"].replace(second=0, microsecond=0) + MINUTE,
                ),
                reported=int(row["late_tokens"] or 0),
                metered=int(row["late_tokens"] or 0),
                extra={
                    "call": call.public_id,
                    "expected_end": call.expected_end_at.isoformat(),
                    "hangup_at": call.ending_at.isoformat() if call.ending_at else None,
                    "first_late_response": row["first"].isoformat(),
                    "last_late_response": row["last"].isoformat(),
                    "late_responses": row["responses"],
                    "late_tokens": int(row["late_tokens"] or 0),
                },
            )
        )
    return findings


def unmonitored_calls(since: datetime, until: datetime) -> list[Finding]:
    """Key-mode calls whose window closed in [since, until) without the client reporting its call id."""
    now = timezone.now()
    calls = (
        RealtimeCall.objects.filter(
            mode=CallMode.KEY,
            openai_call_id__isnull=True,
            expected_end_at__gte=since,
            expected_end_at__lt=min(until, now),
        )
        .exclude(state="failed")
        .order_by("expected_end_at", "pk")
    )
    return [
        Finding(
            kind=FlagKind.UNMONITORED_CALL,
            severity=Severity.LOW,
            natural_key=f"unmonitored_call:{call.public_id}",
            summary=f"Key-mode call {call.public_id} never reported its call id: we could neither meter nor "
            f"hang it up (charged its full hold).",
            model=call.model,
            attribution="call",
            call_id=call.pk,
            user_id=call.user_id,
            window=(call.created_at, call.expected_end_at),
            extra={
                "call": call.public_id,
                "secret_fingerprint": call.secret_fingerprint or None,
                "minted_at": call.created_at.isoformat(),
                "secret_expires_at": call.secret_expires_at.isoformat() if call.secret_expires_at else None,
                "expected_end": call.expected_end_at.isoformat(),
                "credits_held": call.credits_held,
                "credits_charged": call.credits_charged,
                "state": call.state,
            },
        )
        for call in calls.iterator(chunk_size=1000)
    ]


# --- per day: cost drift -------------------------------------------------------------------------

def our_cost_of_usage(start: datetime, end: datetime) -> tuple[int, dict[str, int], list[str]]:
    """Our price table applied to the reported usage in [start, end): (micro-dollars, per model, unpriced)."""
    prices = {p.model: p for p in ModelPrice.objects.all()}
    per_model: dict[str, int] = {}
    unpriced: list[str] = []
    rows = (
        UsageBucket.objects.filter(scope_q(), start_time__gte=start, start_time__lt=end)
        .values("model")
        .annotate(**{cls: Sum(column) for cls, column in USAGE_COLUMNS.items()})
        .order_by("model")
        .values_list("model", *USAGE_COLUMNS)
    )
    for model, *sums in rows:
        price = prices.get(model)
        if price is None:
            unpriced.append(model)
            continue
        per_model[model] = price.cost_microusd(
            TokenCounts(**{c: int(total or 0) for c, total in zip(USAGE_COLUMNS, sums, strict=True)})
        )
    return sum(per_model.values()), per_model, unpriced


def cost_drift_findings(*, since: datetime, until: datetime) -> list[Finding]:
    """Cost drift of each whole, ended day in [since, until) that has Costs API figures."""
    findings = []
    now = timezone.now()
    day = since.replace(hour=0, minute=0, second=0, microsecond=0)
    projects = settings.RECONCILIATION_OPENAI_PROJECT_IDS
    while day < until:
        end = day + DAY
        if end > now:
            break
        costs = CostBucket.objects.filter(start_time=day, width_seconds=86400)
        if projects:
            costs = costs.filter(Q(project_id__in=projects) | Q(project_id=""))
        reported = costs.aggregate(total=Sum("amount_microusd"))["total"]
        if reported is not None:
            ours, per_model, unpriced = our_cost_of_usage(day, end)
            drift = reported - ours
            tolerance = max(
                settings.RECONCILIATION_COST_TOLERANCE_MICROUSD,
                settings.RECONCILIATION_COST_TOLERANCE_PERCENT / 100 * max(reported, ours),
            )
            if abs(drift) > tolerance:
                findings.append(
                    Finding(
                        kind=FlagKind.COST_DRIFT,
                        severity=Severity.MEDIUM,
                        natural_key=f"cost_drift:{day:%Y-%m-%d}",
                        summary=f"OpenAI's cost for {day:%Y-%m-%d} is ${reported / 1e6:,.4f}; our price table makes the "
                        f"reported usage ${ours / 1e6:,.4f} (drift ${drift / 1e6:+,.4f}).",
                        window=(day, end),
                        attribution="project",
                        extra={
                            "day": f"{day:%Y-%m-%d}",
                            "openai_cost_microusd": reported,
                            "our_cost_microusd": ours,
                            "drift_microusd": drift,
                            "our_cost_per_model_microusd": per_model,
                            "unpriced_models": unpriced,
                            "tolerance_microusd": int(tolerance),
                        },
                    )
                )
        day = end
    return findings
