"""Log filtering: keys must never reach a log line, whoever formats it."""

import logging
import re

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
