"""Benchmark: the reconciliation sweep over a month of synthetic usage in PostgreSQL.

    .venv/bin/python benchmarks/reconcile.py [--scale 1 2 4]
        [--database-url postgres://postgres@127.0.0.1:5432/reconcile_bench]

The benchmark database is dropped, re-created and migrated. At 1× it holds 30 days of 1-minute
usage buckets over 20 keys × 3 models (2,592,000 rows), 100,000 calls and 2,000,000 metered
responses; 2× and 4× double and quadruple every dimension (60 and 120 days). Rows are bulk loaded
with COPY (psycopg). Reported usage equals what was metered, split over the keys, except for
injected anomalies: usage in gaps between call windows (→ "outside every window" flags), surplus
usage in some minutes (→ "unexplained usage"), some never-attached key-mode calls (→ "unmonitored").

Each scale is reconciled in a fresh child process (DEBUG off, as in production) (`reconcile.reconcile` over the whole period,
cost drift included), which prints its wall time and its peak RSS (ru_maxrss), so the loading
done by the parent does not count. Targets: ≤ 60 s and ≤ 1 GB at 1×, ≤ 2.3× time per doubling.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench_db import recreate_database  # benchmarks/ is on sys.path: the script's own folder

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/reconcile_bench"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
KEYS = [f"key_bench{i:02d}" for i in range(20)]
PROJECT = "proj_bench"
MODELS = ["gpt-realtime", "gpt-realtime-mini", "gpt-realtime-2"]
BASE = {"days": 30, "calls": 100_000, "responses": 2_000_000}




def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime_saas.settings")
    os.environ.setdefault("DEBUG", "true")
    os.environ["RECONCILIATION_OPENAI_KEY_IDS"] = ",".join(KEYS)
    os.environ["RECONCILIATION_OPENAI_PROJECT_IDS"] = PROJECT
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def ts(dt: datetime) -> str:
    return dt.isoformat()


class Copier:
    """COPY rows (text format) into a Django model's table, with every NOT NULL column filled."""

    def __init__(self, cursor, model, given: list[str]):
        fields = [f for f in model._meta.concrete_fields if not f.primary_key]
        self.columns = [f.column for f in fields]
        self.given = [model._meta.get_field(name).column for name in given]
        defaults = {}
        for f in fields:
            if f.column in self.given:
                continue
            auto = getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
            defaults[f.column] = datetime.now(UTC) if auto else f.get_default()
        self.defaults = defaults
        self.order = self.given + list(defaults)
        self.tail = "".join("\t" + self._text(defaults[c]) for c in defaults)
        self.cursor = cursor
        self.table = model._meta.db_table
        self.buffer = io.StringIO()
        self.rows = 0

    @staticmethod
    def _text(value) -> str:
        if value is None:
            return "\\N"
        if isinstance(value, bool):
            return "t" if value else "f"
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, (dict, list)):
            return json.dumps(value)
        return str(value)

    def add(self, *values) -> None:
        self.buffer.write("\t".join(self._text(v) for v in values) + self.tail + "\n")
        self.rows += 1
        if self.rows % 200_000 == 0:
            self.flush()

    def flush(self) -> None:
        data = self.buffer.getvalue()
        if data:
            cols = ", ".join(f'"{c}"' for c in self.order)
            with self.cursor.copy(f'COPY "{self.table}" ({cols}) FROM STDIN') as copy:
                copy.write(data)
        self.buffer = io.StringIO()


