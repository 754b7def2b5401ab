"""schemathesis hooks for `make fuzz` (loaded through SCHEMATHESIS_HOOKS): POST /api/calls/ takes
an `application/sdp` body, plain text that schemathesis has no serializer for."""

from typing import Any

import schemathesis


@schemathesis.serializer("application/sdp")
def sdp_serializer(ctx: Any, value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", errors="surrogatepass")
