"""Push live updates to browsers through the channel layer (see consumers.LiveConsumer).

Pushes are best effort (a page that misses one catches up on reload or by polling) and must never
slow down or fail the code that changed something. With a shared layer (Redis), sync callers hand
their pushes to one background thread that keeps its own event loop — and so the layer's Redis
connections — alive, instead of paying a connection and a round trip inside the request.
"""

import asyncio
import atexit
import logging
import threading
from concurrent.futures import Future
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

logger = logging.getLogger(__name__)


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def staff_group() -> str:
    return "staff"


CLOSE_SUSPENDED = 4403
"""The close code of a suspended user's sockets (4000-4999: the application's own)."""


async def apush(group: str, kind: str, data: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    await layer.group_send(group, {"type": "live.event", "kind": kind, "data": data})


class _Sender:
    """One daemon thread with a long-lived event loop that sends pushes in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[Future[None]] = set()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="live-push", daemon=True).start()
                self._loop = loop
            return self._loop

    def submit(self, group: str, kind: str, data: dict[str, Any]) -> None:
        future = asyncio.run_coroutine_threadsafe(apush(group, kind, data), self._ensure_loop())
        self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            logger.warning("live push failed: %s", type(future.exception()).__name__)

    def flush(self, timeout: float = 2.0) -> None:
        """Wait (briefly) for pushes under way, e.g. before a short-lived process exits."""
        for future in list(self._pending):
            try:
                future.result(timeout=timeout)
            except Exception:  # logged by _done
                logger.debug("live push not flushed", exc_info=True)


_sender = _Sender()
atexit.register(_sender.flush)
flush = _sender.flush


def push(group: str, kind: str, data: dict[str, Any]) -> None:
    """Best effort, never raises. Called from sync code (views, services, tasks)."""
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        if isinstance(layer, InMemoryChannelLayer):
            # The in-memory layer lives on the server's own loop: async_to_sync hops onto it.
            async_to_sync(apush)(group, kind, data)
        else:
            _sender.submit(group, kind, data)
    except Exception:
        logger.warning("live push to %s failed", group, exc_info=True)


def push_to_user(user_id: int, kind: str, data: dict[str, Any]) -> None:
    push(user_group(user_id), kind, data)


def close_user_sockets(user_id: int, *, code: int = CLOSE_SUSPENDED) -> None:
    """Close every open live socket of the user, in every web process (e.g. on suspension).
    Waits for the layer to take the message; a failure is logged as an error (the sockets may
    still be open) and never undoes the caller's committed change."""
    try:
        layer = get_channel_layer()
        if layer is not None:
            async_to_sync(layer.group_send)(user_group(user_id), {"type": "live.close", "code": code})
    except Exception:
        logger.error("could not close the live sockets of user %s", user_id, exc_info=True)
