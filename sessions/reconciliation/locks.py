"""Row locks of reconciliation (STYLE rule 4), each evaluated at once: call them inside the
transaction that writes the rows. When one transaction takes both, the call comes first, then its
flags (the key-mode check: `keymode.reconcile_window`)."""

from sessions.models import Flag, RealtimeCall


def unreconciled_call_for_update(*, call_pk: int) -> RealtimeCall | None:
    """A key-mode call's row, locked, unless another run has reconciled its window meanwhile."""
    return RealtimeCall.objects.select_for_update().filter(pk=call_pk, key_reconciled_at__isnull=True).first()


def flags_for_update(*, natural_keys: list[str]) -> dict[str, Flag]:
    """The flags with these natural keys, locked (SELECT … FOR UPDATE) in primary-key order. One
    order for every caller means two runs locking overlapping sets never wait on each other in a
    cycle."""
    locked = Flag.objects.select_for_update().filter(natural_key__in=natural_keys).order_by("pk")
    return {flag.natural_key: flag for flag in locked}
