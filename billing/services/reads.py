"""Reads of billing rows for other apps, outside any transaction: they see what is committed.

Imports only the models, so any module of the package (and any app) may use it.
"""

from __future__ import annotations

from billing.models import Hold


def hold_by_key(*, idempotency_key: str) -> Hold | None:
    """The hold placed under `idempotency_key`, or None. A caller that keys its holds by what caused
    them (the key-mode charge of a window) finds the one an earlier run placed, to settle that one
    instead of placing another; like `get_hold`'s, its fields are for `settle_hold`/`release_hold`."""
    return Hold.objects.filter(idempotency_key=idempotency_key).first()
