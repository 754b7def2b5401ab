"""pytest fixtures that run the fake OpenAI as a subprocess on a free port.

Load with ``pytest_plugins = ["fakes.openai.pytest_plugin"]`` in the root conftest (or ``-p``).
Each pytest-xdist worker gets its own fake process, so tests in different workers never share state.

- ``fake_openai_server`` (session): the running fake, never reset.
- ``fake_openai`` (function): the same fake, reset before the test (faults, latency, clock, calls,
  usage) so tests don't see each other's state.

This module defines fixtures only (no hooks), so importing them into a conftest is also safe.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fakes.openai.config import DEFAULT_ADMIN_KEY, DEFAULT_PROJECT_ID, DEFAULT_PROJECT_KEY, key_id_for

__all__ = ["FakeOpenAI", "fake_openai", "fake_openai_server", "start_fake_openai"]

REPO_ROOT = Path(__file__).resolve().parents[2]


class FakeOpenAI:
    """Handle on a running fake: URLs, keys and helpers for the ``/_fake`` control API."""

    def __init__(
        self,
        root_url: str,
        *,
        project_key: str = DEFAULT_PROJECT_KEY,
        admin_key: str = DEFAULT_ADMIN_KEY,
        process: subprocess.Popen | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.root_url = root_url.rstrip("/")
        self.base_url = self.root_url + "/v1"
        self.websocket_base_url = self.base_url.replace("http://", "ws://", 1)
        self.project_key = project_key
        self.admin_key = admin_key
        self.project_key_id = key_id_for(project_key)
        self.admin_key_id = key_id_for(admin_key)
        self.project_id = DEFAULT_PROJECT_ID
        self.process = process
        self.log_path = log_path
        self.http = httpx.Client(base_url=self.root_url + "/_fake", timeout=10)

    def __repr__(self) -> str:
        return f"<FakeOpenAI {self.base_url}>"

    def _call(self, method: str, path: str, **kwargs) -> Any:
        resp = self.http.request(method, path, **kwargs)
        resp.raise_for_status()
        return resp.json()

    # state
    def health(self) -> dict:
        return self._call("GET", "/health")

    def reset(self, *, calls: bool = True, usage: bool = True) -> None:
        self._call("POST", "/reset", json={"calls": calls, "usage": usage})

    def calls(self, state: str | None = None) -> list[dict]:
        return self._call("GET", "/calls", params={"state": state} if state else None)["calls"]

    def call(self, call_id: str) -> dict:
        return self._call("GET", f"/calls/{call_id}")

    def wait_for_call(self, call_id: str, predicate, timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            info = self.call(call_id)
            if predicate(info):
                return info
            if time.monotonic() > deadline:
                raise AssertionError(f"call {call_id} did not reach the expected state: {info['state']}")
            time.sleep(0.02)

    # calls
    def create_call(
        self,
        *,
        session: dict | None = None,
        api_key: str | None = None,
        sideband_404_delay: float | None = None,
        session_cap_seconds: float | None = None,
        script: dict | None = None,
    ) -> dict:
        body: dict[str, Any] = {"session": session or {"type": "realtime"}}
        for name, value in (
            ("api_key", api_key),
            ("sideband_404_delay", sideband_404_delay),
            ("session_cap_seconds", session_cap_seconds),
            ("script", script),
        ):
            if value is not None:
                body[name] = value
        return self._call("POST", "/calls", json=body)

    def script(
        self, call_id: str, *, interval_ms: float = 1000, usage: dict | None = None, count: int | None = None
    ) -> dict:
        body: dict[str, Any] = {"interval_ms": interval_ms, "count": count}
        if usage is not None:
            body["usage"] = usage
        return self._call("POST", f"/calls/{call_id}/script", json=body)

    def stop_script(self, call_id: str) -> dict:
        return self._call("DELETE", f"/calls/{call_id}/script")

    def response_done(self, call_id: str, usage: dict) -> str:
        return self._call("POST", f"/calls/{call_id}/response_done", json={"usage": usage})["event_id"]

    def send_event(self, call_id: str, event: dict) -> None:
        self._call("POST", f"/calls/{call_id}/events", json={"event": event})

    def drop_sidebands(self, call_id: str, *, mode: str = "abort", code: int = 1011) -> int:
        return self._call("POST", f"/calls/{call_id}/drop_sidebands", json={"mode": mode, "code": code})[
            "dropped"
        ]

    def end_call(self, call_id: str, reason: str = "client_closed") -> dict:
        return self._call("POST", f"/calls/{call_id}/end", json={"reason": reason})

    def expire_call(self, call_id: str) -> dict:
        return self._call("POST", f"/calls/{call_id}/expire")

    def timings(self, call_id: str) -> dict:
        """``response_done`` send times and hangup arrival times (Unix seconds, float)."""
        info = self.call(call_id)
        return {
            "response_done": [(e["event_id"], e["sent_at"]) for e in info["response_done_log"]],
            "hangup_requests": info["hangup_requests"],
        }

    # faults, latency, clock
    def fault(
        self, endpoint: str, status: int | str = 500, *, count: int = 1, timeout_seconds: float = 30
    ) -> None:
        self._call(
            "POST",
            "/faults",
            json={"endpoint": endpoint, "status": status, "count": count, "timeout_seconds": timeout_seconds},
        )

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def set_latency(self, ms: float) -> None:
        self._call("POST", "/latency", json={"ms": ms})

    def shift_clock(self, seconds: float) -> int:
        return self._call("POST", "/clock", json={"advance_seconds": seconds})["now"]

    def set_clock(self, now: float) -> int:
        return self._call("POST", "/clock", json={"now": now})["now"]

    def now(self) -> int:
        return self._call("GET", "/clock")["now"]

    def usage_records(self, call_id: str | None = None) -> list[dict]:
        return self._call("GET", "/usage", params={"call_id": call_id} if call_id else None)["records"]

    def prices(self) -> dict:
        return self._call("GET", "/prices")["prices"]

    def close(self) -> None:
        self.http.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_fake_openai(*extra_args: str, timeout: float = 20.0, log_dir: str | None = None) -> FakeOpenAI:
    """Start ``python -m fakes.openai`` on a free port and wait until it listens."""
    workdir = Path(tempfile.mkdtemp(prefix="fake-openai-", dir=log_dir))
    ready, log_path = workdir / "port", workdir / "fake.log"
    log_file = log_path.open("wb")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    # Our own interpreter and module, arguments from the caller: no shell, nothing untrusted.
    process = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "fakes.openai",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--ready-file",
            str(ready),
            "--parent-pid",
            str(os.getpid()),
            *extra_args,
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
        env=env,
    )
    log_file.close()
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"fake OpenAI did not start:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.05)
    port = int(ready.read_text())
    return FakeOpenAI(f"http://127.0.0.1:{port}", process=process, log_path=log_path)


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[FakeOpenAI]:
    fake = start_fake_openai()
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def fake_openai(fake_openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    fake_openai_server.reset(calls=True, usage=True)
    yield fake_openai_server
    fake_openai_server.clear_faults()
