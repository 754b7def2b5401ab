"""Usage API (``/v1/organization/usage/completions``) and Costs API (``/v1/organization/costs``)."""

import base64
from collections import defaultdict
from decimal import Decimal
from typing import Literal, overload

from multidict import MultiMapping

from fakes.openai.errors import ApiError
from fakes.openai.pricing import TOKEN_CLASSES, cost_usd, line_item
from fakes.openai.usage_store import UsageRow, UsageStore

WIDTHS = {"1m": 60, "1h": 3600, "1d": 86400}
# bucket width -> (default limit, max limit), from the API reference.
USAGE_LIMITS = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}
COSTS_LIMITS = (7, 180)

USAGE_GROUPS = ("project_id", "user_id", "api_key_id", "model", "batch", "service_tier", "api_source")
COSTS_GROUPS = ("project_id", "user_id", "line_item", "api_key_id", "api_source")


def multi(query: MultiMapping[str], name: str) -> list[str]:
    # The Python SDK sends ``name[]=a&name[]=b``; curl examples and other clients repeat ``name=``.
    values = list(query.getall(name + "[]", [])) + list(query.getall(name, []))
    return [v for v in values if v != ""]


@overload
def _int_param(query: MultiMapping[str], name: str, *, required: Literal[True]) -> int: ...
@overload
def _int_param(query: MultiMapping[str], name: str, *, required: bool = False) -> int | None: ...
def _int_param(query: MultiMapping[str], name: str, *, required: bool = False) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        if required:
            raise ApiError(
                400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
            )
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(
            400, f"Invalid value for '{name}': expected an integer.", param=name, code="invalid_type"
        ) from None


def _page_token(start: int) -> str:
    return "page_" + base64.urlsafe_b64encode(f"fake:{start}".encode()).decode()


def _parse_page(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token.removeprefix("page_").encode()).decode()
        prefix, _, value = raw.partition(":")
        if prefix != "fake":
            raise ValueError
        return int(value)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "Invalid page cursor.", param="page", code="invalid_page") from None


