"""The minute sweep: one pass over the three streams (streams.py), judging each minute with its
neighbours (checks.py) and flushing findings as flags every chunk (flags.py).

Memory holds one minute's figures and its neighbours', the call windows open at that minute (a heap
keyed by window end), a few recently closed windows (names for evidence) and the findings of the
current chunk — never the whole period. Sorting is done by the database (O(n log n)); the sweep
itself is O((n + m) log m).
"""

import heapq
import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings

from sessions.reconciliation import checks, flags, streams
from sessions.reconciliation.flags import Finding, Upserted
from sessions.reconciliation.streams import MINUTE, RECENT_WINDOWS, CallWindow, epoch_minute

logger = logging.getLogger(__name__)

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

    def add(self, upserted: Upserted) -> None:
        """Count what one flag upsert wrote."""
        self.created += upserted.created
        self.updated += upserted.updated
        for pk in upserted.flags:
            if pk not in self.flags:
                self.flags.append(pk)


class Sweep:
    """One reconciliation of [since, until) (rounded out to whole minutes): `run()` once."""

    def __init__(
        self, *, since: datetime, until: datetime, chunk_size: int | None = None, cost_days: bool = True
    ):
        self.chunk = chunk_size or settings.RECONCILIATION_CHUNK_SIZE
        self.since = since.replace(second=0, microsecond=0)
        self.until = until.replace(second=0, microsecond=0) + (
            MINUTE if until.second or until.microsecond else timedelta()
        )
        self.cost_days = cost_days
        self.grace = timedelta(seconds=settings.RECONCILIATION_WINDOW_GRACE_SECONDS)
        self.result = ReconcileResult(since=self.since, until=self.until)

        # Call windows: those not opened yet come from the stream; the open ones sit in a heap by
        # end; the last few closed ones are kept to name in "outside every window" evidence.
        self._windows: Iterator[CallWindow] = streams.windows(self.since, self.until, self.grace, self.chunk)
        self._next_window = next(self._windows, None)
        self._open: list[CallWindow] = []
        self._open_unmetered: dict[str, int] = {}  # model -> unmetered windows open
        self._recent: deque[CallWindow] = deque(
            streams.windows_ended_before(self.since, self.grace), maxlen=RECENT_WINDOWS
        )

        # Metered figures of the current minute and its two neighbours.
        self._metered_rows = streams.metered(self.since - MINUTE, self.until + MINUTE, self.chunk)
        self._next_metered = next(self._metered_rows, None)
        self._metered: dict[int, dict[str, int]] = {}  # epoch minute -> model -> tokens

        self._pending: dict[str, Finding] = {}  # natural key -> finding, until the next flush
        self._rows_in_chunk = 0

    def run(self) -> ReconcileResult:
        result = self.result
        # Look one minute ahead so a minute is judged with both neighbours' figures.
        reported_at: dict[datetime, dict[str, int]] = {}
        previous: datetime | None = None
        for minute, models in streams.reported(self.since, self.until, self.chunk):
            reported_at[minute] = models
            result.minutes += 1
            result.reported_rows += len(models)
            self._rows_in_chunk += len(models)
            if previous is not None:
                self._examine(previous, reported_at[previous], reported_at)
                for old in [m for m in reported_at if m < minute - MINUTE]:
                    del reported_at[old]
            previous = minute
            if self._rows_in_chunk >= self.chunk:
                self._flush()
        if previous is not None:
            self._examine(previous, reported_at[previous], reported_at)
        self._flush()

        for finding in (
            *checks.call_overruns(self.since, self.until, self.grace),
            *checks.unmonitored_calls(self.since, self.until),
        ):
            self._pending[finding.natural_key] = finding
        if self.cost_days:
            for finding in checks.cost_drift_findings(since=self.since, until=self.until):
                self._pending[finding.natural_key] = finding
        self._flush()
        logger.info(
            "reconciled %s → %s: %d minute(s), %d flag(s) created, %d updated",
            self.since,
            self.until,
            result.minutes,
            result.created,
            result.updated,
        )
        return result

    def _flush(self) -> None:
        self.result.add(flags.upsert(list(self._pending.values())))
        self._pending.clear()
        self._rows_in_chunk = 0
        self.result.chunks += 1
        if after_chunk_hook is not None:
            after_chunk_hook(self.result.chunks)

    def _advance_to(self, minute: datetime) -> None:
        """Open the windows started by `minute`, close those ended before it (both widened by the
        grace), and hold the metered figures of minute - 1 … minute + 1."""
        while self._next_window is not None and self._next_window.start < minute + MINUTE + self.grace:
            window = self._next_window
            heapq.heappush(self._open, window)
            if window.unmetered:
                self._open_unmetered[window.model] = self._open_unmetered.get(window.model, 0) + 1
            self.result.windows += 1
            self._next_window = next(self._windows, None)
        while self._open and self._open[0].end + self.grace < minute:
            closed = heapq.heappop(self._open)
            if closed.unmetered:
                self._open_unmetered[closed.model] -= 1
            self._recent.append(closed)
        # Metered figures for minute - 1 .. minute + 1 (clock skew across a minute boundary).
        at_int = epoch_minute(minute)
        while self._next_metered is not None and self._next_metered[0] <= at_int + 1:
            at, model, tokens = self._next_metered
            slot = self._metered.setdefault(at, {})
            slot[model] = slot.get(model, 0) + tokens
            self.result.metered_rows += 1
            self._next_metered = next(self._metered_rows, None)
        for old in [m for m in self._metered if m < at_int - 1]:
            del self._metered[old]

    def _examine(
        self, minute: datetime, models: dict[str, int], reported_at: dict[datetime, dict[str, int]]
    ) -> None:
        total = sum(models.values())
        if total <= 0:
            return
        self._advance_to(minute)
        if not self._open:
            checks.record_outside_window(self._pending, minute=minute, total=total, recent=self._recent)
            return
        checks.record_unexplained_usage(
            self._pending,
            minute=minute,
            models=models,
            metered=self._metered,
            reported_at=reported_at,
            open_unmetered=self._open_unmetered,
            open_windows=len(self._open),
        )
