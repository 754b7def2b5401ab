"""Benchmark: one call supervisor watching many concurrent calls on fakes/openai.

    .venv/bin/python benchmarks/supervisor.py [--calls 1000] [--duration 120] [--interval 2]
        [--exhausting 0.1] [--database-url postgres://postgres@127.0.0.1:5432/realtime_bench_supervisor]

It creates (and DROPs first) a PostgreSQL database, migrates it, starts `python -m fakes.openai
--no-media`, creates `--calls` headless calls there and a matching active RealtimeCall (with a real
credit hold) for each, then starts ONE `manage.py supervise_calls` process. Once every sideband is
attached, each call emits a scripted `response.done` (1 credit of usage) every `--interval` s for
`--duration` s. A fraction (`--exhausting`) of the calls hold few enough credits to run out during
the run, at staggered times; the fake records when the exhausting `response.done` left and when
the supervisor's hangup reached it, which gives the enforcement latency.

Prints: events metered per second, the supervisor's CPU % (of one core) and peak RSS (from /proc),
database transactions committed per second (pg_stat_database), and enforcement latency p50/p99.
Targets (issue 6): 1,000 calls in one process, p99 enforcement ≤ 500 ms, RSS ≤ 400 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_db import (  # benchmarks/ is on sys.path: the script's own folder
    recreate_database,
    transactions_committed,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/realtime_bench_supervisor"
BENCH_SECRET_KEY = "bench-supervisor-secret-key-0123456789-not-used-elsewhere"
PROJECT_KEY = "sk-proj-fake"


def product_env(database_url: str, openai_base_url: str) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "realtime_saas.settings",
            "ENV_FILE": "/nonexistent",
            "DEBUG": "false",
            "SECRET_KEY": BENCH_SECRET_KEY,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "false",
            "DATABASE_URL": database_url,
            "OPENAI_BASE_URL": openai_base_url,
            "OPENAI_API_KEY": PROJECT_KEY,
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
    )
    env.pop("REDIS_URL", None)  # in-memory channel layer: live pushes cost what they cost in-process
    return env






def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def create_calls(
    fake, *, calls: int, exhausting: int, responses: int, users: int
) -> list[tuple[int, str, int]]:
    """Fake calls + RealtimeCall rows with holds. Returns (pk, rtc id, credits held)."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from tests.supervisor.helpers import make_assistant, watched_call

    assistant = make_assistant()
    # No password: hashing one costs more than everything else here.
    people = [
        get_user_model().objects.create(email=f"bench{i}@example.com", name=f"Bench {i}")
        for i in range(users)
    ]
    made = []
    rng = random.Random(6)
    for i in range(calls):
        rtc = fake.create_call(session={"type": "realtime", "model": "gpt-realtime"})["id"]
        # Exhausting calls run out between 20% and 90% of the run; the others never do.
        hold = (
            rng.randint(max(2, responses // 5), max(3, responses * 9 // 10))
            if i < exhausting
            else responses * 10
        )
        user = people[i % users]
        call = watched_call(
            user=user, assistant=assistant, openai_call_id=rtc, hold=hold, balance=hold, seconds=3600
        )
        made.append((call.pk, rtc, hold))
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of scripted responses")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between response.done per call")
    parser.add_argument(
        "--exhausting", type=float, default=0.1, help="fraction of calls that run out of credits"
    )
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    logs = Path(tempfile.mkdtemp(prefix="bench-supervisor-"))
    print(
        f"logs in {logs}; {os.cpu_count()} CPUs; {args.calls} calls, one response.done every "
        f"{args.interval:g} s each, for {args.duration:g} s",
        flush=True,
    )

    from fakes.openai.pytest_plugin import start_fake_openai

    fake = start_fake_openai("--no-media", log_dir=str(logs))
    env = product_env(args.database_url, fake.base_url)
    os.environ.update({k: v for k, v in env.items() if k != "PYTHONPATH"})
    os.environ.pop("REDIS_URL", None)
    supervisor = None
    try:
        print("creating and migrating the benchmark database…", flush=True)
        recreate_database(args.database_url)
        with (logs / "migrate.log").open("wb") as out:
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "--noinput"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
            )
        responses = int(args.duration / args.interval)
        exhausting = int(args.calls * args.exhausting)
        t0 = time.monotonic()
        made = create_calls(
            fake, calls=args.calls, exhausting=exhausting, responses=responses, users=args.users
        )
        print(
            f"created {len(made)} calls ({exhausting} will run out) in {time.monotonic() - t0:.1f} s",
            flush=True,
        )

        with (logs / "supervisor.log").open("wb") as out:
            supervisor = subprocess.Popen(  # our own interpreter and manage.py
                [sys.executable, "manage.py", "supervise_calls", "--owner", "bench"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        t0 = time.monotonic()
        while True:
            attached = sum(c["sidebands"] for c in fake.calls("active"))
            if attached >= len(made):
                break
            if supervisor.poll() is not None or time.monotonic() - t0 > 120:
                raise SystemExit(
                    f"only {attached} sidebands attached:\n{(logs / 'supervisor.log').read_text()[-3000:]}"
                )
            time.sleep(0.5)
        print(f"all {attached} sidebands attached in {time.monotonic() - t0:.1f} s", flush=True)

        from tests.supervisor.helpers import usage_for

        usage = usage_for(1)
        for _pk, rtc, _hold in made:  # sequential posts stagger the scripts' phases
            fake.script(rtc, interval_ms=args.interval * 1000, usage=usage, count=responses)
        from sessions.models import UsageRecord

        cpu0, commits0, records0, wall0 = (
            proc_cpu_seconds(supervisor.pid),
            transactions_committed(args.database_url),
            UsageRecord.objects.count(),
            time.monotonic(),
        )
        rss_samples = []
        while time.monotonic() - wall0 < args.duration:
            time.sleep(1)
            rss_samples.append(proc_status(supervisor.pid, "VmRSS"))
            if supervisor.poll() is not None:
                raise SystemExit("the supervisor died:\n" + (logs / "supervisor.log").read_text()[-3000:])
        wall = time.monotonic() - wall0
        cpu = proc_cpu_seconds(supervisor.pid) - cpu0
        commits = transactions_committed(args.database_url) - commits0
        records = UsageRecord.objects.count() - records0
        peak_rss = proc_status(supervisor.pid, "VmHWM")
        time.sleep(3)  # the last hangups and settlements

        latencies, missing = [], 0
        for _pk, rtc, hold in made[:exhausting]:
            info = fake.call(rtc)
            log = info["response_done_log"]
            if len(log) < hold:
                continue  # did not run out within the run
            if not info["hangup_requests"]:
                missing += 1
                continue
            latencies.append((info["hangup_requests"][0] - log[hold - 1]["sent_at"]) * 1000)

        from django.db.models import Count

        from sessions.models import RealtimeCall

        states = dict(RealtimeCall.objects.values_list("state").annotate(n=Count("pk")))
        figures = {
            "calls": len(made),
            "duration_s": round(wall, 1),
            "cpus": os.cpu_count(),
            "events_per_s": round(records / wall, 1),
            "cpu_percent_of_one_core": round(100 * cpu / wall, 1),
            "peak_rss_mb": round(peak_rss / 2**20, 1),
            "max_sampled_rss_mb": round(max(rss_samples or [0]) / 2**20, 1),
            "db_commits_per_s": round(commits / wall, 1),
            "enforced": len(latencies),
            "not_hung_up": missing,
            "enforcement_p50_ms": round(pct(latencies, 50), 1),
            "enforcement_p99_ms": round(pct(latencies, 99), 1),
            "enforcement_max_ms": round(max(latencies or [float("nan")]), 1),
            "states": states,
        }
        print(json.dumps(figures, indent=2))
        ok = figures["enforcement_p99_ms"] <= 500 and figures["peak_rss_mb"] <= 400 and not missing
        print(
            f"targets (p99 ≤ 500 ms, RSS ≤ 400 MB, every exhausted call hung up): {'met' if ok else 'NOT met'}"
        )
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        return 0
    finally:
        if supervisor is not None and supervisor.poll() is None:
            supervisor.terminate()
            try:
                supervisor.wait(timeout=20)
            except subprocess.TimeoutExpired:
                supervisor.kill()
        fake.close()


if __name__ == "__main__":
    sys.exit(main())
