"""Log filtering: keys must never reach a log line, whoever formats it; and structured (JSON) logs."""

import contextlib
import contextvars
import logging
import re
from collections.abc import Iterator
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

# OpenAI project/admin keys, ephemeral client secrets, Stripe secret/restricted keys and
# webhook secrets. Matched anywhere in the rendered message and its arguments.
SECRET_PATTERN = re.compile(
    r"\b(sk-(?:proj-|admin-|svcacct-)?[A-Za-z0-9_\-]{4,}|ek_[A-Za-z0-9]{4,}|"
    r"(?:sk|rk)_(?:test|live)_[A-Za-z0-9]{4,}|whsec_[A-Za-z0-9]{4,})"
)


def redact(text: str) -> str:
    return SECRET_PATTERN.sub(lambda m: m.group(0)[:6] + "…[redacted]", text)


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logged as it is
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


# --- Structured logs (LOG_FORMAT=json) -------------------------------------------------------------
# What a log line is about, set where the work starts: the request middleware (request id, user),
# the supervisor's per-call task (call) and webhook processing (Stripe event). contextvars follow
# asyncio tasks and asgiref's thread hops, so a line logged deep inside carries them.

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
user_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("user_id", default=None)
call_public_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("call", default=None)
stripe_event_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("stripe_event", default=None)
# The request being answered: its user is read only once something else has loaded it (the log
# must never cost a query), see ContextFilter.
current_request: contextvars.ContextVar[Any] = contextvars.ContextVar("current_request", default=None)

CONTEXT_FIELDS: dict[str, contextvars.ContextVar[Any]] = {"request_id": request_id, "user_id": user_id, "call": call_public_id,
                  "stripe_event": stripe_event_id}


@contextlib.contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Set context fields (request_id, user_id, call, stripe_event) for the block."""
    tokens = [(CONTEXT_FIELDS[name], CONTEXT_FIELDS[name].set(value)) for name, value in values.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def _loaded_user_id(request: Any) -> int | None:
    from django.utils.functional import SimpleLazyObject, empty

    user = getattr(request, "user", None)
    if isinstance(user, SimpleLazyObject):
        user = user._wrapped if user._wrapped is not empty else None
    return getattr(user, "pk", None) if getattr(user, "is_authenticated", False) else None


class ContextFilter(logging.Filter):
    """Puts the context fields on every record (None where they do not apply)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in CONTEXT_FIELDS.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        if record.__dict__.get("user_id") is None and (request := current_request.get()) is not None:
            record.user_id = _loaded_user_id(request)
        return True


class JsonFormatter(_JsonFormatter):
    """python-json-logger, one object per line: time, level, logger, message, the context fields,
    anything passed in `extra`, and the traceback (already redacted by RedactSecretsFilter)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "%(asctime)s %(levelname)s %(name)s %(message)s")
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", False)
        super().__init__(*args, **kwargs)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is None:
                log_data.pop(name, None)
            else:
                log_data[name] = value
        if record.exc_text and "exc_info" not in log_data:
            log_data["exc_info"] = record.exc_text
