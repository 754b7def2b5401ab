"""Benchmark: how fast calls start through our SDP proxy, and how much latency it adds.

    .venv/bin/python benchmarks/start_call.py [--clients 32] [--calls-per-client 25]
        [--latencies 0,150] [--database-url postgres://postgres@127.0.0.1:5432/realtime_bench]

It builds everything it needs, runs the same load against two servers, and prints both side by side:

- **ours**: daphne serving the product (auth, CSRF, limits, credit hold, call row, events) on a
  PostgreSQL database the script creates and migrates (`--database-url`, dropped and re-created),
  with many verified users who all have credits, so no per-user limit is what we measure;
- **baseline**: a minimal token server (this file, `--serve-baseline`, an aiohttp app in its own
  process like daphne): no auth, no ledger, it forwards the SDP offer to OpenAI as multipart and
  returns the answer, as in OpenAI's own server samples;

both in front of the same `python -m fakes.openai --no-media` (synthetic SDP answer, no WebRTC peer),
whose every /v1 request is delayed by 0 ms and then 150 ms (its `/_fake/latency` control API).

N clients each start calls back to back (a closed loop); each call is a `POST` of a real aiortc SDP
offer. "Added latency" is ours minus the baseline at the same percentile. Targets (issue 5): added
p50 ≤ 15 ms and p99 ≤ 60 ms at 32 clients; throughput ≥ 50% of the baseline's at 0 ms.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench_db import (  # benchmarks/ is on sys.path: the script's own folder
    recreate_database,
    transactions_committed,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/realtime_bench"
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
PROJECT_KEY = "sk-proj-fake"  # the fake's default project key (fakes/openai/config.py)
BENCH_SECRET_KEY = "benchmark-" + "k" * 40  # shared by this process and daphne (session hashes)


# --- the baseline: a minimal token server ---------------------------------------------------------


def serve_baseline(port: int, upstream: str, ready_file: Path) -> None:
    """`POST /calls` → the same multipart `POST /v1/realtime/calls` our server makes; nothing else."""
    import aiohttp
    from aiohttp import web

    session_config = json.dumps(
        {"type": "realtime", "model": "gpt-realtime", "audio": {"output": {"voice": "marin"}}}
    )

    async def create_call(request: web.Request) -> web.Response:
        form = aiohttp.FormData()
        form.add_field("sdp", await request.text(), content_type="application/sdp")
        form.add_field("session", session_config, content_type="application/json")
        http: aiohttp.ClientSession = request.app["http"]
        async with http.post(
            upstream + "/realtime/calls", data=form, headers={"Authorization": f"Bearer {PROJECT_KEY}"}
        ) as resp:
            body = await resp.text()
            if resp.status != 201:
                return web.json_response(
                    {"error": {"code": "upstream_error", "message": body[:200]}}, status=502
                )
            call_id = resp.headers.get("Location", "").rsplit("/", 1)[-1]
        return web.Response(
            status=201, text=body, content_type="application/sdp", headers={"Location": f"/calls/{call_id}"}
        )

    async def on_startup(app: web.Application) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        app["http"] = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0))

    async def on_cleanup(app: web.Application) -> None:
        await app["http"].close()

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/calls", create_call)
        app.on_startup.append(on_startup)
        app.on_cleanup.append(on_cleanup)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready_file.write_text(str(port))
        await asyncio.Event().wait()

    asyncio.run(main())


# --- processes ------------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def spawn(args: list[str], env: dict, log: Path, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, pass_fds=pass_fds)


def listening_sockets(count: int) -> list:
    """`count` listening sockets on one loopback port (SO_REUSEPORT), one per daphne process
    (`--fd`): the kernel spreads new connections across them. One shared socket would let the
    first process to wake accept most of the load generator's keep-alive connections."""
    import socket

    sockets, port = [], 0
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        port = sock.getsockname()[1]
        sock.listen(1024)
        sock.set_inheritable(True)
        sockets.append(sock)
    return sockets


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def product_env(database_url: str, redis_url: str, openai_base_url: str, conn_max_age: str = "0") -> dict:
    """Production settings (DEBUG off), minus TLS: the benchmark talks plain HTTP on loopback."""
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
            # Under ASGI each request runs its sync code in a thread of its own, so a persistent
            # connection (CONN_MAX_AGE > 0) is never reused: it lingers until PostgreSQL's
            # max_connections is reached. Django's advice for ASGI: 0 (or a connection pool).
            "CONN_MAX_AGE": conn_max_age,
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    else:
        env.pop("REDIS_URL", None)
    return env


