"""Webhook delivery: Stripe's v1 signatures, retries with backoff, and test switches.

One worker per endpoint sends its deliveries one at a time, in the order they were queued,
so tests see a deterministic order unless they ask for disorder (``out_of_order`` reverses
each action's batch; ``hold``/``release`` reorders across actions). A failed attempt goes
back on the queue after its backoff and does not block the deliveries behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .store import Store, new_id

log = logging.getLogger("fakes.stripe.webhooks")


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header value for ``payload``, as Stripe computes it."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def matches(enabled_events: list[str], event_type: str) -> bool:
    for pattern in enabled_events:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


@dataclass
class DeliveryConfig:
    duplicates: int = 1  # copies of every delivery; 2 sends each event twice
    out_of_order: bool = False
    retry_base: float = 2.0
    retry_factor: float = 2.0
    max_attempts: int = 6
    timeout: float = 10.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Delivery:
    id: str
    event_id: str
    event_type: str
    endpoint_id: str
    url: str
    copy: int
    payload: str = field(repr=False)
    secret: str = field(repr=False)
    status: str = "pending"  # pending -> succeeded | failed; held while deliveries are held
    attempts: list[dict[str, Any]] = field(default_factory=list)
    next_attempt_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event": self.event_id,
            "type": self.event_type,
            "endpoint": self.endpoint_id,
            "url": self.url,
            "copy": self.copy,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
        }


class Deliverer:
    def __init__(self, store: Store, config: DeliveryConfig) -> None:
        self.store = store
        self.config = config
        self.deliveries: list[Delivery] = []
        self.held = False
        self._held: list[Delivery] = []
        self._queues: dict[str, asyncio.Queue[Delivery]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._session: aiohttp.ClientSession | None = None

    # --- queueing -----------------------------------------------------------------------

    def dispatch(self, events: list[dict[str, Any]]) -> None:
        """Queue deliveries of a batch of new events to every endpoint that wants them."""
        endpoints = list(self.store.find("webhook_endpoint", status="enabled"))
        endpoints.sort(key=lambda we: self.store.order[we["id"]])
        created: list[Delivery] = []
        for event in events:
            wanted = [we for we in endpoints if matches(we["enabled_events"], event["type"])]
            event["pending_webhooks"] = len(wanted)
            event["_pending_endpoints"] = {we["id"] for we in wanted}
            for we in wanted:
                created.extend(self._deliveries_for(event, we))
        if self.config.out_of_order:
            created.reverse()
        self._enqueue_all(created)

    def resend(self, event: dict[str, Any]) -> list[Delivery]:
        endpoints = [
            we
            for we in self.store.find("webhook_endpoint", status="enabled")
            if matches(we["enabled_events"], event["type"])
        ]
        created = [d for we in endpoints for d in self._deliveries_for(event, we)]
        self._enqueue_all(created)
        return created

    def _deliveries_for(self, event: dict[str, Any], we: dict[str, Any]) -> list[Delivery]:
        payload = json.dumps(self.store.render(event), indent=2)
        earlier = sum(1 for d in self.deliveries if d.event_id == event["id"] and d.endpoint_id == we["id"])
        out = []
        for n in range(max(1, self.config.duplicates)):
            d = Delivery(
                id=new_id("whdel_"),
                event_id=event["id"],
                event_type=event["type"],
                endpoint_id=we["id"],
                url=we["url"],
                copy=earlier + n,
                payload=payload,
                secret=we["_secret"],
            )
            self.deliveries.append(d)
            out.append(d)
        return out

    def _enqueue_all(self, deliveries: list[Delivery]) -> None:
        for d in deliveries:
            if self.held:
                d.status = "held"
                self._held.append(d)
            else:
                self._enqueue(d)

    def _enqueue(self, d: Delivery) -> None:
        d.status = "pending"
        queue = self._queues.get(d.endpoint_id)
        if queue is None:
            queue = self._queues[d.endpoint_id] = asyncio.Queue()
            self._workers[d.endpoint_id] = asyncio.get_running_loop().create_task(self._work(queue))
        queue.put_nowait(d)

    def hold(self) -> None:
        self.held = True

    def release(self, order: str = "fifo") -> list[Delivery]:
        held, self._held, self.held = self._held, [], False
        if order == "reverse":
            held.reverse()
        elif order == "shuffle":
            random.shuffle(held)
        elif order != "fifo":
            raise ValueError(f"order must be fifo, reverse or shuffle, not {order!r}")
        for d in held:
            self._enqueue(d)
        return held

    # --- sending --------------------------------------------------------------------------

    async def _work(self, queue: asyncio.Queue[Delivery]) -> None:
        while True:
            d = await queue.get()
            await self._attempt(d)

    async def _attempt(self, d: Delivery) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        # Every attempt is signed afresh, as Stripe's retries are: new t=, same event id.
        header = sign(d.payload, d.secret)
        attempt: dict[str, Any] = {"at": time.time(), "status": None, "error": None}
        try:
            async with self._session.post(
                d.url,
                data=d.payload.encode(),
                headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "Stripe-Signature": header,
                    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                    "Cache-Control": "no-cache",
                },
                timeout=aiohttp.ClientTimeout(total=self.config.timeout),
                allow_redirects=False,
            ) as resp:
                attempt["status"] = resp.status
                attempt["body"] = (await resp.text(errors="replace"))[:300]
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            attempt["error"] = f"{type(exc).__name__}: {exc}"
        d.attempts.append(attempt)
        status = attempt["status"]
        if status is not None and 200 <= status < 300:
            d.status, d.next_attempt_at = "succeeded", None
            self._mark_delivered(d)
            return
        if len(d.attempts) >= self.config.max_attempts:
            d.status, d.next_attempt_at = "failed", None
            log.warning("webhook %s to %s failed after %d attempts", d.event_type, d.url, len(d.attempts))
            return
        delay = self.config.retry_base * self.config.retry_factor ** (len(d.attempts) - 1)
        d.next_attempt_at = time.time() + delay
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def retry() -> None:
            self._timers.discard(handle)
            self._enqueue(d)

        handle = loop.call_later(delay, retry)
        self._timers.add(handle)

    def _mark_delivered(self, d: Delivery) -> None:
        event = self.store.objects.get(d.event_id)
        if event is None:
            return
        pending = event.get("_pending_endpoints", set())
        if d.endpoint_id in pending:
            pending.discard(d.endpoint_id)
            event["pending_webhooks"] = len(pending)

    # --- inspection and lifecycle ------------------------------------------------------------

    def busy(self) -> bool:
        return any(d.status == "pending" for d in self.deliveries)

    async def reset(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for task in self._workers.values():
            task.cancel()
        for task in self._workers.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        self._queues.clear()
        self.deliveries.clear()
        self._held.clear()
        self.held = False

    async def close(self) -> None:
        await self.reset()
        if self._session is not None:
            await self._session.close()
            self._session = None
