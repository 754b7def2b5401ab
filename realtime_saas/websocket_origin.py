"""The live WebSocket's origin check: the page must come from this very site, scheme, host and
port, as Django's CSRF check compares them for a POST (channels' AllowedHostsOriginValidator
compares host names only, so any port or scheme of an allowed host passed).

A browser always sends `Origin` on a WebSocket handshake; a handshake without one is refused.
"""

from __future__ import annotations

from typing import Any

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host


def _headers(scope: dict[str, Any]) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers", [])}


def _is_secure(scope: dict[str, Any], headers: dict[bytes, bytes]) -> bool:
    if scope.get("scheme") in ("wss", "https"):
        return True
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        # ("HTTP_X_FORWARDED_PROTO", "https") names the header as Django's META does.
        name = proxy_header[0].removeprefix("HTTP_").replace("_", "-").lower().encode()
        value = headers.get(name, b"").decode("latin-1").split(",")[0].strip()
        return value == proxy_header[1]
    return False


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Whether the handshake's Origin is this site's own origin (or a CSRF_TRUSTED_ORIGINS entry)."""
    headers = _headers(scope)
    origin = headers.get(b"origin", b"").decode("latin-1").strip().lower()
    host = headers.get(b"host", b"").decode("latin-1").strip().lower()
    if not origin or not host:
        return False
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    own_origin = f"{'https' if _is_secure(scope, headers) else 'http'}://{host}"
    trusted = {entry.rstrip("/").lower() for entry in settings.CSRF_TRUSTED_ORIGINS}
    return origin == own_origin or origin in trusted


class SameOriginValidator:
    """ASGI middleware: refuses (403 at the handshake) a WebSocket whose origin is not ours."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        if scope.get("type") == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
