"""Everything the fake remembers between requests."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from fakes.openai.call import Call
from fakes.openai.config import FakeConfig, KeyInfo
from fakes.openai.usage_store import UsageStore


@dataclass
class ClientSecret:
    value: str
    expires_at: int
    session: dict
    minted_by: KeyInfo
    calls: list[str] = field(default_factory=list)


@dataclass
class Fault:
    endpoint: str
    remaining: int
    status: int | str  # 429, 500, ... or "timeout"
    timeout_seconds: float = 30.0
    hits: int = 0

    def describe(self) -> dict:
        return {
            "endpoint": self.endpoint,
            "remaining": self.remaining,
            "status": self.status,
            "timeout_seconds": self.timeout_seconds,
            "hits": self.hits,
        }


class Fake:
    def __init__(self, config: FakeConfig) -> None:
        self.config = config
        self.store = UsageStore(config.usage_db)
        self.calls: dict[str, Call] = {}
        self.secrets: dict[str, ClientSecret] = {}
        self.faults: list[Fault] = []
        self.latency_ms = config.latency_ms
        self.clock_offset = 0.0
        self.request_log: list[dict] = []

    def now(self) -> int:
        """Unix seconds as the fake's APIs see them (shiftable for usage buckets and TTLs)."""
        return int(time.time() + self.clock_offset)

    def take_fault(self, endpoint: str) -> Fault | None:
        for fault in self.faults:
            if fault.remaining > 0 and fault.endpoint in (endpoint, "*"):
                fault.remaining -= 1
                fault.hits += 1
                return fault
        return None

    async def reset(self, *, calls: bool = True, usage: bool = False) -> None:
        self.faults.clear()
        self.latency_ms = self.config.latency_ms
        self.clock_offset = 0.0
        self.request_log.clear()
        if calls:
            live = [c for c in self.calls.values() if c.live]
            await asyncio.gather(*(c.end("reset") for c in live), return_exceptions=True)
            self.calls.clear()
            self.secrets.clear()
        if usage:
            self.store.clear()

    async def shutdown(self) -> None:
        live = [c for c in self.calls.values() if c.live]
        await asyncio.gather(*(c.end("shutdown", code=1001) for c in live), return_exceptions=True)
        self.store.close()
