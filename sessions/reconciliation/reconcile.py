"""Compare what OpenAI reports with what we issued and metered, minute by minute; raise flags.

The comparison is one sweep over three streams, each sorted by the database and read in chunks
(`iterator(chunk_size=…)`), so memory holds one minute's figures, the call windows open at that
minute (a heap keyed by window end) and the flags found so far — never the whole period:

- reported: UsageBucket totals per (minute, model), within the scope that is ours (settings);
- metered: the supervisor's UsageRecord totals per (minute, model);
- windows: our calls by start, each open from its creation to its end (expected end for a
  key-mode call that never reported its call id; the real end otherwise), widened by a grace.

Sorting is done by the database (O(n log n)); the sweep itself is O((n + m) log m). Flags are
upserted by a natural key and their per-minute evidence is keyed by minute, so re-running a
window (or finishing one that was killed half-way) rewrites the same values and adds no row.
"""

import heapq
import logging
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.db.models import BigIntegerField, Count, F, Func, Max, Min, Q, Sum
from django.utils import timezone

from sessions.models import (
    WORST_CASE_TOKENS_PER_MINUTE,
    CallMode,
    Cause,
    ModelPrice,
    RealtimeCall,
    TokenCounts,
)
from sessions.reconciliation.models import CostBucket, Flag, FlagKind, FlagStatus, Severity, UsageBucket

logger = logging.getLogger(__name__)

MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)
WORST_CASE_PER_MINUTE = sum(WORST_CASE_TOKENS_PER_MINUTE.as_dict().values())
RECENT_WINDOWS = 3  # how many recently ended windows an "outside every window" flag names
MAX_EVIDENCE_MINUTES = 720

# Tests set this to a callable raising after a chunk was flushed, to simulate a killed task.
after_chunk_hook: Callable[[int], None] | None = None


@dataclass
class ReconcileResult:
    since: datetime
    until: datetime
    minutes: int = 0
    reported_rows: int = 0
    metered_rows: int = 0
    windows: int = 0
    chunks: int = 0
    created: int = 0
    updated: int = 0
    flags: list[int] = field(default_factory=list)


@dataclass(order=True)
class CallWindow:
    """A call's window: from its creation to its end (the expected end when nobody metered it).
    Ordered by end, for the sweep's heap."""

    end: datetime
    seq: int
    pk: int = field(compare=False)
    public_id: str = field(compare=False)
    mode: str = field(compare=False)
    model: str = field(compare=False)
    unmetered: bool = field(compare=False)
    fingerprint: str = field(compare=False)
    user_id: int = field(compare=False)
    start: datetime = field(compare=False)
    expected_end: datetime = field(compare=False)

    def open_at(self, minute: datetime, grace: timedelta) -> bool:
        """Whether the sweep counts this window open at `minute` (both ends widened by the grace)."""
        return self.start < minute + MINUTE + grace and self.end + grace >= minute

    def describe(self) -> dict:
        return {
            "call": self.public_id,
            "mode": self.mode,
            "model": self.model,
            "secret_fingerprint": self.fingerprint or None,
            "window_start": self.start.isoformat(),
            "expected_end": self.expected_end.isoformat(),
            "window_end": self.end.isoformat(),
            "metered": not self.unmetered,
        }


# --- scope and attribution -----------------------------------------------------------------------


def scope_q() -> Q:
    """Usage buckets that are ours. A bucket with a key id we configured is attributed by key; one
    without a key id falls back to project + minute; a bucket of some other key is not ours."""
    q = Q(width_seconds=60)
    if settings.RECONCILIATION_OPENAI_PROJECT_IDS:
        q &= Q(project_id__in=settings.RECONCILIATION_OPENAI_PROJECT_IDS) | Q(project_id="")
    if settings.RECONCILIATION_OPENAI_KEY_IDS:
        q &= Q(api_key_id__in=settings.RECONCILIATION_OPENAI_KEY_IDS) | Q(api_key_id="")
    return q


