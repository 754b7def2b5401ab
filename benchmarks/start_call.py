"""Benchmark: how fast calls start through our SDP proxy, what each start costs, and how it compares.

    .venv/bin/python benchmarks/start_call.py [--server gunicorn] [--peer litellm] [--rounds 3]
        [--clients 32] [--calls 400] [--latencies 0,150] [--single-client-calls 100]
        [--database-url postgres://postgres@127.0.0.1:5432/realtime_bench]

It builds everything it needs and runs the same load, in the same run, against:

- **ours** (`--server`, comma-separated to compare several): the product (auth, CSRF, limits, credit
  hold, call row, events) with production settings on a PostgreSQL database the script creates and
  migrates (`--database-url`, dropped and re-created), with one verified user with credits per call,
  so no per-user limit is what we measure. `granian` (the default, as `make run` and production
  serve HTTP: the WSGI app, one process per core, each with threads), `gunicorn` (the same with its
  gthread workers), `granian-asgi` (the ASGI app, HTTP and WebSockets in one server) or `daphne`
  (one process per core, as before);
- **relay**: the bare relay (this file, `--serve-baseline`, an aiohttp app in its own process): no
  auth, no ledger; it forwards the SDP offer to OpenAI as multipart and returns the answer;
- **litellm** (`--peer litellm`, the default; `--peer none` skips it): LiteLLM's proxy, pinned
  (`LITELLM_VERSION`), installed on first use into its own virtualenv under `var/` (not the
  product's), relaying `POST /v1/realtime/calls` to the same fake;

all in front of the same `python -m fakes.openai --no-media` (synthetic SDP answer, no WebRTC peer),
whose every /v1 request is delayed by each of `--latencies` (its `/_fake/latency` control API).

Phases: `--clients` closed-loop clients at each latency, then one client at 0 ms; each phase runs
the relay, LiteLLM and ours back to back, `--rounds` times; the summary gives medians. It reads
the CPU time of each server's processes (and of PostgreSQL's backends on the benchmark database)
from /proc before and after each measured phase, and prints every target of issue 16 with
PASS/MISS. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
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
BENCH_SECRET_KEY = "benchmark-" + "k" * 40  # shared by this process and the web servers (session hashes)
SERVERS = ("gunicorn", "granian", "granian-asgi", "daphne")
DEFAULT_SERVER = "granian"
# The newest LiteLLM whose `[proxy]` extra pip can install from this project's package index
# (1.108.8 and later pin litellm-enterprise / litellm-proxy-extras builds it does not have).
LITELLM_VERSION = "1.108.7"
LITELLM_MASTER_KEY = "sk-bench-" + secrets.token_hex(16)
MODEL = "gpt-realtime"
SESSION_CONFIG = {"type": "realtime", "model": MODEL, "audio": {"output": {"voice": "marin"}}}

# Issue 16's targets.
TARGET_WEB_CPU_MS = 5.0
TARGET_PG_CPU_MS = 2.0
TARGET_VS_LITELLM = 1.5
TARGET_VS_RELAY_150 = 0.8
TARGET_ADDED_P50_150, TARGET_ADDED_P99_150 = 30.0, 150.0
TARGET_ADDED_P50_1, TARGET_ADDED_P99_1 = 8.0, 15.0


# --- the bare relay -------------------------------------------------------------------------------


def serve_baseline(port: int, upstream: str, ready_file: Path) -> None:
    """`POST /calls` → the same multipart `POST /v1/realtime/calls` our server makes; nothing else."""
    import aiohttp
    from aiohttp import web

    session_config = json.dumps(SESSION_CONFIG)

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


def wait_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
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


def product_env(database_url: str, redis_url: str, openai_base_url: str) -> dict:
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
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    else:
        env.pop("REDIS_URL", None)
    return env


@dataclass
class Server:
    """A server under load: its URL for one start and its root processes (CPU is read for the
    whole tree: a gunicorn or granian master and its workers)."""

    label: str
    url: str
    processes: list[subprocess.Popen]
    logs: list[Path]
    headers_for: Callable[[int], dict[str, str]] | None = None

    def wait_ready(self, path: str, timeout: float) -> None:
        base = self.url.split("/", 3)
        for process, log in zip(self.processes, self.logs, strict=True):
            wait_http(f"{base[0]}//{base[2]}{path}", process, log, timeout)


def start_ours(server: str, workers: int, threads: int, env: dict, logs: Path) -> tuple[str, list, list[Path]]:
    """Our product under `server` with `workers` processes; returns (base URL, processes, logs)."""
    py = sys.executable
    if server == "daphne":
        listeners = listening_sockets(workers)
        port = listeners[0].getsockname()[1]
        processes, paths = [], []
        for n, listener in enumerate(listeners):
            log = logs / f"daphne-{n}.log"
            processes.append(
                spawn(
                    [py, "-m", "daphne", "--fd", str(listener.fileno()), "realtime_saas.asgi:application"],
                    env,
                    log,
                    pass_fds=(listener.fileno(),),
                )
            )
            paths.append(log)
        for listener in listeners:
            listener.close()
        return f"http://127.0.0.1:{port}", processes, paths
    port = free_port()
    log = logs / f"{server}.log"
    if server == "gunicorn":
        args = [py, "-m", "gunicorn", "--worker-class", "gthread", "--bind", f"127.0.0.1:{port}",
                "--workers", str(workers), "--threads", str(threads), "--no-control-socket",
                "realtime_saas.wsgi:application"]
    elif server in ("granian", "granian-asgi"):
        interface, target = (
            ("wsgi", "realtime_saas.wsgi:application") if server == "granian" else ("asgi", "realtime_saas.asgi:application")
        )
        args = [py, "-m", "granian", "--interface", interface, "--host", "127.0.0.1", "--port", str(port),
                "--workers", str(workers), "--no-access-log", "--log-level", "warning", target]
        if interface == "wsgi":  # ASGI runs Django's sync code in asgiref's threads instead
            args[-1:-1] = ["--blocking-threads", str(threads)]
    else:
        raise SystemExit(f"unknown server {server!r}: one of {', '.join(SERVERS)}")
    return f"http://127.0.0.1:{port}", [spawn(args, env, log)], [log]


# --- LiteLLM's proxy ------------------------------------------------------------------------------


def litellm_venv(version: str, log: Path) -> Path:
    """`var/litellm-<version>/`, a virtualenv of its own with `litellm[proxy]==<version>`, created once."""
    venv = ROOT / "var" / f"litellm-{version}"
    marker = venv / ".installed"
    if marker.exists():
        return venv
    print(f"installing litellm[proxy]=={version} into {venv.relative_to(ROOT)} (once; a few minutes)…", flush=True)
    venv.parent.mkdir(exist_ok=True)
    with log.open("wb") as out:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, stdout=out, stderr=out)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", f"litellm[proxy]=={version}"],
            check=True,
            stdout=out,
            stderr=out,
        )
    marker.write_text(version)
    return venv


def start_litellm(version: str, workers: int, upstream: str, logs: Path) -> tuple[str, subprocess.Popen, Path]:
    """LiteLLM's proxy, no database, one model routed to the fake. Its default is one worker
    process; with more, 1.108.7's uvicorn workers died at start without a word here."""
    venv = litellm_venv(version, logs / "litellm-install.log")
    config = logs / "litellm.yaml"
    # LiteLLM reads YAML; JSON is YAML.
    config.write_text(
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": MODEL,
                        "litellm_params": {"model": f"openai/{MODEL}", "api_key": PROJECT_KEY, "api_base": upstream},
                        "model_info": {"mode": "realtime"},
                    }
                ],
                "litellm_settings": {"set_verbose": False, "json_logs": False},
                "general_settings": {"disable_spend_logs": True},
            }
        )
    )
    port = free_port()
    log = logs / "litellm.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "DATABASE", "REDIS"))}
    env.update({"LITELLM_LOG": "ERROR", "LITELLM_MODE": "PRODUCTION", "DISABLE_SCHEMA_UPDATE": "true",
                "LITELLM_TELEMETRY": "False", "NO_DOCS": "True",
                # The model price list from the package, not fetched from the internet at start.
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                # It refuses to start without a master key; client secrets are minted with it.
                "LITELLM_MASTER_KEY": LITELLM_MASTER_KEY})
    process = spawn(
        [str(venv / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
         "--num_workers", str(workers)],
        env,
        log,
    )
    return f"http://127.0.0.1:{port}", process, log


def litellm_client_secret(base_url: str) -> str:
    """LiteLLM's realtime calls route takes, as its Bearer token, a client secret that its own
    `POST /v1/realtime/client_secrets` minted (OpenAI's ephemeral key, encrypted with its salt key;
    litellm/proxy/realtime_endpoints/endpoints.py). One secret starts any number of calls until it
    expires, as at OpenAI, so each phase mints one outside the measured part."""
    import httpx

    resp = httpx.post(
        f"{base_url}/v1/realtime/client_secrets",
        json={"session": SESSION_CONFIG},
        headers={"Authorization": f"Bearer {LITELLM_MASTER_KEY}"},
        timeout=30,
    )
    resp.raise_for_status()
    return resp.json()["value"]


# --- CPU time from /proc --------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stats() -> dict[int, tuple[int, int]]:
    """pid → (parent pid, user + system CPU ticks) for every process now."""
    stats = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return stats


def tree_ticks(roots: list[int]) -> dict[int, int]:
    """CPU ticks of `roots` and all their descendants (the workers of a master), by pid."""
    stats = _proc_stats()
    members, grew = set(roots), True
    while grew:
        children = {pid for pid, (ppid, _) in stats.items() if ppid in members} - members
        members |= children
        grew = bool(children)
    return {pid: stats[pid][1] for pid in members if pid in stats}


def postgres_backend_ticks(conn, database: str) -> dict[int, int]:
    """CPU ticks of PostgreSQL's client backends connected to `database` (server on this machine);
    `conn` is a connection to another database, so it does not count itself."""
    pids = [
        row[0]
        for row in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'",
            (database,),
        )
    ]
    stats = _proc_stats()
    return {pid: stats[pid][1] for pid in pids if pid in stats}