# --- database state -------------------------------------------------------------------------------




def migrate(env: dict, log: Path) -> None:
    with log.open("wb") as out:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
        )


@dataclass
class Principal:
    session_key: str
    csrf: str

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Cookie": f"sessionid={self.session_key}; csrftoken={self.csrf}",
            "X-CSRFToken": self.csrf,
            "Content-Type": "application/sdp",
        }


def create_principals(count: int, credits: int) -> tuple[int, list[Principal]]:
    """An assistant without tight per-user limits, and `count` signed-in, verified users with credits."""
    import django

    django.setup()
    from importlib import import_module

    from allauth.account.models import EmailAddress
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    from accounts.models import User
    from billing.services import grant
    from sessions.models import Assistant

    assistant = Assistant.objects.create(
        name="Benchmark",
        model="gpt-realtime",
        max_call_seconds=600,
        min_credits=1,
        max_concurrent_calls=1000,
        max_starts_per_minute=1000,
    )
    users = User.objects.bulk_create(
        [User(email=f"bench{i}@example.com", name=f"Bench {i}", password="!") for i in range(count)]
    )
    EmailAddress.objects.bulk_create(
        [EmailAddress(user=u, email=u.email, verified=True, primary=True) for u in users]
    )
    store = import_module(settings.SESSION_ENGINE).SessionStore
    backend = settings.AUTHENTICATION_BACKENDS[0]
    principals = []
    for user in users:
        grant(user=user, credits=credits, idempotency_key=f"bench:{user.pk}", kind="bonus")
        session = store()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = backend
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        principals.append(Principal(session_key=session.session_key, csrf=secrets.token_hex(16)))
    return assistant.pk, principals




def count_calls_by_state() -> dict[str, int]:
    from django.db.models import Count

    from sessions.models import RealtimeCall

    return dict(RealtimeCall.objects.values_list("state").annotate(n=Count("pk")).order_by())