def tolerance_tokens(metered: int) -> float:
    """How far reported usage may exceed what explains it before it is flagged: the larger of
    RECONCILIATION_TOLERANCE_TOKENS and RECONCILIATION_TOLERANCE_PERCENT of the metered tokens."""
    return max(settings.RECONCILIATION_TOLERANCE_TOKENS, settings.RECONCILIATION_TOLERANCE_PERCENT / 100 * metered)


def neighbour_surplus(
    minute: datetime, model: str, *, metered: dict[int, dict[str, int]], reported_at: dict[datetime, dict[str, int]]
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


def _attribution(api_key_ids: set[str]) -> str:
    known = set(settings.RECONCILIATION_OPENAI_KEY_IDS)
    return (
        "key" if api_key_ids and (not known or api_key_ids <= known) and "" not in api_key_ids else "project"
    )


# --- the three streams ---------------------------------------------------------------------------


def _reported(since: datetime, until: datetime, chunk: int) -> Iterator[tuple[datetime, dict[str, int]]]:
    """(minute, {model: total tokens}) in minute order."""
    rows = (
        UsageBucket.objects.filter(scope_q(), start_time__gte=since, start_time__lt=until)
        .values("start_time", "model")
        .annotate(tokens=Sum(F("input_tokens") + F("output_tokens")))
        .order_by("start_time", "model")
        .values_list("start_time", "model", "tokens")
    )
    current, models = None, {}
    for minute, model, tokens in rows.iterator(chunk_size=chunk):
        if minute != current:
            if current is not None:
                yield current, models
            current, models = minute, {}
        models[model] = models.get(model, 0) + int(tokens or 0)
    if current is not None:
        yield current, models


class EpochMinute(Func):
    """Whole minutes since the Unix epoch, as an integer: grouping by it needs no datetime
    conversion per row (TruncMinute's converters cost more than the query on large periods)."""

    output_field = BigIntegerField()

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(
            compiler, connection, template="FLOOR(EXTRACT(EPOCH FROM %(expressions)s) / 60)::bigint"
        )

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(
            compiler, connection, template="(CAST(strftime('%%%%s', %(expressions)s) AS INTEGER) / 60)"
        )


def epoch_minute(dt: datetime) -> int:
    """Whole minutes since the Unix epoch (the metered stream's minute key)."""
    return int(dt.timestamp()) // 60


def _metered(since: datetime, until: datetime, chunk: int) -> Iterator[tuple[int, str, int]]:
    """(epoch minute, model, metered tokens) in minute order."""
    from sessions.models import UsageRecord

    tokens = sum(F(f"{name}_tokens") for name in TokenCounts.CLASSES)
    rows = (
        UsageRecord.objects.filter(at__gte=since, at__lt=until)
        .annotate(minute=EpochMinute("at"))
        .values("minute", "call__model")
        .annotate(tokens=Sum(tokens))
        .order_by("minute", "call__model")
        .values_list("minute", "call__model", "tokens")
    )
    for minute, model, total in rows.iterator(chunk_size=chunk):
        yield minute, model, int(total or 0)


def _window_end(expected_end, ended_at, unmetered: bool) -> datetime:
    # A key-mode call nobody metered may run until its expected end whatever the sweep recorded.
    if unmetered or ended_at is None:
        return expected_end
    return ended_at


def _is_unmetered(mode: str, openai_call_id, end_reason: str) -> bool:
    return (mode == CallMode.KEY and not openai_call_id) or end_reason == Cause.UNMETERED


_WINDOW_FIELDS = (
    "pk",
    "public_id",
    "mode",
    "model",
    "openai_call_id",
    "secret_fingerprint",
    "created_at",
    "expected_end_at",
    "ended_at",
    "end_reason",
    "user_id",
)


def _to_window(row, seq: int) -> CallWindow:
    pk, public_id, mode, model, openai_call_id, fingerprint, created, expected_end, ended, end_reason, uid = (
        row
    )
    unmetered = _is_unmetered(mode, openai_call_id, end_reason)
    return CallWindow(
        end=_window_end(expected_end, ended, unmetered),
        seq=seq,
        pk=pk,
        public_id=public_id,
        mode=mode,
        model=model,
        unmetered=unmetered,
        fingerprint=fingerprint,
        user_id=uid,
        start=created,
        expected_end=expected_end,
    )


def _windows(since: datetime, until: datetime, grace: timedelta, chunk: int) -> Iterator[CallWindow]:
    rows = (
        RealtimeCall.objects.filter(created_at__lt=until + grace)
        .filter(Q(expected_end_at__gte=since - grace) | Q(ended_at__gte=since - grace))
        .exclude(state="failed")
        .order_by("created_at", "pk")
        .values_list(*_WINDOW_FIELDS)
    )
    for seq, row in enumerate(rows.iterator(chunk_size=chunk)):
        window = _to_window(row, seq)
        if window.end + grace >= since:
            yield window


def call_windows(*, since: datetime, until: datetime) -> list[CallWindow]:
    """Our calls' windows that may be open in [since, until) (widened by the grace), by start: each
    from the call's creation to its end (the expected end for a call nobody metered)."""
    grace = timedelta(seconds=settings.RECONCILIATION_WINDOW_GRACE_SECONDS)
    return list(_windows(since, until, grace, settings.RECONCILIATION_CHUNK_SIZE))


def window_end(call: RealtimeCall) -> datetime:
    """The end of a call's window, as the sweep sees it (see `CallWindow`)."""
    return _window_end(call.expected_end_at, call.ended_at, _is_unmetered(call.mode, call.openai_call_id,
                                                                          call.end_reason))


def _ended_before(since: datetime, grace: timedelta) -> list[CallWindow]:
    """The windows that closed last before `since` (names for an "outside every window" flag)."""
    rows = (
        RealtimeCall.objects.filter(created_at__lt=since)
        .exclude(state="failed")
        .order_by("-expected_end_at", "-pk")
        .values_list(*_WINDOW_FIELDS)[: RECENT_WINDOWS * 4]
    )
    windows = [w for w in (_to_window(row, -1) for row in rows) if w.end + grace < since]
    return sorted(windows)[-RECENT_WINDOWS:]


# --- flags -----------------------------------------------------------------------------------------


@dataclass
class Finding:
    kind: str
    severity: str
    natural_key: str
    summary: str
    model: str = ""
    project_id: str = ""
    api_key_id: str = ""
    attribution: str = ""
    call_id: int | None = None
    user_id: int | None = None
    minutes: dict = field(default_factory=dict)  # iso minute -> figures (merged by key on re-run)
    extra: dict = field(default_factory=dict)
    window: tuple[datetime, datetime] | None = None
    reported: int = 0
    metered: int = 0


_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2}


