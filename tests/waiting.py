"""Waiting for a condition instead of sleeping: poll until it holds, or fail saying what never came.

The timeout only bounds how long a broken test hangs; it is not what the test asserts, so give it
room for a loaded machine (speed targets are measured in benchmarks/, never here).
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

INTERVAL = 0.02


Description = str | Callable[[], str]


def _timed_out(what: Description, timeout: float, last: object) -> AssertionError:
    """`what` may be a function, called only on failure (e.g. to attach a server's log)."""
    text = what() if callable(what) else what
    return AssertionError(f"timed out after {timeout} s waiting for {text} (last: {last!r})")


def wait_until(predicate: Callable[[], T | None], *, timeout: float = 10.0, what: Description = "the condition",
               interval: float = INTERVAL) -> T:
    """Call `predicate` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout, value)
        time.sleep(interval)


async def await_until(predicate: Callable[[], T | None | Awaitable[T | None]], *, timeout: float = 10.0,
                      what: Description = "the condition", interval: float = INTERVAL) -> T:
    """`wait_until` for a test running on an event loop: polls without blocking the loop (the
    predicate may be a coroutine function)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout, value)
        await asyncio.sleep(interval)