def load(scale: int, seed: int = 7) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from sessions.models import Assistant, ModelPrice, RealtimeCall, TokenCounts, UsageRecord
    from sessions.reconciliation.models import CostBucket, Flag, UsageBucket

    rng = random.Random(seed)
    days = BASE["days"] * scale
    n_calls = BASE["calls"] * scale
    n_responses = BASE["responses"] * scale
    minutes = days * 1440
    with connection.cursor() as cur:
        cur.execute(
            "TRUNCATE realtime_flag, realtime_usagerecord, realtime_callevent, realtime_realtimecall, "
            "realtime_usagebucket, realtime_costbucket RESTART IDENTITY CASCADE"
        )
    user, _ = get_user_model().objects.get_or_create(email="bench@example.com")
    assistant = Assistant.objects.create(name="bench", model=MODELS[0])
    prices = {m: ModelPrice.objects.get(model=m) for m in MODELS}

    # A 20-minute gap without any call every day; in a third of them usage shows up anyway.
    gaps = [(d * 1440 + rng.randrange(60, 1300)) for d in range(days)]
    gap_set = {g + i for g in gaps for i in range(-12, 32)}
    leaks = [(g + 5 + i) for g in gaps[::3] for i in range(3)]

    reported: dict[tuple[int, int], int] = {}
    metered_calls = int(n_calls * 0.995)
    per_call, extra = divmod(n_responses, metered_calls)
    connection.ensure_connection()
    conn_cursor = connection.connection.cursor()
    started = time.perf_counter()
    calls = Copier(
        conn_cursor,
        RealtimeCall,
        [
            "public_id",
            "user",
            "assistant",
            "mode",
            "state",
            "model",
            "markup_percent",
            "allowed_seconds",
            "openai_call_id",
            "secret_fingerprint",
            "created_at",
            "started_at",
            "ended_at",
            "expected_end_at",
            "end_reason",
            "credits_held",
            "credits_charged",
        ],
    )
    starts = sorted(rng.randrange(0, minutes * 60 - 600) for _ in range(int(n_calls * 1.05)))
    starts = [s for s in starts if s // 60 not in gap_set][:n_calls]
    assert len(starts) == n_calls, "not enough call starts outside the gaps"
    windows = []
    for i, start_s in enumerate(starts):
        model = i % 3
        length = rng.randrange(120, 480)
        unmetered = i >= metered_calls  # the last 0.5%: key mode, never attached
        start = T0 + timedelta(seconds=start_s)
        end = start + timedelta(seconds=length)
        calls.add(
            f"call_b{i:010d}",
            user.pk,
            assistant.pk,
            "key" if unmetered or i % 10 == 0 else "proxy",
            "expired" if unmetered else "ended",
            MODELS[model],
            50,
            length,
            None if unmetered else f"rtc_b{i:010d}",
            "sha256:" + f"{i:064x}" if unmetered or i % 10 == 0 else "",
            start,
            start,
            end,
            end,
            "unmetered" if unmetered else "call_closed",
            100,
            100,
        )
        windows.append((start_s, length, model, unmetered))
    calls.flush()
    # Call ids are 1..n in insertion order (RESTART IDENTITY).
    records = Copier(
        conn_cursor,
        UsageRecord,
        [
            "call",
            "response_id",
            "kind",
            "at",
            "text_in_tokens",
            "text_cached_tokens",
            "text_out_tokens",
            "audio_in_tokens",
            "audio_cached_tokens",
            "audio_out_tokens",
            "cost_microusd",
        ],
    )
    day_tokens: dict[tuple[int, int], TokenCounts] = {}
    for pk, (start_s, length, model, unmetered) in enumerate(windows, start=1):
        if unmetered:
            for m in range(start_s // 60, (start_s + length) // 60 + 1):
                reported[(m, model)] = reported.get((m, model), 0) + 1_500  # within the allowance
            continue
        count = per_call + (1 if pk <= extra else 0)
        for r in range(count):
            at_s = start_s + rng.randrange(length)
            t_in, t_out, a_in, a_out = (
                rng.randrange(100, 300),
                rng.randrange(20, 80),
                rng.randrange(200, 600),
                rng.randrange(200, 800),
            )
            records.add(
                pk,
                f"resp_{pk}_{r}",
                "response",
                T0 + timedelta(seconds=at_s),
                t_in,
                0,
                t_out,
                a_in,
                0,
                a_out,
                0,
            )
            key = (at_s // 60, model)
            reported[key] = reported.get(key, 0) + t_in + t_out + a_in + a_out
    records.flush()
    surplus = rng.sample(sorted(reported), 100)
    for key in surplus:
        reported[key] += 50_000
    for m in leaks:
        reported[(m, 0)] = reported.get((m, 0), 0) + 2_000
    loaded_calls = time.perf_counter() - started

    buckets = Copier(
        conn_cursor,
        UsageBucket,
        [
            "start_time",
            "width_seconds",
            "project_id",
            "api_key_id",
            "model",
            "input_tokens",
            "input_text_tokens",
            "imported_at",
        ],
    )
    now = datetime.now(UTC)
    for m in range(minutes):
        at = T0 + timedelta(minutes=m)
        for model in range(3):
            total = reported.get((m, model), 0)
            share, rest = divmod(total, len(KEYS))
            for k, key_id in enumerate(KEYS):
                tokens = share + (rest if k == 0 else 0)
                buckets.add(at, 60, PROJECT, key_id, MODELS[model], tokens, tokens, now)
            day = m // 1440
            prev = day_tokens.get((day, model), TokenCounts())
            day_tokens[(day, model)] = TokenCounts(text_in=prev.text_in + total)
    buckets.flush()
    costs = Copier(
        conn_cursor,
        CostBucket,
        ["start_time", "width_seconds", "project_id", "line_item", "amount_microusd", "imported_at"],
    )
    for (day, model), tokens in sorted(day_tokens.items()):
        amount = prices[MODELS[model]].cost_microusd(tokens)
        if day == 3 and model == 0:
            amount = amount * 3 // 2  # one day's bill does not match our prices
        costs.add(
            T0 + timedelta(days=day), 86400, PROJECT, f"{MODELS[model]}, input_text_tokens", amount, now
        )
    costs.flush()
    connection.connection.commit()
    with connection.cursor() as cur:
        for table in (
            "realtime_realtimecall",
            "realtime_usagerecord",
            "realtime_usagebucket",
            "realtime_costbucket",
        ):
            cur.execute(f"VACUUM ANALYZE {table}")
    assert Flag.objects.count() == 0
    return {
        "days": days,
        "calls": calls.rows,
        "responses": records.rows,
        "buckets": buckets.rows,
        "load_seconds": round(time.perf_counter() - started, 1),
        "calls_load_seconds": round(loaded_calls, 1),
        "expected": {
            "outside_window": f"≤ {len(gaps[::3])}",
            "unexplained (hours)": "≤ 100",
            "unmonitored": n_calls - metered_calls,
            "cost_drift": 1,
        },
    }


def run_child(url: str, scale: int) -> dict:
    """In a fresh process: reconcile the whole period; wall time and peak RSS of this process."""
    setup_django(url)
    from django.db.models import Count

    from sessions.reconciliation import reconcile
    from sessions.reconciliation.models import Flag

    days = BASE["days"] * scale
    started = time.perf_counter()
    result = reconcile.reconcile(since=T0, until=T0 + timedelta(days=days))
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    flags = dict(Flag.objects.values_list("kind").annotate(n=Count("id")).values_list("kind", "n"))
    again = time.perf_counter()
    rerun = reconcile.reconcile(since=T0, until=T0 + timedelta(days=days))
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak_mb, 1),
        "minutes": result.minutes,
        "reported_rows": result.reported_rows,
        "metered_rows": result.metered_rows,
        "windows": result.windows,
        "chunks": result.chunks,
        "flags": flags,
        "rerun_seconds": round(time.perf_counter() - again, 2),
        "rerun_created": rerun.created,
        "rerun_updated": rerun.updated,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, nargs="+", default=[1, 2, 4], choices=[1, 2, 4, 8])
    parser.add_argument("--database-url", default=os.environ.get("RECONCILE_BENCH_DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.database_url, args.child)))
        return
    recreate_database(args.database_url)
    setup_django(args.database_url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    results = {}
    for scale in sorted(args.scale):
        info = load(scale)
        print(
            f"{scale}× loaded: {info['days']} days, {info['calls']:,} calls, {info['responses']:,} responses, "
            f"{info['buckets']:,} usage buckets in {info['load_seconds']} s",
            flush=True,
        )
        # The child runs as in production (DEBUG off, so Django keeps no log of the queries).
        child_env = {
            **os.environ,
            "DEBUG": "false",
            "ALLOWED_HOSTS": "localhost",
            "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        }
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(scale), "--database-url", args.database_url],
            capture_output=True,
            text=True,
            check=False,
            env=child_env,
        )
        if out.returncode:
            print(out.stderr[-4000:])
            raise SystemExit(f"reconcile at {scale}× failed")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        results[scale] = result
        print(
            f"{scale}× reconcile: {result['seconds']} s, peak RSS {result['peak_rss_mb']} MB "
            f"({result['minutes']:,} minutes, {result['reported_rows']:,} minute×model rows, "
            f"{result['metered_rows']:,} metered minute×model rows, {result['windows']:,} windows, "
            f"{result['chunks']} chunks); flags {result['flags']}; expected {info['expected']}; "
            f"re-run {result['rerun_seconds']} s → {result['rerun_created']} created, "
            f"{result['rerun_updated']} changed",
            flush=True,
        )
    scales = sorted(results)
    for a, b in zip(scales, scales[1:], strict=False):
        ratio = results[b]["seconds"] / results[a]["seconds"]
        per_doubling = ratio ** (1 / max(1, (b // a).bit_length() - 1))
        print(f"{a}× → {b}×: time × {ratio:.2f} ({per_doubling:.2f} per doubling; target ≤ 2.3)")
    if 1 in results:
        ok = results[1]["seconds"] <= 60 and results[1]["peak_rss_mb"] <= 1024
        print(f"1× targets (≤ 60 s, ≤ 1 GB): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