def _upsert(findings: list[Finding], result: ReconcileResult) -> None:
    """Write findings as flags in one transaction; review fields are never touched."""
    if not findings:
        return
    now = timezone.now()
    notify: list[int] = []
    with transaction.atomic():
        existing = {
            f.natural_key: f
            for f in Flag.objects.select_for_update().filter(
                natural_key__in=[x.natural_key for x in findings]
            )
        }
        for finding in findings:
            flag = existing.get(finding.natural_key)
            evidence = dict(flag.evidence) if flag else {}
            minutes = dict(evidence.get("minutes") or {})
            minutes.update(finding.minutes)
            if len(minutes) > MAX_EVIDENCE_MINUTES:
                minutes = dict(sorted(minutes.items())[-MAX_EVIDENCE_MINUTES:])
            evidence.update(finding.extra)
            if minutes:
                evidence["minutes"] = dict(sorted(minutes.items()))
                keys = sorted(minutes)
                start = datetime.fromisoformat(keys[0])
                end = datetime.fromisoformat(keys[-1]) + MINUTE
                if flag:  # the window only grows: minutes kept from earlier runs still count
                    start, end = min(start, flag.window_start), max(end, flag.window_end)
                reported = sum(m.get("reported", 0) for m in minutes.values())
                metered = sum(m.get("metered", 0) for m in minutes.values())
                if finding.kind == FlagKind.OUTSIDE_WINDOW:
                    # Totals come from the merged minutes: a flag may span chunks and runs.
                    evidence["tokens_after_window"] = reported
            else:
                start, end = finding.window
                reported, metered = finding.reported, finding.metered
            severity = finding.severity
            if flag and _RANK[flag.severity] > _RANK[severity]:
                severity = flag.severity  # a flag found in pieces (chunks, runs) keeps its worst minute
            fields = {
                "kind": finding.kind,
                "severity": severity,
                "window_start": start,
                "window_end": end,
                "project_id": finding.project_id,
                "api_key_id": finding.api_key_id,
                "model": finding.model,
                "attribution": finding.attribution,
                "call_id": finding.call_id,
                "user_id": finding.user_id,
                "reported_tokens": reported,
                "metered_tokens": metered,
                "summary": finding.summary[:500],
                "evidence": evidence,
                "last_seen_at": now,
            }
            if flag is None:
                flag = Flag.objects.create(natural_key=finding.natural_key, first_seen_at=now, **fields)
                existing[finding.natural_key] = flag
                result.created += 1
            else:
                changed = [
                    name
                    for name, value in fields.items()
                    if name != "last_seen_at" and getattr(flag, name) != value
                ]
                for name, value in fields.items():
                    setattr(flag, name, value)
                flag.save(update_fields=[*fields])
                result.updated += bool(changed)
            if flag.pk not in result.flags:
                result.flags.append(flag.pk)
            if flag.severity == Severity.HIGH and flag.notified_at is None and flag.status == FlagStatus.OPEN:
                notify.append(flag.pk)
        if notify:
            transaction.on_commit(lambda: notify_staff(notify))