def cpu_seconds(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU spent between two samples; a process that appeared in between counts from zero (one
    that exited in between is lost: the servers and the connection pool keep theirs)."""
    return sum(ticks - before.get(pid, 0) for pid, ticks in after.items()) / CLOCK_TICKS


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
        model=MODEL,
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
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # meter name → CPU s in the phase

    @property
    def ok(self) -> int:
        return self.statuses.get(201, 0)

    @property
    def throughput(self) -> float:
        return self.ok / self.wall_seconds if self.wall_seconds else 0.0

    def cpu_ms_per_start(self, meter: str) -> float:
        return 1000 * self.cpu_seconds[meter] / self.ok if self.ok and meter in self.cpu_seconds else float("nan")

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def load(
    server: Server,
    offer: str,
    clients: int,
    calls: int,
    warmup: int,
    meters: dict[str, Callable[[], dict[int, int]]],
) -> Run:
    """`clients` loops, each starting `warmup` unmeasured calls, then its share of `calls` one
    after the other; `meters` (CPU samplers) are read when the measured part starts and ends."""
    import aiohttp

    run = Run(server.label)
    counter = iter(range(10**9))
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    shares = [calls // clients + (1 if n < calls % clients else 0) for n in range(clients)]
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def one(measure: bool) -> None:
            n = next(counter)
            headers = server.headers_for(n) if server.headers_for else {"Content-Type": "application/sdp"}
            started = time.perf_counter()
            try:
                async with http.post(server.url, data=offer, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                status = type(exc).__name__
            elapsed = (time.perf_counter() - started) * 1000
            if measure:
                run.statuses[status] += 1
                if status == 201:
                    run.latencies_ms.append(elapsed)

        async def client(share: int) -> None:
            for _ in range(warmup):
                await one(False)
            await warmed.wait()
            await go.wait()
            for _ in range(share):
                await one(True)

        warmed, go = asyncio.Barrier(clients + 1), asyncio.Event()
        tasks = [asyncio.create_task(client(share)) for share in shares]
        await warmed.wait()
        before = {name: sample() for name, sample in meters.items()}
        go.set()
        began = time.perf_counter()
        await asyncio.gather(*tasks)
        run.wall_seconds = time.perf_counter() - began
        after = {name: sample() for name, sample in meters.items()}
    run.cpu_seconds = {name: cpu_seconds(before[name], after[name]) for name in meters}
    return run


# --- report ---------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def row(phase: str, run: Run, relay: Run) -> str:
    errors = sum(n for s, n in run.statuses.items() if s != 201)
    err = f"{errors} ({', '.join(f'{s}×{n}' for s, n in run.statuses.items() if s != 201)})" if errors else "0"
    ratio = run.throughput / relay.throughput if relay.throughput else float("nan")
    web = run.cpu_ms_per_start("web")
    pg = run.cpu_ms_per_start("pg")
    return (
        f"{phase:<13} {run.label:<14} {run.ok:>6} {err:>8} {run.throughput:>9.1f} {ratio:>6.2f} "
        f"{run.pct(50):>8.1f} {run.pct(99):>8.1f} {run.pct(50) - relay.pct(50):>+9.1f} "
        f"{run.pct(99) - relay.pct(99):>+9.1f} {web:>8.2f} {pg:>7.2f}"
    )


HEADER = (
    f"{'phase':<13} {'server':<14} {'starts':>6} {'errors':>8} {'starts/s':>9} {'×relay':>6} "
    f"{'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>9} {'+p99 ms':>9} {'web cpu':>8} {'pg cpu':>7}"
)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def summarize(results: dict, servers: list[str], peer: bool, phases: list[tuple[int, int]], rounds: int) -> list[dict]:
    """Medians over the rounds, and every target of issue 16 for each of our servers."""
    many = [p for p in phases if p[0] > 1]
    zero = next((p for p in many if p[1] == 0), None)
    slow = next((p for p in many if p[1] >= 150), None)
    single = next((p for p in phases if p[0] == 1 and p[1] == 0), None)

    def med(phase, label, fn) -> float:
        return median([fn(r[label], r["relay"]) for r in results[phase]])

    print(f"\nmedians of {rounds} round(s); CPU in ms per start (web: the server's processes; pg: PostgreSQL backends)")
    print(f"{'phase':<13} {'server':<14} {'starts/s':>9} {'×relay':>6} {'+p50 ms':>9} {'+p99 ms':>9} {'web cpu':>8} {'pg cpu':>7}")
    for phase in phases:
        for label in ["relay", *(["litellm"] if peer else []), *servers]:
            print(
                f"{phase_name(phase):<13} {label:<14} {med(phase, label, lambda r, b: r.throughput):>9.1f} "
                f"{med(phase, label, lambda r, b: r.throughput / b.throughput):>6.2f} "
                f"{med(phase, label, lambda r, b: r.pct(50) - b.pct(50)):>+9.1f} "
                f"{med(phase, label, lambda r, b: r.pct(99) - b.pct(99)):>+9.1f} "
                f"{med(phase, label, lambda r, b: r.cpu_ms_per_start('web')):>8.2f} "
                f"{med(phase, label, lambda r, b: r.cpu_ms_per_start('pg')):>7.2f}"
            )

    targets = []
    for server in servers:
        print(f"\ntargets (issue 16) for ours under {server}:")

        def target(name: str, value: float, goal: str, ok: bool, unit: str = "", server: str = server) -> None:
            targets.append({"server": server, "target": name, "value": value, "goal": goal, "pass": ok})
            print(f"  {name:<58} {value:>9.2f}{unit:<3} {goal:<10} {verdict(ok)}")

        if zero:
            web = med(zero, server, lambda r, b: r.cpu_ms_per_start("web"))
            pg = med(zero, server, lambda r, b: r.cpu_ms_per_start("pg"))
            target(f"web CPU per start ({phase_name(zero)})", web, f"≤ {TARGET_WEB_CPU_MS:g} ms", web <= TARGET_WEB_CPU_MS, " ms")
            target(f"PostgreSQL CPU per start ({phase_name(zero)})", pg, f"≤ {TARGET_PG_CPU_MS:g} ms", pg <= TARGET_PG_CPU_MS, " ms")
            if peer:
                ratio = median([r[server].throughput / r["litellm"].throughput for r in results[zero] if r["litellm"].throughput])
                target(f"starts/s ÷ LiteLLM's ({phase_name(zero)})", ratio, f"≥ {TARGET_VS_LITELLM:g}×", ratio >= TARGET_VS_LITELLM, " ×")
        if slow:
            ratio = med(slow, server, lambda r, b: r.throughput / b.throughput)
            p50 = med(slow, server, lambda r, b: r.pct(50) - b.pct(50))
            p99 = med(slow, server, lambda r, b: r.pct(99) - b.pct(99))
            target(f"starts/s ÷ the bare relay's ({phase_name(slow)})", ratio, f"≥ {TARGET_VS_RELAY_150:g}×", ratio >= TARGET_VS_RELAY_150, " ×")
            target(f"added p50 ({phase_name(slow)})", p50, f"≤ {TARGET_ADDED_P50_150:g} ms", p50 <= TARGET_ADDED_P50_150, " ms")
            target(f"added p99 ({phase_name(slow)})", p99, f"≤ {TARGET_ADDED_P99_150:g} ms", p99 <= TARGET_ADDED_P99_150, " ms")
        if single:
            p50 = med(single, server, lambda r, b: r.pct(50) - b.pct(50))
            p99 = med(single, server, lambda r, b: r.pct(99) - b.pct(99))
            target(f"added p50 ({phase_name(single)})", p50, f"≤ {TARGET_ADDED_P50_1:g} ms", p50 <= TARGET_ADDED_P50_1, " ms")
            target(f"added p99 ({phase_name(single)})", p99, f"≤ {TARGET_ADDED_P99_1:g} ms", p99 <= TARGET_ADDED_P99_1, " ms")
    return targets


def phase_name(phase: tuple[int, int]) -> str:
    clients, latency = phase
    return f"{clients}c/{latency}ms"


def run_json(run: Run, relay: Run) -> dict:
    return {
        "starts": run.ok,
        "statuses": {str(k): v for k, v in run.statuses.items()},
        "starts_per_s": run.throughput,
        "p50_ms": run.pct(50),
        "p99_ms": run.pct(99),
        "added_p50_ms": run.pct(50) - relay.pct(50),
        "added_p99_ms": run.pct(99) - relay.pct(99),
        "web_cpu_ms_per_start": run.cpu_ms_per_start("web"),
        "pg_cpu_ms_per_start": run.cpu_ms_per_start("pg"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--server", default=DEFAULT_SERVER, help=f"ours under: {', '.join(SERVERS)}; comma-separated to compare"
    )
    parser.add_argument("--peer", choices=("litellm", "none"), default="litellm", help="also measure LiteLLM's proxy")
    parser.add_argument("--litellm-version", default=LITELLM_VERSION)
    parser.add_argument("--rounds", type=int, default=3, help="each phase this many times; the summary gives medians")
    parser.add_argument("--clients", type=int, default=32, help="closed-loop clients of the many-client phases")
    parser.add_argument("--calls", type=int, default=400, help="measured starts per server per phase")
    parser.add_argument("--single-client-calls", type=int, default=100, help="measured starts with one client (0: skip)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured starts per client first")
    parser.add_argument("--latencies", default="0,150", help="ms the fake adds in the many-client phases")
    parser.add_argument(
        "--web-processes", type=int, default=os.cpu_count() or 1,
        help="processes of our server (one per core; the relay and LiteLLM run one)",
    )
    parser.add_argument("--threads", type=int, default=16, help="request threads per process (gunicorn, granian)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB),
        help="PostgreSQL database to DROP and re-create for the run",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS),
        help="Channels layer and Celery broker of the product ('' for none); its database is flushed",
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

    servers = [s.strip() for s in args.server.split(",") if s.strip()]
    for server in servers:
        if server not in SERVERS:
            parser.error(f"--server {server!r}: one of {', '.join(SERVERS)}")
    peer = args.peer == "litellm"
    phases = [(args.clients, int(x)) for x in args.latencies.split(",") if x.strip()]
    if args.single_client_calls:
        phases.append((1, 0))
    calls_of = {phase: args.calls if phase[0] > 1 else args.single_client_calls for phase in phases}
    started_at = time.monotonic()
    logs = Path(tempfile.mkdtemp(prefix="bench-start-call-"))
    print(
        f"logs in {logs}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; phases "
        f"{', '.join(f'{phase_name(p)} × {calls_of[p]} starts' for p in phases)}, {args.rounds} round(s); "
        f"ours: {', '.join(servers)} with {args.web_processes} process(es) × {args.threads} threads; "
        f"LiteLLM {args.litellm_version + ' with 1' if peer else '(skipped)'}; the relay: 1",
        flush=True,
    )

    from fakes.openai.pytest_plugin import start_fake_openai

    fake = start_fake_openai("--no-media", log_dir=str(logs))
    env = product_env(args.database_url, args.redis_url, fake.base_url)
    # A connection per request thread, no more: each process of each server has its own pool, and
    # the sum must stay under PostgreSQL's max_connections.
    env["DATABASE_POOL_MAX_SIZE"] = str(args.threads)
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

    from urllib.parse import urlsplit, urlunsplit

    database = urlsplit(args.database_url).path.lstrip("/")
    admin_url = urlunsplit(urlsplit(args.database_url)._replace(path="/postgres"))
    processes: list[subprocess.Popen] = []
    try:
        print("creating and migrating the benchmark database…", flush=True)
        recreate_database(args.database_url)
        migrate(env, logs / "migrate.log")
        per_round = sum(calls_of[p] + p[0] * args.warmup for p in phases)
        assistant_id, principals = create_principals(per_round * args.rounds * len(servers), credits=1_000_000)
        users = iter(principals)

        def ours_headers(_: int) -> dict[str, str]:
            return next(users).headers  # a fresh user per start: per-user limits stay out of the figures

        under_load: list[Server] = []
        baseline_port, ready = free_port(), logs / "baseline.port"
        relay = Server(
            "relay",
            f"http://127.0.0.1:{baseline_port}/calls",
            [spawn([sys.executable, __file__, "--serve-baseline", str(baseline_port), fake.base_url, str(ready)],
                   env, logs / "baseline.log")],
            [logs / "baseline.log"],
        )
        processes += relay.processes
        under_load.append(relay)
        if peer:
            url, process, log = start_litellm(args.litellm_version, 1, fake.base_url, logs)
            processes.append(process)
            # The browser's request to LiteLLM: the raw SDP offer with the client secret it minted;
            # LiteLLM sends OpenAI the multipart form (sdp + session) with the upstream ephemeral key.
            litellm = Server("litellm", f"{url}/v1/realtime/calls", [process], [log])
            litellm_url = url
            under_load.append(litellm)
        for server in servers:
            base, procs, paths = start_ours(server, args.web_processes, args.threads, env, logs)
            processes += procs
            under_load.append(
                Server(server, f"{base}/api/calls/?assistant={assistant_id}", procs, paths, headers_for=ours_headers)
            )
        for server in under_load:
            path = {"relay": "/", "litellm": "/health/liveliness"}.get(server.label, "/healthz")
            server.wait_ready(path, timeout=240)  # a loaded machine, LiteLLM imports a lot
        print(f"servers ready ({time.monotonic() - started_at:.0f} s since start)", flush=True)

        import psycopg

        admin = psycopg.connect(admin_url, autocommit=True)  # one, kept: the server's slots are shared
        offer = asyncio.run(make_offer())
        results: dict[tuple[int, int], list[dict[str, Run]]] = {p: [] for p in phases}
        print("\n" + HEADER)
        for _ in range(args.rounds):
            for phase in phases:
                clients, latency = phase
                fake.reset()
                fake.set_latency(latency)
                runs: dict[str, Run] = {}
                if peer:
                    auth = {"Authorization": f"Bearer {litellm_client_secret(litellm_url)}",
                            "Content-Type": "application/sdp"}
                    litellm.headers_for = lambda _, auth=auth: auth
                for server in under_load:
                    meters = {"web": lambda s=server: tree_ticks([p.pid for p in s.processes])}
                    ours = server.label not in ("relay", "litellm")
                    if ours:
                        meters["pg"] = lambda: postgres_backend_ticks(admin, database)
                    commits_before = transactions_committed(args.database_url) if ours else 0
                    run = asyncio.run(load(server, offer, clients, calls_of[phase], args.warmup, meters))
                    runs[server.label] = run
                    print(row(phase_name(phase), run, runs["relay"]), flush=True)
                    if ours:
                        time.sleep(0.6)  # pg_stat_database is updated when a backend goes idle
                        commits = transactions_committed(args.database_url) - commits_before
                        print(
                            f"{'':<13} {'':<14} {commits / (run.ok + clients * args.warmup):.1f} PostgreSQL "
                            f"commits per start; load average {os.getloadavg()[0]:.1f}",
                            flush=True,
                        )
                results[phase].append(runs)
        targets = summarize(results, servers, peer, phases, args.rounds)
        states = count_calls_by_state()
        elapsed = time.monotonic() - started_at
        print(
            f"\ncalls recorded by the product, by state: {states}; load average {os.getloadavg()[0]:.1f}; "
            f"{elapsed:.0f} s in all",
            flush=True,
        )
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "servers": servers,
                        "web_processes": args.web_processes,
                        "threads": args.threads,
                        "litellm_version": args.litellm_version if peer else None,
                        "cpus": os.cpu_count(),
                        "load_average": os.getloadavg(),
                        "phases": {
                            phase_name(p): [
                                {label: run_json(run, runs["relay"]) for label, run in runs.items()}
                                for runs in results[p]
                            ]
                            for p in phases
                        },
                        "targets": targets,
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