async def make_offer() -> str:
    """A real WebRTC offer (audio + the `oai-events` data channel), as a browser would send."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("oai-events")
    pc.addTransceiver("audio", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


# --- load -----------------------------------------------------------------------------------------


@dataclass
class Run:
    label: str
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    wall_seconds: float = 0.0

    @property
    def ok(self) -> int:
        return self.statuses.get(201, 0)

    @property
    def throughput(self) -> float:
        return self.ok / self.wall_seconds if self.wall_seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def load(
    label: str,
    url: str,
    offer: str,
    clients: int,
    calls_per_client: int,
    warmup: int,
    headers_for=None,
) -> Run:
    """`clients` loops, each starting `warmup` + `calls_per_client` calls one after the other."""
    import aiohttp

    run = Run(label)
    counter = iter(range(10**9))
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def one(measure: bool) -> None:
            headers = headers_for(next(counter)) if headers_for else {"Content-Type": "application/sdp"}
            started = time.perf_counter()
            try:
                async with http.post(url, data=offer, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                status = type(exc).__name__
            elapsed = (time.perf_counter() - started) * 1000
            if measure:
                run.statuses[status] += 1
                if status == 201:
                    run.latencies_ms.append(elapsed)

        async def client() -> None:
            for _ in range(warmup):
                await one(False)
            await barrier.wait()
            for _ in range(calls_per_client):
                await one(True)

        barrier = asyncio.Barrier(clients + 1)
        tasks = [asyncio.create_task(client()) for _ in range(clients)]
        await barrier.wait()
        began = time.perf_counter()
        await asyncio.gather(*tasks)
        run.wall_seconds = time.perf_counter() - began
    return run


# --- report ---------------------------------------------------------------------------------------


def row(latency: int, run: Run) -> str:
    errors = sum(n for s, n in run.statuses.items() if s != 201)
    err = (
        f"{errors} ({', '.join(f'{s}×{n}' for s, n in run.statuses.items() if s != 201)})" if errors else "0"
    )
    return (
        f"{latency:>6} ms  {run.label:<9} {run.ok:>6} {err:>8} {run.throughput:>10.1f} "
        f"{run.pct(50):>8.1f} {run.pct(99):>8.1f}"
    )


def verdict(target: bool) -> str:
    return "ok" if target else "MISSED"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--calls-per-client", type=int, default=25)
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured calls per client first")
    parser.add_argument("--latencies", default="0,150", help="ms the fake adds, comma-separated")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB),
        help="PostgreSQL database to DROP and re-create for the run",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS),
        help="Channels layer and Celery broker of the product ('' for none)",
    )
    parser.add_argument(
        "--conn-max-age",
        default="0",
        help="the product's CONN_MAX_AGE (0; anything above leaks a connection per request under daphne without the pool)",
    )
    parser.add_argument(
        "--web-processes",
        type=int,
        default=1,
        help="daphne processes sharing one listening socket (production runs one per core; the baseline is one)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--serve-baseline", nargs=3, metavar=("PORT", "UPSTREAM", "READY_FILE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve_baseline:
        port, upstream, ready = args.serve_baseline
        serve_baseline(int(port), upstream, Path(ready))
        return 0

    latencies = [int(x) for x in args.latencies.split(",") if x.strip()]
    per_phase = args.clients * (args.calls_per_client + args.warmup)
    logs = Path(tempfile.mkdtemp(prefix="bench-start-call-"))
    print(
        f"logs in {logs}; {os.cpu_count()} CPUs; {args.clients} clients × {args.calls_per_client} calls "
        f"(+{args.warmup} warm-up) per run; ours: {args.web_processes} daphne process(es), baseline: 1",
        flush=True,
    )

    from fakes.openai.pytest_plugin import start_fake_openai

    fake = start_fake_openai("--no-media", log_dir=str(logs))
    env = product_env(args.database_url, args.redis_url, fake.base_url, args.conn_max_age)
    os.environ.update(
        {
            k: env[k]
            for k in (
                "DJANGO_SETTINGS_MODULE",
                "ENV_FILE",
                "DEBUG",
                "SECRET_KEY",
                "ALLOWED_HOSTS",
                "SECURE_SSL_REDIRECT",
                "DATABASE_URL",
                "OPENAI_BASE_URL",
                "OPENAI_API_KEY",
                "LOG_LEVEL",
            )
        }
    )
    if args.redis_url:
        os.environ["REDIS_URL"] = args.redis_url
        import redis

        redis.Redis.from_url(args.redis_url).flushdb()  # the benchmark's own Redis database

    processes: list[subprocess.Popen] = []
    try:
        print("creating and migrating the benchmark database…", flush=True)
        recreate_database(args.database_url)
        migrate(env, logs / "migrate.log")
        assistant_id, principals = create_principals(per_phase * len(latencies), credits=1_000_000)

        listeners = listening_sockets(args.web_processes)
        daphne_port, baseline_port = listeners[0].getsockname()[1], free_port()
        webs: list[subprocess.Popen] = []
        for n, listener in enumerate(listeners):
            daphne = spawn(
                [
                    sys.executable,
                    "-m",
                    "daphne",
                    "--fd",
                    str(listener.fileno()),
                    "realtime_saas.asgi:application",
                ],
                env,
                logs / f"daphne-{n}.log",
                pass_fds=(listener.fileno(),),
            )
            webs.append(daphne)
            processes.append(daphne)
        ready = logs / "baseline.port"
        baseline = spawn(
            [sys.executable, __file__, "--serve-baseline", str(baseline_port), fake.base_url, str(ready)],
            env,
            logs / "baseline.log",
        )
        processes.append(baseline)
        for n, daphne in enumerate(webs):
            wait_http(f"http://127.0.0.1:{daphne_port}/healthz", daphne, logs / f"daphne-{n}.log")
        wait_http(f"http://127.0.0.1:{baseline_port}/", baseline, logs / "baseline.log")

        offer = asyncio.run(make_offer())
        ours_url = f"http://127.0.0.1:{daphne_port}/api/calls/?assistant={assistant_id}"
        baseline_url = f"http://127.0.0.1:{baseline_port}/calls"
        users = iter(principals)

        def ours_headers(_: int) -> dict[str, str]:
            return next(users).headers  # a fresh user per call: per-user limits stay out of the figures

        results = []
        print(
            f"\n{'fake':>9}  {'server':<9} {'calls':>6} {'errors':>8} {'calls/s':>10} {'p50 ms':>8} {'p99 ms':>8}"
        )
        for latency in latencies:
            fake.reset()
            fake.set_latency(latency)
            base = asyncio.run(
                load("baseline", baseline_url, offer, args.clients, args.calls_per_client, args.warmup)
            )
            print(row(latency, base), flush=True)
            commits_before = transactions_committed(args.database_url)
            ours = asyncio.run(
                load(
                    "ours",
                    ours_url,
                    offer,
                    args.clients,
                    args.calls_per_client,
                    args.warmup,
                    headers_for=ours_headers,
                )
            )
            print(row(latency, ours), flush=True)
            # pg_stat_database is updated by each backend when it goes idle: close enough after a run.
            time.sleep(0.6)
            commits = transactions_committed(args.database_url) - commits_before
            per_call = commits / (ours.ok + args.clients * args.warmup) if ours.ok else 0.0
            added50, added99 = ours.pct(50) - base.pct(50), ours.pct(99) - base.pct(99)
            ratio = ours.throughput / base.throughput if base.throughput else 0.0
            line = f"{'':>11}added p50 {added50:+.1f} ms [{verdict(added50 <= 15)}], p99 {added99:+.1f} ms [{verdict(added99 <= 60)}]"
            if latency == 0:
                line += f"; throughput {ratio:.0%} of baseline [{verdict(ratio >= 0.5)}]"
            print(line, flush=True)
            print(
                f"{'':>11}PostgreSQL: {per_call:.1f} committed transactions per call started "
                f"(load average {os.getloadavg()[0]:.1f})",
                flush=True,
            )
            results.append(
                {
                    "fake_latency_ms": latency,
                    "baseline": {
                        "calls": base.ok,
                        "statuses": dict(base.statuses),
                        "calls_per_s": base.throughput,
                        "p50_ms": base.pct(50),
                        "p99_ms": base.pct(99),
                    },
                    "ours": {
                        "calls": ours.ok,
                        "statuses": {str(k): v for k, v in ours.statuses.items()},
                        "calls_per_s": ours.throughput,
                        "p50_ms": ours.pct(50),
                        "p99_ms": ours.pct(99),
                    },
                    "added_p50_ms": added50,
                    "added_p99_ms": added99,
                    "throughput_ratio": ratio,
                    "db_transactions_per_call": per_call,
                    "load_average": os.getloadavg()[0],
                }
            )
        states = count_calls_by_state()
        print(f"\ncalls recorded by the product, by state: {states}")
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "clients": args.clients,
                        "web_processes": args.web_processes,
                        "calls_per_client": args.calls_per_client,
                        "cpus": os.cpu_count(),
                        "runs": results,
                        "call_states": states,
                    },
                    indent=2,
                    default=str,
                )
            )
    finally:
        for process in processes:
            stop(process)
        fake.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