def upsert_flags(findings: list[Finding], result: ReconcileResult | None = None) -> ReconcileResult:
    """Write findings as flags (upserted by natural key; review fields untouched; high ones mail
    staff once, after commit). Nests in the caller's transaction if there is one."""
    now = timezone.now()
    result = result or ReconcileResult(since=now, until=now)
    _upsert(findings, result)
    return result


def notify_staff(flag_pks: list[int]) -> int:
    """Email staff about high-severity flags, once each (a conditional UPDATE claims the flag)."""
    sent = 0
    for pk in flag_pks:
        if not Flag.objects.filter(pk=pk, notified_at__isnull=True).update(notified_at=timezone.now()):
            continue
        flag = Flag.objects.get(pk=pk)
        if settings.STAFF_NOTIFY_EMAILS:
            send_mail(
                subject=f"[realtime_saas] {flag.get_kind_display()} ({flag.severity})",
                message=f"{flag.summary}\n\nWindow: {flag.window_start:%Y-%m-%d %H:%M} – "
                f"{flag.window_end:%Y-%m-%d %H:%M} UTC\nReview it in the admin: flag #{flag.pk}.",
                from_email=None,
                recipient_list=settings.STAFF_NOTIFY_EMAILS,
                fail_silently=True,
            )
            sent += 1
    return sent


def _bucket_detail(minute: datetime) -> list[dict]:
    return [
        {"project_id": p, "api_key_id": k, "model": m, "tokens": int(t)}
        for p, k, m, t in UsageBucket.objects.filter(scope_q(), start_time=minute)
        .annotate(tokens=F("input_tokens") + F("output_tokens"))
        .order_by("project_id", "api_key_id", "model")
        .values_list("project_id", "api_key_id", "model", "tokens")
    ]


# --- the sweep -------------------------------------------------------------------------------------


