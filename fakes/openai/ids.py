import secrets
import string

_BASE62 = string.ascii_letters + string.digits


def base62(n: int) -> str:
    return "".join(secrets.choice(_BASE62) for _ in range(n))


def event_id() -> str:
    return "event_" + base62(21)


def item_id() -> str:
    return "item_" + base62(21)


def response_id() -> str:
    return "resp_" + base62(21)


def conversation_id() -> str:
    return "conv_" + base62(21)


def session_id() -> str:
    return "sess_" + base62(21)


def call_id() -> str:
    return "rtc_" + secrets.token_hex(16)


def client_secret() -> str:
    return "ek_" + secrets.token_hex(16)


def request_id() -> str:
    return "req_" + secrets.token_hex(16)
