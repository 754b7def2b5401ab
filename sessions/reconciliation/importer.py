"""Import OpenAI's usage and costs (Usage API / Costs API) into UsageBucket / CostBucket.

Idempotent: every bucket is upserted by its natural key, one page per transaction, and the
watermark moves only after the last page was stored. A pull killed half-way leaves stored pages
(re-upserted identically next time) and the old watermark, so the next run covers the gap.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TypeVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from sessions import openai_client
from sessions.reconciliation.models import (
    USAGE_TOKEN_FIELDS,
    CostBucket,
    ImportSource,
    ImportWatermark,
    UsageBucket,
)

logger = logging.getLogger(__name__)

USAGE = "usage"
COSTS = "costs"
# Key-mode windows (keymode.py) pull their own minutes: their own watermark row, so the periodic
# import's watermark never jumps over minutes it has not read.
KEY_WINDOWS = "usage:key-windows"
MAX_PAGES = 10_000  # a runaway cursor must not loop forever
PAGE_LIMITS = {USAGE: 1440, COSTS: 180, KEY_WINDOWS: 1440}  # buckets per page: the APIs' maxima

USAGE_KEY = ["start_time", "width_seconds", "project_id", "api_key_id", "model"]
USAGE_UPDATE = [*USAGE_TOKEN_FIELDS, "source", "imported_at"]
COST_KEY = ["start_time", "width_seconds", "project_id", "line_item", "api_key_id"]
COST_UPDATE = ["amount_microusd", "currency", "quantity", "quantity_unit", "source", "imported_at"]


@dataclass
class ImportResult:
    start: datetime
    end: datetime
    pages: int = 0
    buckets: int = 0


def to_dt(unix_seconds: int | float) -> datetime:
    return datetime.fromtimestamp(int(unix_seconds), tz=UTC)


def to_unix(dt: datetime) -> int:
    return int(dt.timestamp())


def microusd(value) -> int:
    """A dollar amount (float, str or Decimal) as whole micro-dollars, half up."""
    try:
        return int((Decimal(str(value)) * 1_000_000).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"not an amount: {value!r}") from exc


def _int(value) -> int:
    if value is None or value == "":
        return 0
    return int(Decimal(str(value)))  # the CSV export writes counts as floats ("3.0")


def usage_bucket(*, start: int, end: int, result: dict, source: str, now: datetime) -> UsageBucket:
    return UsageBucket(
        start_time=to_dt(start),
        width_seconds=int(end) - int(start),
        project_id=result.get("project_id") or "",
        api_key_id=result.get("api_key_id") or "",
        model=result.get("model") or "",
        source=source,
        imported_at=now,
        **{name: _int(result.get(name)) for name in USAGE_TOKEN_FIELDS},
    )


def cost_bucket(*, start: int, end: int, result: dict, source: str, now: datetime) -> CostBucket:
    amount = result.get("amount") or {}
    quantity = result.get("quantity")
    return CostBucket(
        start_time=to_dt(start),
        width_seconds=int(end) - int(start),
        project_id=result.get("project_id") or "",
        line_item=result.get("line_item") or "",
        api_key_id=result.get("api_key_id") or "",
        amount_microusd=microusd(amount.get("value") or 0),
        currency=(amount.get("currency") or "usd").lower(),
        quantity=Decimal(str(quantity)) if quantity not in (None, "") else None,
        quantity_unit=result.get("quantity_unit") or "",
        source=source,
        imported_at=now,
    )


def upsert_usage(buckets: list[UsageBucket]) -> int:
    if buckets:
        UsageBucket.objects.bulk_create(
            buckets,
            update_conflicts=True,
            unique_fields=USAGE_KEY,
            update_fields=USAGE_UPDATE,
            batch_size=1000,
        )
    return len(buckets)


def upsert_costs(buckets: list[CostBucket]) -> int:
    if buckets:
        CostBucket.objects.bulk_create(
            buckets, update_conflicts=True, unique_fields=COST_KEY, update_fields=COST_UPDATE, batch_size=1000
        )
    return len(buckets)


Bucket = TypeVar("Bucket", UsageBucket, CostBucket)


def merge_duplicates(buckets: list[Bucket], key: list[str]) -> list[Bucket]:
    """One bucket per natural key (`key`: USAGE_KEY or COST_KEY), the last one winning. One page
    never repeats a group, but a CSV may (csv_import uses this before its upsert)."""
    found = {tuple(getattr(b, f) for f in key): b for b in buckets}
    return list(found.values())


def _window(name: str, *, until: datetime | None, width: int) -> tuple[ImportWatermark, datetime, datetime]:
    mark, _ = ImportWatermark.objects.get_or_create(name=name)
    now = until or timezone.now()
    if mark.watermark:
        start = mark.watermark - timedelta(minutes=settings.RECONCILIATION_OVERLAP_MINUTES)
    else:
        start = now - timedelta(hours=settings.RECONCILIATION_INITIAL_LOOKBACK_HOURS)
    start = to_dt(to_unix(start) // width * width)
    end = to_dt(-(-to_unix(now) // 60) * 60)  # up to the end of the current minute
    return mark, start, end


def _pull(
    name: str, *, fetch, convert, upsert, key, width: int, since: datetime | None, until: datetime | None
) -> ImportResult:
    mark, start, end = _window(name, until=until, width=width)
    if since is not None:
        start = to_dt(to_unix(since) // width * width)
    ImportWatermark.objects.filter(pk=mark.pk).update(last_started_at=timezone.now())
    result = ImportResult(start=start, end=end)
    page = None
    try:
        while result.pages < MAX_PAGES:
            body = fetch(start_time=to_unix(start), end_time=to_unix(end), page=page, limit=PAGE_LIMITS[name])
            now = timezone.now()
            rows = [
                convert(
                    start=bucket["start_time"],
                    end=bucket["end_time"],
                    result=item,
                    source=ImportSource.API,
                    now=now,
                )
                for bucket in body.get("data") or []
                for item in bucket.get("results") or []
            ]
            with transaction.atomic():
                result.buckets += upsert(merge_duplicates(rows, key))
            result.pages += 1
            page = body.get("next_page")
            if not body.get("has_more") or not page:
                break
    except (openai_client.UpstreamError, ValueError) as exc:
        message = getattr(exc, "message", str(exc))
        ImportWatermark.objects.filter(pk=mark.pk).update(last_error=message[:500])
        raise
    ImportWatermark.objects.filter(pk=mark.pk).update(
        watermark=max(end, mark.watermark) if mark.watermark else end,
        last_finished_at=timezone.now(),
        last_error="",
        buckets_seen=result.buckets,
    )
    logger.info(
        "imported %s: %d bucket(s) in %d page(s), %s → %s", name, result.buckets, result.pages, start, end
    )
    return result


def _pull_usage(name: str, *, since: datetime | None, until: datetime | None) -> ImportResult:
    return _pull(
        name,
        fetch=openai_client.usage_completions_page,
        convert=usage_bucket,
        upsert=upsert_usage,
        key=USAGE_KEY,
        width=60,
        since=since,
        until=until,
    )


def import_usage(*, since: datetime | None = None, until: datetime | None = None) -> ImportResult:
    """Pull 1-minute usage buckets (project × key × model) from the watermark minus the overlap."""
    return _pull_usage(USAGE, since=since, until=until)


def import_usage_range(*, since: datetime, until: datetime) -> ImportResult:
    """Pull the 1-minute usage buckets of [since, until) only (whole minutes), upserted like every
    other import. The periodic import's watermark is left alone."""
    return _pull_usage(KEY_WINDOWS, since=since, until=until)


def import_costs(*, since: datetime | None = None, until: datetime | None = None) -> ImportResult:
    """Pull daily costs (line item × project) from the watermark minus the overlap (whole days)."""
    return _pull(
        COSTS,
        fetch=openai_client.costs_page,
        convert=cost_bucket,
        upsert=upsert_costs,
        key=COST_KEY,
        width=86400,
        since=since,
        until=until,
    )