@contextmanager
def _tuned_session():
    """On PostgreSQL: the sweep reads whole aggregates through server-side cursors, so plan for all
    rows (not the first 10%), sort in memory, and skip JIT compilation (seconds per query here)."""
    if connection.vendor != "postgresql":
        yield
        return
    names = ("cursor_tuple_fraction", "work_mem", "jit")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('cursor_tuple_fraction'), current_setting('work_mem'), "
            "current_setting('jit')"
        )
        saved = cursor.fetchone()
        cursor.execute(
            "SELECT set_config('cursor_tuple_fraction', '1.0', false), "
            "set_config('work_mem', '64MB', false), set_config('jit', 'off', false)"
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            for name, value in zip(names, saved, strict=True):
                cursor.execute("SELECT set_config(%s, %s, false)", [name, value])


def reconcile(
    *, since: datetime, until: datetime, chunk_size: int | None = None, cost_days: bool = True
) -> ReconcileResult:
    """Reconcile [since, until) (rounded out to whole minutes). Safe to re-run and to re-run after a
    crash: every flag is upserted by its natural key."""
    with _tuned_session():
        return _reconcile(since=since, until=until, chunk_size=chunk_size, cost_days=cost_days)


def _reconcile(
    *, since: datetime, until: datetime, chunk_size: int | None, cost_days: bool
) -> ReconcileResult:
    chunk = chunk_size or settings.RECONCILIATION_CHUNK_SIZE
    since = since.replace(second=0, microsecond=0)
    until = until.replace(second=0, microsecond=0) + (
        MINUTE if until.second or until.microsecond else timedelta()
    )
    grace = timedelta(seconds=settings.RECONCILIATION_WINDOW_GRACE_SECONDS)
    tol_tokens = settings.RECONCILIATION_TOLERANCE_TOKENS
    result = ReconcileResult(since=since, until=until)

    windows = _windows(since, until, grace, chunk)
    next_window = next(windows, None)
    open_heap: list[CallWindow] = []
    open_unmetered: dict[str, int] = {}
    recent: deque[CallWindow] = deque(_ended_before(since, grace), maxlen=RECENT_WINDOWS)

    metered_rows = _metered(since - MINUTE, until + MINUTE, chunk)
    next_metered = next(metered_rows, None)
    metered: dict[int, dict[str, int]] = {}  # epoch minute -> model -> tokens

    pending: dict[str, Finding] = {}
    rows_in_chunk = 0

    def flush() -> None:
        nonlocal rows_in_chunk
        _upsert(list(pending.values()), result)
        pending.clear()
        rows_in_chunk = 0
        result.chunks += 1
        if after_chunk_hook is not None:
            after_chunk_hook(result.chunks)

    def advance_to(minute: datetime) -> None:
        nonlocal next_window, next_metered
        while next_window is not None and next_window.start < minute + MINUTE + grace:
            heapq.heappush(open_heap, next_window)
            if next_window.unmetered:
                open_unmetered[next_window.model] = open_unmetered.get(next_window.model, 0) + 1
            result.windows += 1
            next_window = next(windows, None)
        while open_heap and open_heap[0].end + grace < minute:
            closed = heapq.heappop(open_heap)
            if closed.unmetered:
                open_unmetered[closed.model] -= 1
            recent.append(closed)
        # Metered figures for minute - 1 .. minute + 1 (clock skew across a minute boundary).
        at_int = epoch_minute(minute)
        while next_metered is not None and next_metered[0] <= at_int + 1:
            at, model, tokens = next_metered
            slot = metered.setdefault(at, {})
            slot[model] = slot.get(model, 0) + tokens
            result.metered_rows += 1
            next_metered = next(metered_rows, None)
        for old in [m for m in metered if m < at_int - 1]:
            del metered[old]

    def examine(minute: datetime, models: dict[str, int], reported_at: dict) -> None:
        total = sum(models.values())
        if total <= 0:
            return
        advance_to(minute)
        key_minute = minute.isoformat()
        if not open_heap:
            names = [w.describe() for w in reversed(recent)]
            subject = recent[-1] if recent else None
            nk = (
                f"outside_window:{subject.public_id}" if subject else f"outside_window:none:{minute:%Y-%m-%d}"
            )
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
                        + (
                            f", expected to end at {subject.expected_end:%Y-%m-%d %H:%M:%S} UTC."
                            if subject
                            else "."
                        )
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
            return
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
                            "tokens": tol_tokens,
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
                "open_windows": len(open_heap),
            }
            if excess > 10 * tolerance_tokens(here):
                finding.severity = Severity.HIGH

    # Look one minute ahead so a minute is judged with both neighbours' figures.
    reported_at: dict[datetime, dict[str, int]] = {}
    previous: datetime | None = None
    for minute, models in _reported(since, until, chunk):
        reported_at[minute] = models
        result.minutes += 1
        result.reported_rows += len(models)
        rows_in_chunk += len(models)
        if previous is not None:
            examine(previous, reported_at[previous], reported_at)
            for old in [m for m in reported_at if m < minute - MINUTE]:
                del reported_at[old]
        previous = minute
        if rows_in_chunk >= chunk:
            flush()
    if previous is not None:
        examine(previous, reported_at[previous], reported_at)
    flush()

    for finding in (*_overruns(since, until, grace), *_unmonitored(since, until)):
        pending[finding.natural_key] = finding
    if cost_days:
        for finding in _cost_drift(since, until):
            pending[finding.natural_key] = finding
    flush()
    logger.info(
        "reconciled %s → %s: %d minute(s), %d flag(s) created, %d updated",
        since,
        until,
        result.minutes,
        result.created,
        result.updated,
    )
    return result


