"""Real servers for tests: the product (daphne alone, or granian + daphne as `make run` runs it),
and a Celery worker, as subprocesses.

They use the test database that pytest-django created (the tests using them need
`transactional_db`, so that what a test writes is committed and visible to them).
"""

import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from django.db import connections

from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment a product subprocess needs to share this test process's database."""
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "realtime_saas.settings_test"
    env["LIVE_TEST_DB_NAME"] = str(connections["default"].settings_dict["NAME"])
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def stop_process(process: subprocess.Popen, *, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class LiveProcess:
    """A product subprocess and its log file."""

    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        stop_process(self.process, timeout=15)


@dataclass
class LiveServer(LiveProcess):
    url: str = ""
    env: dict = field(default_factory=dict)
    # `start_web`: daphne serving the live WebSocket beside the HTTP server.
    live: "LiveServer | None" = None

    @property
    def ws_url(self) -> str:
        return (self.live or self).url.replace("http://", "ws://", 1)

    def log(self) -> str:
        own = super().log()
        return own + (f"\n--- daphne (live WebSocket) ---\n{self.live.log()}" if self.live else "")

    def stop(self) -> None:
        super().stop()
        if self.live:
            self.live.stop()


def _serve(name: str, args: list[str], port: int, log_dir: Path, env: dict[str, str]) -> LiveServer:
    """Start `args` (a server listening on `port`) and wait for its /healthz."""
    log_path = log_dir / f"{name}-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = LiveServer(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path, env=env)

    def healthy() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{server.log()}")
        try:
            return httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, timeout=60, interval=0.1, what=lambda: f"{name} to answer /healthz:\n{server.log()}")
    except AssertionError:
        server.stop()
        raise
    return server


def _daphne_args(port: int) -> list[str]:
    return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "realtime_saas.asgi:application"]


def start_daphne(log_dir: Path, **extra_env: str) -> LiveServer:
    """daphne alone: HTTP and the live WebSocket on one port."""
    port = free_port()
    return _serve("daphne", _daphne_args(port), port, log_dir, subprocess_env(**extra_env))


def start_web(log_dir: Path, **extra_env: str) -> LiveServer:
    """The product as `make run` and production serve it: granian (the WSGI app, two worker
    processes with threads) for HTTP, and daphne on a port of its own for the live WebSocket, which the
    pages open at LIVE_WEBSOCKET_URL (the pages' origin is trusted for it, as `make run` does)."""
    port, live_port = free_port(), free_port()
    env = subprocess_env(
        LIVE_WEBSOCKET_URL=f"ws://127.0.0.1:{live_port}/ws/live/",
        CSRF_TRUSTED_ORIGINS=f"http://127.0.0.1:{port}",
        **extra_env,
    )
    live = _serve("daphne", _daphne_args(live_port), live_port, log_dir, env)
    try:
        server = _serve(
            "granian",
            [sys.executable, "-m", "granian", "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "2", "--blocking-threads", "4", "realtime_saas.wsgi:application"],
            port,
            log_dir,
            env,
        )
    except BaseException:
        live.stop()
        raise
    server.live = live
    return server


def start_celery_worker(log_dir: Path, **extra_env: str) -> subprocess.Popen:
    log_path = log_dir / f"celery-{free_port()}.log"
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "realtime_saas", "worker", "--pool=solo",
             "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT,
            env=subprocess_env(**extra_env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def start_supervisor(log_dir: Path, env: dict[str, str], *args: str, **extra_env: str) -> LiveProcess:
    """A call supervisor (as `make run` starts one beside the web server) with `env` (a live
    server's) plus `extra_env`; `args` go to supervise_calls (e.g. --poll-seconds)."""
    log_path = log_dir / f"supervisor-{free_port()}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "supervise_calls", *args],
            cwd=ROOT, env={**env, **extra_env}, stdout=log, stderr=subprocess.STDOUT,
        )
    return LiveProcess(process=process, log_path=log_path)
