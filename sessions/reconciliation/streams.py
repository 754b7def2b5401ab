"""The three streams the sweep reads, each sorted by the database and read in chunks
(`iterator(chunk_size=…)`), so memory never holds the period:

- reported: UsageBucket totals per (minute, model), within the scope that is ours (settings);
- metered: the supervisor's UsageRecord totals per (epoch minute, model);
- windows: our calls by start, each open from its creation to its end (expected end for a
  key-mode call that never reported its call id; the real end otherwise), widened by a grace.

Also what decides which usage is ours (`scope_q`), where a call's window ends (`window_end`) and
which columns hold each token class on either side (`METERED_COLUMNS`, `USAGE_COLUMNS`), which the
key-mode check shares. Reads only; nothing here writes.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import BigIntegerField, F, Func, Q, Sum

from sessions.models import CallMode, Cause, RealtimeCall, TokenColumns, UsageBucket, UsageRecord

MINUTE = timedelta(minutes=1)
RECENT_WINDOWS = 3  # how many recently ended windows an "outside every window" flag names


# --- token columns -------------------------------------------------------------------------------

# Our token class -> its column on RealtimeCall and UsageRecord, read from the one model that
# declares them (sessions.models.TokenColumns: `<modality>_<direction>_tokens`).
METERED_COLUMNS = {f.name.removesuffix("_tokens"): f.name for f in TokenColumns._meta.get_fields()}
# How UsageBucket (the Usage API's result) names our directions: `text_cached` ->
# `input_cached_text_tokens`.
_USAGE_DIRECTIONS = {"in": "input", "cached": "input_cached", "out": "output"}


def _usage_column(token_class: str) -> str:
    modality, direction = token_class.split("_")
    column = f"{_USAGE_DIRECTIONS[direction]}_{modality}_tokens"
    UsageBucket._meta.get_field(column)  # fails at import if the two namings ever part ways
    return column


# Our token class -> the UsageBucket column holding it (uncached input, as the Usage API reports it).
USAGE_COLUMNS = {token_class: _usage_column(token_class) for token_class in METERED_COLUMNS}


# --- scope ---------------------------------------------------------------------------------------


def scope_q() -> Q:
    """Usage buckets that are ours. A bucket with a key id we configured is attributed by key; one
    without a key id falls back to project + minute; a bucket of some other key is not ours."""
    q = Q(width_seconds=60)
    if settings.RECONCILIATION_OPENAI_PROJECT_IDS:
        q &= Q(project_id__in=settings.RECONCILIATION_OPENAI_PROJECT_IDS) | Q(project_id="")
    if settings.RECONCILIATION_OPENAI_KEY_IDS:
        q &= Q(api_key_id__in=settings.RECONCILIATION_OPENAI_KEY_IDS) | Q(api_key_id="")
    return q


# --- reported and metered ------------------------------------------------------------------------


def reported(since: datetime, until: datetime, chunk: int) -> Iterator[tuple[datetime, dict[str, int]]]:
    """(minute, {model: total tokens}) in minute order."""
    rows = (
        UsageBucket.objects.filter(scope_q(), start_time__gte=since, start_time__lt=until)
        .values("start_time", "model")
        .annotate(tokens=Sum(F("input_tokens") + F("output_tokens")))
        .order_by("start_time", "model")
        .values_list("start_time", "model", "tokens")
    )
    current: datetime | None = None
    models: dict[str, int] = {}
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


def metered(since: datetime, until: datetime, chunk: int) -> Iterator[tuple[int, str, int]]:
    """(epoch minute, model, metered tokens) in minute order."""
    tokens = sum(F(column) for column in METERED_COLUMNS.values())
    rows = (
        UsageRecord.objects.filter(at__gte=since, at__lt=until)
        .annotate(minute=EpochMinute("at"))
        .values("minute", "call__model")
        .annotate(metered_tokens=Sum(tokens))  # not `tokens`: UsageRecord has a property of that name
        .order_by("minute", "call__model")
        .values_list("minute", "call__model", "metered_tokens")
    )
    for minute, model, total in rows.iterator(chunk_size=chunk):
        yield minute, model, int(total or 0)


# --- call windows --------------------------------------------------------------------------------


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


def windows(since: datetime, until: datetime, grace: timedelta, chunk: int) -> Iterator[CallWindow]:
    """The windows that may be open in [since, until) (widened by the grace), by start."""
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
    return list(windows(since, until, grace, settings.RECONCILIATION_CHUNK_SIZE))


def window_end(call: RealtimeCall) -> datetime:
    """The end of a call's window, as the sweep sees it (see `CallWindow`)."""
    return _window_end(
        call.expected_end_at, call.ended_at, _is_unmetered(call.mode, call.openai_call_id, call.end_reason)
    )


def windows_ended_before(since: datetime, grace: timedelta) -> list[CallWindow]:
    """The windows that closed last before `since` (names for an "outside every window" flag)."""
    rows = (
        RealtimeCall.objects.filter(created_at__lt=since)
        .exclude(state="failed")
        .order_by("-expected_end_at", "-pk")
        .values_list(*_WINDOW_FIELDS)[: RECENT_WINDOWS * 4]
    )
    ended = [w for w in (_to_window(row, -1) for row in rows) if w.end + grace < since]
    return sorted(ended)[-RECENT_WINDOWS:]


# --- the database session ------------------------------------------------------------------------


@contextmanager
def tuned_session():
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