# --- per-call checks ---------------------------------------------------------------------------


def _overruns(since: datetime, until: datetime, grace: timedelta) -> list[Finding]:
    """Responses our supervisor metered after a call's expected end or after our hangup."""
    from sessions.models import UsageRecord

    tokens = sum(F(f"{name}_tokens") for name in TokenCounts.CLASSES)
    late = (
        UsageRecord.objects.filter(at__gte=since, at__lt=until)
        .filter(
            Q(at__gt=F("call__expected_end_at") + grace)
            | Q(call__ending_at__isnull=False, at__gt=F("call__ending_at") + grace)
        )
        .values("call")
        .annotate(tokens=Sum(tokens), first=Min("at"), last=Max("at"), responses=Count("id"))
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
                + f": {row['tokens']:,} tokens in {row['responses']} response(s).",
                model=call.model,
                attribution="call",
                call_id=call.pk,
                user_id=call.user_id,
                window=(
                    row["first"].replace(second=0, microsecond=0),
                    row["last"].replace(second=0, microsecond=0) + MINUTE,
                ),
                reported=int(row["tokens"] or 0),
                metered=int(row["tokens"] or 0),
                extra={
                    "call": call.public_id,
                    "expected_end": call.expected_end_at.isoformat(),
                    "hangup_at": call.ending_at.isoformat() if call.ending_at else None,
                    "first_late_response": row["first"].isoformat(),
                    "last_late_response": row["last"].isoformat(),
                    "late_responses": row["responses"],
                    "late_tokens": int(row["tokens"] or 0),
                },
            )
        )
    return findings


def _unmonitored(since: datetime, until: datetime) -> list[Finding]:
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


# --- cost drift ---------------------------------------------------------------------------------

# Our token class -> the UsageBucket column holding it (uncached input, as the Usage API reports it).
USAGE_COLUMNS = {
    "text_in": "input_text_tokens",
    "text_cached": "input_cached_text_tokens",
    "text_out": "output_text_tokens",
    "audio_in": "input_audio_tokens",
    "audio_cached": "input_cached_audio_tokens",
    "audio_out": "output_audio_tokens",
}


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
    )
    for row in rows:
        price = prices.get(row["model"])
        if price is None:
            unpriced.append(row["model"])
            continue
        per_model[row["model"]] = price.cost_microusd(TokenCounts(**{c: int(row[c] or 0) for c in USAGE_COLUMNS}))
    return sum(per_model.values()), per_model, unpriced


def cost_drift_findings(*, since: datetime, until: datetime) -> list[Finding]:
    """Cost drift of each whole, ended day in [since, until) that has Costs API figures."""
    return _cost_drift(since, until)


def _cost_drift(since: datetime, until: datetime) -> list[Finding]:
    """Each whole day touched by the window that has ended and has Costs API figures."""
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
