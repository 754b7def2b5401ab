"""Push live updates to browsers through the channel layer (see consumers.LiveConsumer).

Pushes are best effort (a page that misses one catches up on reload or by polling) and must never
slow down or fail the code that changed something. With a shared layer (Redis), sync callers hand
their pushes to one background thread that keeps its own event loop — and so the layer's Redis
connections — alive, instead of paying a connection and a round trip inside the request.

An operation that changes several things a page shows (a call start: the wallet's held credits,
then the call) runs in `bundled()`: its pushes leave as one message per user when it ends, a
`batch` that static/js/live.js unpacks, instead of one channel-layer send (and Redis round trips)
each.
"""

import asyncio
import atexit
import contextlib
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextvars import ContextVar
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


BATCH = "batch"
"""The kind of a bundled push: its data is the list of `{"type": kind, "data": data}` it carries."""


async def apush(group: str, kind: str, data: dict[str, Any] | list[dict[str, Any]]) -> None:
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

    def submit(self, group: str, kind: str, data: dict[str, Any] | list[dict[str, Any]]) -> None:
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


_bundle: ContextVar[list[tuple[str, str, dict[str, Any]]] | None] = ContextVar("live_bundle", default=None)


@contextlib.contextmanager
def bundled() -> Iterator[None]:
    """Hold back the pushes made inside the block (on-commit ones included) and send them when it
    ends, raising or not: one message per group, a `batch` when there are several. A later push of
    the same kind about the same thing (`data["id"]`; the wallet has none) replaces an earlier one,
    which it supersedes. Nested blocks send with the outermost."""
    if _bundle.get() is not None:
        yield
        return
    pending: list[tuple[str, str, dict[str, Any]]] = []
    token = _bundle.set(pending)
    try:
        yield
    finally:
        _bundle.reset(token)
        for group, messages in _batches(pending).items():
            if len(messages) == 1:
                _send(group, messages[0]["type"], messages[0]["data"])
            else:
                _send(group, BATCH, messages)


def _batches(pending: list[tuple[str, str, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    by_group: dict[str, dict[tuple[str, Any], dict[str, Any]]] = {}
    for group, kind, data in pending:
        messages = by_group.setdefault(group, {})
        key = (kind, data.get("id"))
        messages.pop(key, None)  # superseded: the newer figures go out, in the newer one's place
        messages[key] = {"type": kind, "data": data}
    return {group: list(messages.values()) for group, messages in by_group.items()}


def push(group: str, kind: str, data: dict[str, Any]) -> None:
    """Best effort, never raises. Called from sync code (views, services, tasks)."""
    pending = _bundle.get()
    if pending is not None:
        pending.append((group, kind, data))
        return
    _send(group, kind, data)


def _send(group: str, kind: str, data: dict[str, Any] | list[dict[str, Any]]) -> None:
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