def _window(query: MultiMapping[str], width_name: str, limits: tuple[int, int], now: int):
    width = WIDTHS[width_name]
    start_time = _int_param(query, "start_time", required=True)
    end_time = _int_param(query, "end_time")
    default_limit, max_limit = limits
    limit = _int_param(query, "limit")
    if limit is None:
        limit = default_limit
    if not 1 <= limit <= max_limit:
        raise ApiError(
            400,
            f"Invalid 'limit': must be between 1 and {max_limit} for bucket_width={width_name}.",
            param="limit",
            code="invalid_value",
        )
    if end_time is None:
        # Without an end, report up to and including the bucket that holds "now".
        end_time = (now // width + 1) * width
    if end_time <= start_time:
        raise ApiError(400, "'end_time' must be after 'start_time'.", param="end_time", code="invalid_value")
    first = start_time // width * width
    page = query.get("page")
    if page:
        first = max(first, _parse_page(page))
    starts: list[int] = []
    b = first
    while b < end_time and len(starts) < limit:
        starts.append(b)
        b += width
    has_more = b < end_time
    next_page = _page_token(b) if has_more else None
    return width, starts, start_time, end_time, has_more, next_page


def _rows_for(
    store: UsageStore, starts: list[int], width: int, start_time: int, end_time: int
) -> list[UsageRow]:
    if not starts:
        return []
    return store.rows(max(start_time, starts[0]), min(end_time, starts[-1] + width))


def _groups(query: MultiMapping[str], allowed: tuple[str, ...]) -> list[str]:
    groups = multi(query, "group_by")
    for g in groups:
        if g not in allowed:
            raise ApiError(
                400,
                f"Invalid value for 'group_by': '{g}'. Supported values are: {', '.join(allowed)}.",
                param="group_by",
                code="invalid_value",
            )
    return groups


def _key_value(row: UsageRow, field: str):
    return {
        "project_id": row.project_id,
        "user_id": None,
        "api_key_id": row.api_key_id,
        "model": row.model,
        "batch": False,
        "service_tier": "default",
        "api_source": "unlabeled",
    }[field]


def completions(store: UsageStore, query: MultiMapping[str], now: int) -> dict:
    width_name = query.get("bucket_width") or "1d"
    if width_name not in WIDTHS:
        raise ApiError(
            400,
            "Invalid 'bucket_width': must be one of 1m, 1h, 1d.",
            param="bucket_width",
            code="invalid_value",
        )
    width, starts, start_time, end_time, has_more, next_page = _window(
        query, width_name, USAGE_LIMITS[width_name], now
    )
    groups = _groups(query, USAGE_GROUPS)
    project_ids, api_key_ids = multi(query, "project_ids"), multi(query, "api_key_ids")
    models, user_ids = multi(query, "models"), multi(query, "user_ids")
    batch = query.get("batch")

    def keep(row: UsageRow) -> bool:
        if project_ids and row.project_id not in project_ids:
            return False
        if api_key_ids and row.api_key_id not in api_key_ids:
            return False
        if models and row.model not in models:
            return False
        # The fake serves no user-attributed and no batch traffic.
        if user_ids:
            return False
        return batch is None or batch.lower() not in ("true", "1")

    data = []
    rows = _rows_for(store, starts, width, start_time, end_time)
    by_bucket: dict[int, dict[tuple, dict[str, int]]] = defaultdict(dict)
    for row in rows:
        if not keep(row):
            continue
        bucket = row.ts // width * width
        key = tuple(_key_value(row, g) for g in groups)
        acc = by_bucket[bucket].setdefault(key, defaultdict(int))
        acc["input_tokens"] += row.input_tokens
        acc["output_tokens"] += row.output_tokens
        acc["num_model_requests"] += 1
        for cls in TOKEN_CLASSES:
            acc[cls] += row.tokens[cls]
    for b in starts:
        results = []
        for key, acc in by_bucket.get(b, {}).items():
            cached = (
                acc["input_cached_text_tokens"]
                + acc["input_cached_audio_tokens"]
                + acc["input_cached_image_tokens"]
            )
            uncached = acc["input_text_tokens"] + acc["input_audio_tokens"] + acc["input_image_tokens"]
            result = {
                "object": "organization.usage.completions.result",
                "input_tokens": acc["input_tokens"],
                "output_tokens": acc["output_tokens"],
                "input_cached_tokens": cached,
                "input_uncached_tokens": uncached,
                "input_cache_write_tokens": 0,
                "input_cache_write_30m_tokens": 0,
                "input_cache_write_12h_tokens": 0,
                **{cls: acc[cls] for cls in TOKEN_CLASSES},
                "output_image_tokens": 0,
                "num_model_requests": acc["num_model_requests"],
                **dict.fromkeys(USAGE_GROUPS),
            }
            result.update(dict(zip(groups, key, strict=True)))
            results.append(result)
        data.append({"object": "bucket", "start_time": b, "end_time": b + width, "results": results})
    return {"object": "page", "data": data, "has_more": has_more, "next_page": next_page}


def costs(store: UsageStore, query: MultiMapping[str], now: int) -> dict:
    width_name = query.get("bucket_width") or "1d"
    if width_name != "1d":
        raise ApiError(
            400, "Invalid 'bucket_width': only 1d is supported.", param="bucket_width", code="invalid_value"
        )
    width, starts, start_time, end_time, has_more, next_page = _window(query, "1d", COSTS_LIMITS, now)
    groups = _groups(query, COSTS_GROUPS)
    project_ids, api_key_ids, line_items = (
        multi(query, "project_ids"),
        multi(query, "api_key_ids"),
        multi(query, "line_items"),
    )
    rows = _rows_for(store, starts, width, start_time, end_time)
    acc: dict[int, dict[tuple, list]] = defaultdict(dict)
    for row in rows:
        if project_ids and row.project_id not in project_ids:
            continue
        if api_key_ids and row.api_key_id not in api_key_ids:
            continue
        bucket = row.ts // width * width
        for cls in TOKEN_CLASSES:
            n = row.tokens[cls]
            if not n:
                continue
            item = line_item(row.model, cls)
            if line_items and item not in line_items:
                continue
            values = {
                "project_id": row.project_id,
                "user_id": None,
                "line_item": item,
                "api_key_id": row.api_key_id,
                "api_source": "unlabeled",
            }
            key = tuple(values[g] for g in groups)
            slot = acc[bucket].setdefault(key, [Decimal(0), 0])
            slot[0] += cost_usd(row.model, {cls: n})
            slot[1] += n
    data = []
    for b in starts:
        results = []
        for key, (amount, quantity) in acc.get(b, {}).items():
            result = {
                "object": "organization.costs.result",
                "amount": {"value": float(amount), "currency": "usd"},
                **dict.fromkeys(COSTS_GROUPS),
                "quantity": None,
                "quantity_unit": None,
            }
            result.update(dict(zip(groups, key, strict=True)))
            if "line_item" in groups:
                result["quantity"] = quantity
                result["quantity_unit"] = "tokens"
            results.append(result)
        data.append({"object": "bucket", "start_time": b, "end_time": b + width, "results": results})
    return {"object": "page", "data": data, "has_more": has_more, "next_page": next_page}
