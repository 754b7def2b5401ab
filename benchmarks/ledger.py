"""Benchmark: hold + settle throughput and latency on PostgreSQL, against a bare-insert baseline.

    .venv/bin/python benchmarks/ledger.py [--workers 16] [--seconds 8]
        [--database-url postgres://postgres@127.0.0.1:5432/ledger_bench] [--redis-url redis://…/12]

The database is dropped, re-created and migrated. N worker processes (16 by default, each with its
own connection) run closed loops for the same wall time:

- **ours**: one operation = `billing.services.place_hold` + `settle_hold` (each its own
  transaction locking the wallet row: the hold written and `held` moved; then the hold finished,
  a ledger entry appended, the cached balance moved; each pushes the balance to the user's
  browsers: to Redis with `--redis-url`, else the in-process layer). Each worker uses its own
  wallet, plus a second run where all workers share 4 wallets (row-lock contention, as when one
  account runs several calls);
- **baseline**: one operation = a bare `INSERT` of one row in autocommit, through the same Django
  connection.

Prints operations per second, p50/p99 latency per operation, ours ÷ baseline, and the CPU one
operation costs in the worker (Python) and in its PostgreSQL backend (from /proc, so PostgreSQL
must run on this machine). Afterwards it checks that every balance equals the sum of its ledger
entries and that nothing is left held. DEBUG is off (production's cursors).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

from bench_db import recreate_database  # benchmarks/ is on sys.path: the script's own folder

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/ledger_bench"




def setup_django(url: str, redis_url: str) -> None:
    os.environ["DATABASE_URL"] = url
    if redis_url:  # the balance pushes go to Redis, as in production
        os.environ["REDIS_URL"] = redis_url
    else:
        os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime_saas.settings_test")
    os.environ.setdefault("DEBUG", "false")  # production's cursors: no SQL kept for the debug page
    os.environ.setdefault("CONN_MAX_AGE", "0")
    import django

    django.setup()


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def _worker(args: tuple[str, int, int, float, str]) -> tuple[list[float], float, float]:
    mode, index, wallets, seconds, url = args
    from django.db import connection

    from accounts.models import User
    from billing import services

    latencies: list[float] = []
    cpu_started, pg_started = time.process_time(), backend_cpu_seconds()
    deadline = time.monotonic() + seconds
    n = 0
    if mode == "baseline":
        with connection.cursor() as cursor:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                cursor.execute("INSERT INTO bench_baseline (worker, n) VALUES (%s, %s)", [index, n])
                latencies.append(time.perf_counter() - started)
                n += 1
    else:
        user = User.objects.get(email=f"bench{index % wallets}@example.com")
        while time.monotonic() < deadline:
            started = time.perf_counter()
            hold = services.place_hold(
                user=user, credits=10, idempotency_key=f"{mode}-{index}-{n}", reference=f"bench:{index}:{n}"
            )
            services.settle_hold(hold=hold, used_credits=7)
            latencies.append(time.perf_counter() - started)
            n += 1
    cpu, pg_cpu = time.process_time() - cpu_started, backend_cpu_seconds() - pg_started
    connection.close()
    return latencies, cpu, pg_cpu


def backend_cpu_seconds() -> float:
    """CPU time (user + system) of this connection's PostgreSQL backend process so far."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(mode: str, workers: int, wallets: int, seconds: float, url: str) -> dict:
    from django.db import connections

    connections.close_all()
    # Forked after Django is set up and its connection closed: each worker opens its own.
    ctx = mp.get_context("fork")
    with ctx.Pool(workers) as pool:
        started = time.monotonic()
        results = pool.map(_worker, [(mode, i, wallets, seconds, url) for i in range(workers)])
        elapsed = time.monotonic() - started
    latencies = [x for r, _, _ in results for x in r]
    return {
        "cpu_ms": sum(cpu for _, cpu, _ in results) / len(latencies) * 1000,
        "pg_cpu_ms": sum(pg for _, _, pg in results) / len(latencies) * 1000,
        "ops": len(latencies),
        "ops_per_s": len(latencies) / seconds,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "elapsed": elapsed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--database-url", default=DEFAULT_DB)
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", ""),
                        help="Channels layer for the balance pushes ('': in-process, as without Redis)")
    args = parser.parse_args()
    if not args.database_url.startswith("postgres"):
        parser.error("the benchmark measures PostgreSQL row locks: pass a postgres:// URL")

    recreate_database(args.database_url)
    setup_django(args.database_url, args.redis_url)
    from django.core.management import call_command
    from django.db import connection

    from accounts.models import User
    from billing import services

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE bench_baseline (id bigserial PRIMARY KEY, worker int NOT NULL, n int NOT NULL,"
            " created_at timestamptz NOT NULL DEFAULT now())"
        )
    for i in range(args.workers):
        user = User.objects.create_user(email=f"bench{i}@example.com", password=None)
        services.grant(user=user, credits=10**12, idempotency_key=f"fund-{i}", kind="bonus")
    connection.close()

    print(f"PostgreSQL, {args.workers} worker processes, {args.seconds:g} s per run, {os.cpu_count()} CPU(s)")
    rows = [
        (
            "baseline: bare insert",
            run("baseline", args.workers, args.workers, args.seconds, args.database_url),
        ),
        ("hold+settle, own wallet", run("own", args.workers, args.workers, args.seconds, args.database_url)),
        ("hold+settle, 4 shared wallets", run("shared", args.workers, 4, args.seconds, args.database_url)),
    ]
    base = rows[0][1]
    print(f"{'run':32} {'ops':>8} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs baseline':>12}"
          f" {'CPU ms/op: worker':>18} {'PostgreSQL':>11}")
    for name, r in rows:
        ratio = r["ops_per_s"] / base["ops_per_s"]
        print(
            f"{name:32} {r['ops']:8d} {r['ops_per_s']:9.1f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {ratio:11.2f}x"
            f" {r['cpu_ms']:18.2f} {r['pg_cpu_ms']:11.2f}"
        )
    best = max(r["ops_per_s"] for _, r in rows[1:])
    print(f"hold+settle ≥ 500 ops/s: {'ok' if best >= 500 else 'MISSED'} ({best:.0f}); "
          f"load average {os.getloadavg()[0]:.1f}")

    from django.db.models import Sum  # the ledger must still add up after the load

    from billing.models import LedgerEntry, Wallet

    for wallet in Wallet.objects.all():
        total = LedgerEntry.objects.filter(wallet=wallet).aggregate(s=Sum("credits"))["s"]
        assert wallet.balance == total and wallet.held == 0, f"wallet {wallet.pk} does not add up"
    print("ledger check: every balance equals the sum of its entries; nothing left held")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
