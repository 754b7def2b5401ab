"""Stripe's form encoding: ``line_items[0][price_data][unit_amount]=500`` and friends.

stripe-python always sends indexed arrays (``expand[0]=x``); curl users and Stripe's docs
also use ``expand[]=x``, so both are accepted. Values stay strings, exactly as they arrive,
and are typed by the handler that reads them, which is where Stripe reports bad types too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal, overload

from .errors import invalid_param, missing_param, unknown_param

_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
_APPEND = object()

# Hashes whose keys are chosen by the caller: "0", "1"... are names there, not indexes.
_FREE_FORM = {"metadata"}


def _split_key(key: str) -> list[Any]:
    head, sep, rest = key.partition("[")
    if not head:
        raise invalid_param(key, f"Invalid parameter name: {key}")
    path: list[Any] = [head]
    if not sep:
        return path
    rest = "[" + rest
    pos = 0
    for match in _SEGMENT.finditer(rest):
        if match.start() != pos:
            raise invalid_param(key, f"Invalid parameter name: {key}")
        segment = match.group(1)
        path.append(_APPEND if segment == "" else segment)
        pos = match.end()
    if pos != len(rest):
        raise invalid_param(key, f"Invalid parameter name: {key}")
    return path


def decode(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Turn form pairs into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        path = _split_key(key)
        node: dict[str, Any] = root
        for i, segment in enumerate(path):
            last = i == len(path) - 1
            if segment is _APPEND:
                segment = str(len(node))
            if last:
                if isinstance(node.get(segment), dict):
                    raise invalid_param(key, f"Invalid value for {key}: it is both a hash and a scalar")
                node[segment] = value
            else:
                child = node.setdefault(segment, {})
                if not isinstance(child, dict):
                    raise invalid_param(key, f"Invalid value for {key}: it is both a hash and a scalar")
                node = child
    return _listify(root, parent=None)


def _listify(node: Any, parent: str | None) -> Any:
    if not isinstance(node, dict):
        return node
    if parent not in _FREE_FORM and node and all(k.isdigit() for k in node):
        return [_listify(node[k], None) for k in sorted(node, key=int)]
    return {k: _listify(v, k) for k, v in node.items()}


# --- typed readers, raising the errors Stripe gives for the same mistakes ---------------


def check_known(params: Mapping[str, Any], allowed: Iterable[str], prefix: str = "") -> None:
    allowed = set(allowed) | {"expand"}
    for key in params:
        if key not in allowed:
            raise unknown_param(f"{prefix}[{key}]" if prefix else key)


@overload
def get_str(params: Mapping[str, Any], name: str, *, required: Literal[True], label: str | None = None) -> str: ...
@overload
def get_str(params: Mapping[str, Any], name: str, *, required: bool = False, label: str | None = None) -> str | None: ...
def get_str(
    params: Mapping[str, Any], name: str, *, required: bool = False, label: str | None = None
) -> str | None:
    label = label or name
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise missing_param(label)
        return None
    if not isinstance(value, str):
        raise invalid_param(label, f"Invalid string: {label} must be a string")
    return value


@overload
def get_int(params: Mapping[str, Any], name: str, *, required: Literal[True], label: str | None = None) -> int: ...
@overload
def get_int(params: Mapping[str, Any], name: str, *, required: bool = False, label: str | None = None) -> int | None: ...
def get_int(
    params: Mapping[str, Any], name: str, *, required: bool = False, label: str | None = None
) -> int | None:
    label = label or name
    raw = get_str(params, name, required=required, label=label)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise invalid_param(label, f"Invalid integer: {raw}") from None


def get_bool(params: Mapping[str, Any], name: str, *, default: bool = False) -> bool:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        return raw
    if str(raw).lower() in ("true", "1", "yes"):
        return True
    if str(raw).lower() in ("false", "0", "no"):
        return False
    raise invalid_param(name, f"Invalid boolean: {raw}")


def get_dict(params: Mapping[str, Any], name: str, *, label: str | None = None) -> dict[str, Any]:
    label = label or name
    value = params.get(name)
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise invalid_param(label, f"Invalid object: {label} must be a hash")
    return value


def get_list(params: Mapping[str, Any], name: str, *, label: str | None = None) -> list[Any]:
    label = label or name
    value = params.get(name)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        # A lone `expand=x` is how people type it by hand; Stripe accepts it too.
        return [value]
    if not isinstance(value, list):
        raise invalid_param(label, f"Invalid array: {label} must be an array")
    return value


def get_metadata(params: Mapping[str, Any], name: str = "metadata") -> dict[str, str]:
    """Metadata as Stripe validates it; empty values mean "unset this key"."""
    meta = get_dict(params, name)
    if len(meta) > 50:
        raise invalid_param(name, "Invalid metadata: metadata cannot have more than 50 keys")
    for key, value in meta.items():
        if len(key) > 40:
            raise invalid_param(
                f"{name}[{key}]", f"Invalid metadata: keys can be at most 40 characters long ({key})"
            )
        if not isinstance(value, str):
            raise invalid_param(f"{name}[{key}]", "Invalid metadata: values must be strings")
        if len(value) > 500:
            raise invalid_param(
                f"{name}[{key}]", "Invalid metadata: values can be at most 500 characters long"
            )
    return dict(meta)
