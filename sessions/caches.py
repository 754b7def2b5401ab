"""Per-process caches, for a few seconds, of what every call start reads and staff rarely change:
active assistants (with their session config, serialised once) and model prices.

An entry lives `REALTIME_CACHE_SECONDS` (0 turns the caches off), so an edit in the admin reaches
every web process within that time; a save or delete in this process clears them at once. Cached
instances are shared by requests: read them, never change them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.db.models.signals import post_delete, post_save

from sessions.models import Assistant, ModelPrice

T = TypeVar("T")

_entries: dict[tuple[str, Any], tuple[float, Any]] = {}
_lock = threading.Lock()


def _cached(key: tuple[str, Any], load: Callable[[], T]) -> T:
    ttl = settings.REALTIME_CACHE_SECONDS
    if ttl <= 0:
        return load()
    now = time.monotonic()
    hit = _entries.get(key)
    if hit is not None and hit[0] > now:
        value: T = hit[1]
        return value
    value = load()
    with _lock:
        _entries[key] = (now + ttl, value)
    return value


def clear(**_: Any) -> None:
    """Forget everything (a signal receiver too: any save of an assistant or a price)."""
    with _lock:
        _entries.clear()


for _model in (Assistant, ModelPrice):
    post_save.connect(clear, sender=_model, dispatch_uid=f"sessions.caches.clear.{_model.__name__}")
    post_delete.connect(clear, sender=_model, dispatch_uid=f"sessions.caches.clear_deleted.{_model.__name__}")


@dataclass(frozen=True)
class CachedAssistant:
    assistant: Assistant
    session_json: str  # assistant.session_config() as the JSON OpenAI is sent


def active_assistant(pk: int) -> CachedAssistant | None:
    """The active assistant `pk` and its session config, or None."""

    def load() -> CachedAssistant | None:
        assistant = Assistant.objects.filter(pk=pk, is_active=True).first()
        if assistant is None:
            return None
        return CachedAssistant(assistant, json.dumps(assistant.session_config(), separators=(",", ":")))

    return _cached(("assistant", pk), load)


def model_price(model: str) -> ModelPrice | None:
    """The price table's row for `model`, or None."""
    return _cached(("price", model), lambda: ModelPrice.objects.filter(model=model).first())
