"""Staff uploads of the OpenAI dashboard's CSV exports (reference §8.3): all rows or none.

Columns are matched by name, so their order does not matter; optional columns may be missing.
A file without a required column, or with a bad value, is rejected with one message per row and
nothing is imported.
"""

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from functools import partial

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import User
from sessions.reconciliation import importer
from sessions.reconciliation.models import USAGE_TOKEN_FIELDS, ImportSource, UsageUpload

MAX_ERRORS = 100
MAX_BYTES = 50 * 1024 * 1024

USAGE_REQUIRED = ("start_time", "end_time", "input_tokens", "output_tokens")
USAGE_OPTIONAL = (
    *[f for f in USAGE_TOKEN_FIELDS if f not in USAGE_REQUIRED],
    "project_id",
    "api_key_id",
    "model",
)
COSTS_REQUIRED = ("start_time", "end_time", "amount_value")
COSTS_OPTIONAL = ("amount_currency", "quantity", "quantity_unit", "line_item", "api_key_id", "project_id")
INTEGER_COLUMNS = set(USAGE_TOKEN_FIELDS)


class CsvRejected(Exception):
    """The file was not imported. `errors` holds one message per bad row (and the header)."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors[:5]))
        self.errors = errors


@dataclass
class CsvResult:
    upload: UsageUpload
    rows: int
    errors: list[str] = field(default_factory=list)


def _timestamp(value: str, iso: str | None) -> int:
    value = (value or "").strip()
    if value:
        try:
            return int(float(value))
        except ValueError:
            pass
        parsed = parse_datetime(value)
        if parsed is not None:
            return importer.to_unix(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))
        raise ValueError(f"not a time: {value!r}")
    if iso:
        return _timestamp(iso, None)
    raise ValueError("empty")


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CsvRejected(
            ["The file is not UTF-8 text: upload the CSV exactly as the dashboard exported it."]
        ) from None


def _parse(text: str, *, kind: str) -> tuple[list[dict], list[str]]:
    required = USAGE_REQUIRED if kind == UsageUpload.Kind.USAGE else COSTS_REQUIRED
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    if not header:
        raise CsvRejected(["The file is empty: expected a header row."])
    errors: list[str] = []
    missing = [c for c in required if c not in header]
    # An export of an empty period has only the four time columns; that is a valid empty file.
    time_only = kind == UsageUpload.Kind.USAGE and set(missing) <= {"input_tokens", "output_tokens"}
    if missing:
        errors.append(f"Header: missing required column(s) {', '.join(missing)}.")
    rows: list[dict] = []
    for line, raw in enumerate(reader, start=2):
        if not any((v or "").strip() for v in raw.values() if isinstance(v, str)):
            continue
        problems = [f"no value for required column {c}" for c in missing]
        parsed: dict = {}
        try:
            parsed["start"] = _timestamp(raw.get("start_time", ""), raw.get("start_time_iso"))
        except ValueError as exc:
            problems.append(f"start_time is {exc}")
        try:
            parsed["end"] = _timestamp(raw.get("end_time", ""), raw.get("end_time_iso"))
        except ValueError as exc:
            problems.append(f"end_time is {exc}")
        if "start" in parsed and "end" in parsed and parsed["end"] <= parsed["start"]:
            problems.append("end_time is not after start_time")
        result: dict = {}
        for column in (*required, *(USAGE_OPTIONAL if kind == UsageUpload.Kind.USAGE else COSTS_OPTIONAL)):
            if column in ("start_time", "end_time") or column not in header:
                continue
            value = (raw.get(column) or "").strip()
            if column in INTEGER_COLUMNS:
                if value == "":
                    if column in required:
                        problems.append(f"{column} is empty")
                    continue
                try:
                    number = float(value)
                except ValueError:
                    problems.append(f"{column} is not a number: {value!r}")
                    continue
                if number < 0 or number != int(number):
                    problems.append(f"{column} is not a whole number ≥ 0: {value!r}")
                    continue
                result[column] = int(number)
            elif column == "amount_value":
                try:
                    importer.microusd(value)
                except ValueError:
                    problems.append(f"amount_value is not an amount: {value!r}")
                    continue
                result["amount"] = {"value": value, "currency": (raw.get("amount_currency") or "usd").strip()}
            elif column == "quantity":
                if value:
                    try:
                        float(value)
                    except ValueError:
                        problems.append(f"quantity is not a number: {value!r}")
                        continue
                    result["quantity"] = value
            elif column != "amount_currency":
                result[column] = value or None
        if problems:
            errors.append(f"Row {line}: {'; '.join(problems)}.")
            if len(errors) >= MAX_ERRORS:
                errors.append("… more rows have errors; fix these first.")
                break
            continue
        rows.append({**parsed, "result": result})
    if errors and not (time_only and not rows and len(errors) == 1):
        raise CsvRejected(errors)
    return rows, []


def import_csv(*, kind: str, data: bytes, file_name: str = "", uploaded_by: User | None = None) -> CsvResult:
    """Import a dashboard CSV export (`kind` usage or costs), upserting buckets as the API pull
    does, in one transaction. Raises CsvRejected (nothing imported) on any bad row."""
    if kind not in UsageUpload.Kind.values:
        raise CsvRejected([f"Unknown export kind {kind!r}."])
    if len(data) > MAX_BYTES:
        raise CsvRejected(
            [f"The file is larger than {MAX_BYTES // (1024 * 1024)} MB: export a shorter period."]
        )
    rows, _ = _parse(_decode(data), kind=kind)
    now = timezone.now()
    upsert: Callable[[], int]
    if kind == UsageUpload.Kind.USAGE:
        usage = importer.merge_duplicates([
            importer.usage_bucket(start=r["start"], end=r["end"], result=r["result"], source=ImportSource.CSV, now=now)
            for r in rows
        ], importer.USAGE_KEY)
        starts = [b.start_time for b in usage]
        upsert = partial(importer.upsert_usage, usage)
    else:
        costs = importer.merge_duplicates([
            importer.cost_bucket(start=r["start"], end=r["end"], result=r["result"], source=ImportSource.CSV, now=now)
            for r in rows
        ], importer.COST_KEY)
        starts = [b.start_time for b in costs]
        upsert = partial(importer.upsert_costs, costs)
    with transaction.atomic():
        upload = UsageUpload.objects.create(
            kind=kind,
            file_name=file_name[:255],
            uploaded_by=uploaded_by,
            uploaded_at=now,
            rows=len(rows),
            period_start=min(starts) if starts else None,
            period_end=max(starts) if starts else None,
        )
        upsert()
    return CsvResult(upload=upload, rows=len(rows))
