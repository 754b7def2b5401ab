"""Compare what OpenAI reports with what we issued and metered, minute by minute; raise flags.

The entry point of reconciliation. The work is split by seam, dependencies running one way
(tasks → reconcile → sweep → checks → streams / flags → locks → models):

- `streams`: the reported (UsageBucket) and metered (UsageRecord) per-minute streams and the call
  windows, each sorted by the database and read in chunks; which usage is ours (`scope_q`);
- `sweep`: the minute sweep (`Sweep`), holding the open windows and a minute's neighbours;
- `checks`: usage outside every window, unexplained usage, call overruns, unmonitored calls, cost
  drift;
- `flags`: findings → Flag rows (upserted by natural key, locked in primary-key order) and the
  staff mail;
- `locks`: the row locks (the flags in primary-key order, a key-mode call not yet reconciled).

Flags are upserted by a natural key and their per-minute evidence is keyed by minute, so re-running
a window (or finishing one that was killed half-way) rewrites the same values and adds no row. The
names below are re-exported so callers (keymode, tasks, the supervisor, the dashboard, tests) keep
one import.
"""

from datetime import datetime

from django.utils import timezone

from sessions.reconciliation.checks import (
    WORST_CASE_PER_MINUTE,
    cost_drift_findings,
    neighbour_surplus,
    our_cost_of_usage,
    tolerance_tokens,
    unexplained_tokens,
)
from sessions.reconciliation.flags import Finding, notify_staff, upsert
from sessions.reconciliation.streams import (
    METERED_COLUMNS,
    MINUTE,
    USAGE_COLUMNS,
    CallWindow,
    EpochMinute,
    call_windows,
    epoch_minute,
    scope_q,
    tuned_session,
    window_end,
)
from sessions.reconciliation.sweep import ReconcileResult, Sweep

__all__ = [
    "METERED_COLUMNS",
    "MINUTE",
    "USAGE_COLUMNS",
    "WORST_CASE_PER_MINUTE",
    "CallWindow",
    "EpochMinute",
    "Finding",
    "ReconcileResult",
    "call_windows",
    "cost_drift_findings",
    "epoch_minute",
    "neighbour_surplus",
    "notify_staff",
    "our_cost_of_usage",
    "reconcile",
    "scope_q",
    "tolerance_tokens",
    "unexplained_tokens",
    "upsert_flags",
    "window_end",
]


def reconcile(
    *, since: datetime, until: datetime, chunk_size: int | None = None, cost_days: bool = True
) -> ReconcileResult:
    """Reconcile [since, until) (rounded out to whole minutes). Safe to re-run and to re-run after a
    crash: every flag is upserted by its natural key."""
    with tuned_session():
        return Sweep(since=since, until=until, chunk_size=chunk_size, cost_days=cost_days).run()


def upsert_flags(findings: list[Finding], result: ReconcileResult | None = None) -> ReconcileResult:
    """Write findings as flags (upserted by natural key; review fields untouched; high ones mail
    staff once, after commit). Nests in the caller's transaction if there is one."""
    now = timezone.now()
    result = result or ReconcileResult(since=now, until=now)
    result.add(upsert(findings))
    return result
