"""Benchmark: the CPU one call start costs, in the web process and in PostgreSQL (issue 16).

    .venv/bin/python benchmarks/start_cpu.py [--calls 300] [--database-url postgres://…/start_cpu_bench]

A light, server-independent complement to start_call.py: it runs `POST /api/calls/` through
Django's full request stack (middleware, session, auth, CSRF, DRF, the view) in this one process,
one start at a time, each by a fresh signed-in user (no per-user limit or throttle is what we
measure), against `fakes.openai --no-media` on loopback, with production settings (DEBUG off,
Redis for the cache and the channel layer when --redis-url is given). It reads this process's
CPU time (`time.process_time`) and its PostgreSQL backend's (/proc/<pid>/stat, so PostgreSQL
must run on this machine) around each request, and counts the statements. Not included: the
HTTP server's own parsing (see start_call.py) and, with the connection pool, taking a connection
(this run keeps one connection, so one backend does all the work).

Same-run baseline: the same requests to `GET /healthz` (the cheapest page: middleware only). Then
each user's call is read once as the Talk page polls it (`GET /api/calls/<id>`) and hung up
(`POST /api/calls/<id>/hangup`), measured the same way.
Targets (issue 16): web CPU ≤ 5 ms and PostgreSQL CPU ≤ 2 ms per start. `SHOW_SQL=1` also prints
one start's statements; `PROFILE=cumulative` (or `tottime`) profiles 100 more starts (CPU time;
`PROFILE_PATH=healthz`: 100 requests to /healthz; `PROFILE_CALLERS=<name>`: who calls it).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import statistics
import sys
import time
from pathlib import Path

from bench_db import recreate_database  # benchmarks/ is on sys.path: the script's own folder

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/start_cpu_bench"


def backend_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", ""))
    parser.add_argument("--gc-freeze", action="store_true",
                        help="gc.freeze() after the set-up and warm-up, as the WSGI entry point does")
    args = parser.parse_args()

    from fakes.openai.pytest_plugin import start_fake_openai

    fake = start_fake_openai("--no-media")
    recreate_database(args.database_url)
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "realtime_saas.settings", "ENV_FILE": "/nonexistent", "DEBUG": "false",
        "SECRET_KEY": "benchmark-" + "k" * 40, "ALLOWED_HOSTS": "testserver,127.0.0.1",
        "SECURE_SSL_REDIRECT": "false", "DATABASE_URL": args.database_url, "DATABASE_POOL": "false",
        "CONN_MAX_AGE": "600", "OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": fake.project_key,
        "LOG_LEVEL": "WARNING",
    })
    if args.redis_url:
        os.environ["REDIS_URL"] = args.redis_url
        import redis

        redis.Redis.from_url(args.redis_url).flushdb()
    else:
        os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from allauth.account.models import EmailAddress
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from accounts.models import User
    from billing import services as billing
    from sessions.models import Assistant, RealtimeCall

    call_command("migrate", verbosity=0)
    assistant = Assistant.objects.create(name="Benchmark", model="gpt-realtime", min_credits=1,
                                         max_concurrent_calls=1000, max_starts_per_minute=1000)
    total = args.calls + args.warmup
    users = User.objects.bulk_create([User(email=f"cpu{i}@example.com", password="!") for i in range(total)])
    EmailAddress.objects.bulk_create([EmailAddress(user=u, email=u.email, verified=True, primary=True) for u in users])
    for user in users:
        billing.grant(user=user, credits=1_000_000, idempotency_key=f"cpu:{user.pk}", kind="bonus")
    from tests.sessions.helpers import make_offer

    offer = make_offer()
    url = f"/api/calls/?assistant={assistant.pk}"

    def measure(path_for, clients, *, count: bool = False) -> tuple[list[float], list[float], list[int]]:
        """CPU per request; statements only when `count` (capturing them runs every query through
        Django's debug cursor, which costs CPU of its own, so the timed passes do not)."""
        web, pg, statements = [], [], []
        for client in clients:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pid = cursor.fetchone()[0]
            with CaptureQueriesContext(connection) if count else contextlib.nullcontext() as queries:
                cpu0, pg0 = time.process_time(), backend_seconds(pid)
                status = path_for(client)
                web.append(time.process_time() - cpu0)
                pg.append(backend_seconds(pid) - pg0)
            if queries is not None:
                statements.append(len(queries.captured_queries))
            assert status in (200, 201, 202), status
        return web, pg, statements

    # One request handler for every client, as a server has: a fresh Client loads the middleware
    # chain on its first request (~2.7 ms), which an earlier version counted in /healthz's figure.
    handler = Client(enforce_csrf_checks=False).handler
    clients = []
    for user in users:
        client = Client(enforce_csrf_checks=False)
        client.handler = handler
        client.force_login(user)
        clients.append(client)

    def start(client) -> int:
        response = client.post(url, data=offer, content_type="application/sdp")
        client.call_id = response.get("X-Call-Id")
        return response.status_code

    def health(client) -> int:
        return client.get("/healthz").status_code

    def poll(client) -> int:  # the Talk page's GET of its call, every 0.5-3 s
        return client.get(f"/api/calls/{client.call_id}").status_code

    def hangup(client) -> int:
        return client.post(f"/api/calls/{client.call_id}/hangup").status_code

    _, _, statements = measure(start, clients[: args.warmup], count=True)
    if args.gc_freeze:  # as realtime_saas/wsgi.py does once the app is loaded
        gc.freeze()
    base_web, base_pg, _ = measure(health, clients[args.warmup:])
    full_collections = gc.get_stats()[2]["collections"]
    web, pg, _ = measure(start, clients[args.warmup:])
    full_collections = gc.get_stats()[2]["collections"] - full_collections
    assert RealtimeCall.objects.filter(state="active").count() == total
    _, _, poll_statements = measure(poll, clients[: args.warmup], count=True)
    poll_web, poll_pg, _ = measure(poll, clients[args.warmup:])
    _, _, hangup_statements = measure(hangup, clients[: args.warmup], count=True)
    hangup_web, hangup_pg, _ = measure(hangup, clients[args.warmup:])
    assert RealtimeCall.objects.filter(state="ending").count() == total

    def ms(values: list[float]) -> str:
        return f"mean {statistics.mean(values) * 1000:6.2f}  p50 {statistics.median(values) * 1000:6.2f}"

    print(f"{args.calls} starts, one at a time, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"gc.freeze() {'on' if args.gc_freeze else 'off'} ({full_collections} full collections during the starts, "
          f"{gc.get_freeze_count():,} objects frozen)")
    print(f"GET /healthz (baseline)     web CPU ms: {ms(base_web)}   PostgreSQL CPU ms: {ms(base_pg)}")
    print(f"POST /api/calls/ (a start)  web CPU ms: {ms(web)}   PostgreSQL CPU ms: {ms(pg)}")
    print(f"GET /api/calls/<id> (poll)  web CPU ms: {ms(poll_web)}   PostgreSQL CPU ms: {ms(poll_pg)}")
    print(f"POST …/hangup               web CPU ms: {ms(hangup_web)}   PostgreSQL CPU ms: {ms(hangup_pg)}")
    if os.environ.get("SHOW_SQL"):
        with CaptureQueriesContext(connection) as queries:
            start(clients[-1])
        print("\n".join(q["sql"][:150] for q in queries.captured_queries))
    if os.environ.get("PROFILE"):
        import cProfile
        import pstats

        profile = cProfile.Profile(time.process_time)
        extra = User.objects.bulk_create([User(email=f"cpu-p{i}@example.com", password="!") for i in range(100)])
        EmailAddress.objects.bulk_create([EmailAddress(user=u, email=u.email, verified=True, primary=True) for u in extra])
        profiled = []
        for user in extra:
            billing.grant(user=user, credits=1_000_000, idempotency_key=f"cpu:{user.pk}", kind="bonus")
            client = Client()
            client.handler = handler
            client.force_login(user)
            profiled.append(client)
        profiled_request = health if os.environ.get("PROFILE_PATH") == "healthz" else start
        profile.enable()
        for client in profiled:
            profiled_request(client)
        profile.disable()
        stats = pstats.Stats(profile).sort_stats(os.environ["PROFILE"])
        stats.print_stats(45)
        if callers := os.environ.get("PROFILE_CALLERS"):  # who calls the functions matching this
            stats.print_callers(callers)
    print(f"statements per start (the user, the email check and the start's own, BEGIN and COMMIT included): "
          f"{statistics.median(statements):.0f}; per poll {statistics.median(poll_statements):.0f}; "
          f"per hangup {statistics.median(hangup_statements):.0f}")
    web_ms, pg_ms = statistics.mean(web) * 1000, statistics.mean(pg) * 1000
    print(f"targets: web CPU ≤ 5 ms {'ok' if web_ms <= 5 else 'MISSED'} ({web_ms:.2f}); "
          f"PostgreSQL CPU ≤ 2 ms {'ok' if pg_ms <= 2 else 'MISSED'} ({pg_ms:.2f})")
    fake.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
