"""The one module that imports `openai`: creates calls, mints client secrets, hangs calls up.

It pins the timeouts (settings.OPENAI_TIMEOUT_SECONDS), never retries a request that creates
something (a retried `POST /realtime/calls` could start a second, unmetered call), and turns the
SDK's exceptions into ours, so the rest of the app never sees an SDK type. Nothing here logs a key.
"""

import hashlib
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import cast

import httpx
import openai
from django.conf import settings
from openai.types.realtime import RealtimeSessionCreateRequestParam

logger = logging.getLogger(__name__)

HANGUP_RETRIES = 2  # hangup is idempotent at OpenAI, so retrying it is safe


class UpstreamError(Exception):
    """OpenAI failed or answered something we cannot use. `status` is what we answer (502/503)."""

    status = 502
    code = "upstream_error"

    def __init__(self, message: str, *, upstream_status: int | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        self.upstream_status = upstream_status
        self.retry_after = retry_after


class UpstreamUnavailable(UpstreamError):
    """Not reachable, or refusing for now: try again later."""

    status = 503
    code = "upstream_unavailable"


class UpstreamTimeout(UpstreamUnavailable):
    pass


class UpstreamRateLimited(UpstreamUnavailable):
    """OpenAI answered 429 (rate limit or quota); `retry_after` in seconds when it said."""


class InvalidOffer(Exception):
    """OpenAI refused the SDP offer itself (400 invalid_offer): the caller's fault, not ours."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class CallNotFound(Exception):
    """OpenAI no longer knows the call (already ended, or never existed)."""


@dataclass(frozen=True)
class CreatedCall:
    call_id: str
    answer_sdp: str


@dataclass(frozen=True)
class MintedSecret:
    value: str
    expires_at: int
    model: str
    fingerprint: str


def fingerprint(secret: str) -> str:
    """How we recognise a key without storing it."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def calls_url() -> str:
    return settings.OPENAI_BASE_URL.rstrip("/") + "/realtime/calls"


@lru_cache(maxsize=4)
def _client(api_key: str, base_url: str, timeout: float) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=api_key,
        base_url=base_url,
        max_retries=0,
        timeout=openai.Timeout(timeout, connect=min(timeout, 5.0)),
    )


def client() -> openai.OpenAI:
    if not settings.OPENAI_API_KEY:
        raise UpstreamUnavailable("The OpenAI API key is not configured.")
    return _client(settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL, settings.OPENAI_TIMEOUT_SECONDS)


def _retry_after(exc: openai.APIStatusError) -> int | None:
    value = exc.response.headers.get("retry-after")
    try:
        return max(1, int(float(value))) if value else None
    except ValueError:
        return None


def _error_code(exc: openai.APIStatusError) -> str | None:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body) if isinstance(body, dict) else {}
    return error.get("code") if isinstance(error, dict) else None


def _translate(exc: openai.OpenAIError, what: str) -> Exception:
    """Map an SDK exception to ours. Messages are ours: OpenAI's may quote request data."""
    if isinstance(exc, openai.APITimeoutError):
        return UpstreamTimeout(f"OpenAI did not answer {what} in time.", retry_after=5)
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamUnavailable(f"OpenAI could not be reached for {what}.", retry_after=5)
    if isinstance(exc, openai.RateLimitError):
        return UpstreamRateLimited(
            f"OpenAI is rate limiting {what}.", upstream_status=429, retry_after=_retry_after(exc) or 10
        )
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code == 400 and _error_code(exc) == "invalid_offer":
            return InvalidOffer("OpenAI refused the SDP offer: it is not a valid WebRTC offer.")
        if exc.status_code >= 500:
            return UpstreamError(f"OpenAI failed {what} (HTTP {exc.status_code}).", upstream_status=exc.status_code)
        # 4xx other than a bad offer: our key, config or model is wrong. Not the user's fault.
        return UpstreamError(
            f"OpenAI refused {what} (HTTP {exc.status_code}, {_error_code(exc) or 'no code'}).",
            upstream_status=exc.status_code,
        )
    return UpstreamError(f"OpenAI failed {what}.")


def _session_param(session: dict) -> RealtimeSessionCreateRequestParam:
    """The assistant's session config (a plain JSON dict, Assistant.session_config) as the SDK's
    TypedDict: no runtime check to make, OpenAI validates it."""
    return cast(RealtimeSessionCreateRequestParam, session)


# --- The call start's one request: a pooled HTTP client instead of the SDK -------------------
#
# `POST /v1/realtime/calls` runs on every call start while the user waits. The SDK builds each
# request through several layers (measured: ~2.8 ms of CPU per start); this is the same multipart
# request (`sdp` + `session`, reference §2) on one keep-alive httpx client per process, with the
# SDK settings' policy: the same timeouts, and no retry (a retried create could start a second,
# unmetered call). Everything else stays on the SDK.


@lru_cache(maxsize=4)
def _http_client(api_key: str, timeout: float) -> httpx.Client:
    return httpx.Client(
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=30.0),
    )


def _status_error(response: httpx.Response, what: str) -> Exception:
    """Our error for a non-2xx answer, as `_translate` maps the SDK's."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = {}
    error = body.get("error", body) if isinstance(body, dict) else {}
    code = error.get("code") if isinstance(error, dict) else None
    if status == 429:
        value = response.headers.get("retry-after")
        try:
            retry_after = max(1, int(float(value))) if value else None
        except ValueError:
            retry_after = None
        return UpstreamRateLimited(f"OpenAI is rate limiting {what}.", upstream_status=429,
                                   retry_after=retry_after or 10)
    if status == 400 and code == "invalid_offer":
        return InvalidOffer("OpenAI refused the SDP offer: it is not a valid WebRTC offer.")
    if status >= 500:
        return UpstreamError(f"OpenAI failed {what} (HTTP {status}).", upstream_status=status)
    return UpstreamError(f"OpenAI refused {what} (HTTP {status}, {code or 'no code'}).", upstream_status=status)


def create_call(*, sdp: str, session: dict | str) -> CreatedCall:
    """`POST /v1/realtime/calls` as multipart, always with `session` (see PITFALLS): a dict, or
    the JSON of one (the call start sends the assistant's, serialised once per process)."""
    if not settings.OPENAI_API_KEY:
        raise UpstreamUnavailable("The OpenAI API key is not configured.")
    session_json = session if isinstance(session, str) else json.dumps(session)
    http = _http_client(settings.OPENAI_API_KEY, settings.OPENAI_TIMEOUT_SECONDS)
    try:
        response = http.post(calls_url(), files={
            "sdp": (None, sdp, "application/sdp"), "session": (None, session_json, "application/json"),
        })
    except httpx.TimeoutException:
        raise UpstreamTimeout("OpenAI did not answer the call in time.", retry_after=5) from None
    except httpx.HTTPError:
        raise UpstreamUnavailable("OpenAI could not be reached for the call.", retry_after=5) from None
    if not response.is_success:
        raise _status_error(response, "the call")
    answer = response.text
    location = response.headers.get("location") or ""
    call_id = location.rstrip("/").rsplit("/", 1)[-1]
    if not call_id.startswith("rtc_") or not answer.strip():
        raise UpstreamError("OpenAI answered the call without a call id or an SDP answer.")
    return CreatedCall(call_id=call_id, answer_sdp=answer)


def mint_client_secret(*, session: dict, ttl_seconds: int) -> MintedSecret:
    """`POST /v1/realtime/client_secrets` with the server-built session and a short lifetime."""
    try:
        result = client().realtime.client_secrets.create(
            expires_after={"anchor": "created_at", "seconds": ttl_seconds}, session=_session_param(session)
        )
    except openai.OpenAIError as exc:
        raise _translate(exc, "the client secret") from None
    value = getattr(result, "value", None)
    if not isinstance(value, str) or not value:
        raise UpstreamError("OpenAI answered without a client secret.")
    model = getattr(getattr(result, "session", None), "model", None) or session.get("model", "")
    return MintedSecret(value=value, expires_at=int(result.expires_at), model=model, fingerprint=fingerprint(value))


def _hangup_error(exc: openai.OpenAIError, call_id: str) -> Exception:
    """Our error for a failed hangup: CallNotFound when OpenAI no longer knows the call."""
    if isinstance(exc, openai.NotFoundError):
        return CallNotFound(call_id)
    if isinstance(exc, openai.BadRequestError) and _error_code(exc) == "call_id_not_found":
        return CallNotFound(call_id)
    return _translate(exc, "the hangup")


def hangup(call_id: str) -> None:
    """`POST /v1/realtime/calls/{id}/hangup`. Raises CallNotFound if the call is already gone.

    Hangup is idempotent at OpenAI, so the SDK's own retries apply (`HANGUP_RETRIES`: connection
    errors, 408/409/429/5xx, with its backoff); nothing else here loops.
    """
    try:
        client().with_options(max_retries=HANGUP_RETRIES).realtime.calls.hangup(call_id)
    except openai.OpenAIError as exc:
        raise _hangup_error(exc, call_id) from None


# --- Sideband and async hangup (the call supervisor, sessions/supervisor) ------------------------
#
# The SDK's `realtime.connect()` reconnects by itself unless told not to; for a call that ended,
# reconnecting only meets 404s (PITFALLS). We pass `max_retries=0` and no `on_reconnecting`, and
# the supervisor runs its own backoff while a fresh call still answers 404.


class SidebandNotFound(Exception):
    """The WebSocket upgrade was refused with 404: the call is not attachable yet, or is gone."""


class SidebandClosed(Exception):
    """The sideband closed. `clean` for a close frame 1000/1001 (the call ended), else a drop."""

    def __init__(self, *, clean: bool, code: int | None = None):
        super().__init__(f"sideband closed ({'clean' if clean else 'dropped'}, code {code})")
        self.clean = clean
        self.code = code


def async_client() -> openai.AsyncOpenAI:
    """A fresh async client: one per supervisor (its HTTP pool belongs to the running loop)."""
    if not settings.OPENAI_API_KEY:
        raise UpstreamUnavailable("The OpenAI API key is not configured.")
    timeout = settings.OPENAI_TIMEOUT_SECONDS
    return openai.AsyncOpenAI(
        api_key=settings.OPENAI_API_KEY,
        base_url=settings.OPENAI_BASE_URL,
        max_retries=0,
        timeout=openai.Timeout(timeout, connect=min(timeout, 5.0)),
    )


class Sideband:
    """One attached sideband: raw JSON events in (dicts), client events out."""

    def __init__(self, connection) -> None:
        self._connection = connection

    async def recv(self) -> dict:
        """The next server event; raises SidebandClosed when the socket closes."""
        import websockets.exceptions as wsx

        try:
            data = await self._connection.recv_bytes()
        except wsx.ConnectionClosedOK as exc:
            code = exc.rcvd.code if exc.rcvd else None
            raise SidebandClosed(clean=True, code=code) from None
        except wsx.ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            raise SidebandClosed(clean=code in (1000, 1001), code=code) from None
        except openai.OpenAIError as exc:
            raise SidebandClosed(clean=False) from exc
        try:
            import json

            event = json.loads(data)
        except ValueError:
            return {}
        return event if isinstance(event, dict) else {}

    async def send(self, event: dict) -> None:
        await self._connection.send(event)

    async def close(self) -> None:
        try:
            await self._connection.close()
        except Exception:
            logger.debug("sideband close failed", exc_info=True)


async def connect_sideband(aclient: openai.AsyncOpenAI, call_id: str, *, timeout: float) -> Sideband:
    """Attach to a call's sideband (`wss://…/realtime?call_id=`), once, without SDK retries.

    Raises SidebandNotFound on 404 (retry with backoff while the call is fresh) and
    UpstreamUnavailable for anything else (network, 5xx, timeout).
    """
    import asyncio

    import websockets.exceptions as wsx

    try:
        connection = await asyncio.wait_for(
            aclient.realtime.connect(call_id=call_id, max_retries=0).enter(), timeout=timeout
        )
    except wsx.InvalidStatus as exc:
        status = exc.response.status_code
        if status in (400, 404):
            raise SidebandNotFound(call_id) from None
        raise UpstreamUnavailable(f"OpenAI refused the sideband (HTTP {status}).", upstream_status=status) from None
    except TimeoutError:
        raise UpstreamTimeout("OpenAI did not open the sideband in time.") from None
    except (OSError, wsx.WebSocketException, openai.OpenAIError) as exc:
        raise UpstreamUnavailable(f"OpenAI sideband unreachable ({type(exc).__name__}).") from None
    return Sideband(connection)


async def ahangup(aclient: openai.AsyncOpenAI, call_id: str) -> None:
    """Async `POST /v1/realtime/calls/{id}/hangup`, one attempt: the supervisor retries it with its
    own backoff until OpenAI confirms. Raises CallNotFound if the call is gone."""
    try:
        await aclient.realtime.calls.hangup(call_id)
    except openai.OpenAIError as exc:
        raise _hangup_error(exc, call_id) from None


# --- Admin API: Usage and Costs (reconciliation, sessions/reconciliation) ------------------------
#
# Authenticated with the *admin* key (OPENAI_ADMIN_KEY), never the project key. Read-only GETs, so
# transient failures may be retried; pages come back as plain dicts (no SDK type leaves here).


def _admin_client() -> openai.OpenAI:
    if not settings.OPENAI_ADMIN_KEY:
        raise UpstreamUnavailable("The OpenAI admin key (OPENAI_ADMIN_KEY) is not configured.")
    return _admin_client_for(settings.OPENAI_ADMIN_KEY, settings.OPENAI_BASE_URL, settings.OPENAI_TIMEOUT_SECONDS)


@lru_cache(maxsize=2)
def _admin_client_for(admin_key: str, base_url: str, timeout: float) -> openai.OpenAI:
    return openai.OpenAI(
        # The SDK wants a project key at construction; the admin endpoints send only the admin key.
        api_key=settings.OPENAI_API_KEY or "unused",
        admin_api_key=admin_key,
        base_url=base_url,
        max_retries=2,
        timeout=openai.Timeout(timeout, connect=min(timeout, 5.0)),
    )


def usage_completions_page(*, start_time: int, end_time: int, page: str | None = None,
                           limit: int = 1440) -> dict:
    """One page of `GET /v1/organization/usage/completions` at 1-minute buckets, grouped by
    project, key and model. Returns `{"data": [...], "has_more": bool, "next_page": str|None}`."""
    kwargs: dict = {}
    if page:
        kwargs["page"] = page
    try:
        result = _admin_client().admin.organization.usage.completions(
            start_time=start_time, end_time=end_time, bucket_width="1m",
            group_by=["project_id", "api_key_id", "model"], limit=limit, **kwargs,
        )
    except openai.OpenAIError as exc:
        raise _translate(exc, "the usage query") from None
    return result.model_dump(mode="json")


def costs_page(*, start_time: int, end_time: int, page: str | None = None, limit: int = 180) -> dict:
    """One page of `GET /v1/organization/costs` per day, grouped by line item and project."""
    kwargs: dict = {}
    if page:
        kwargs["page"] = page
    try:
        result = _admin_client().admin.organization.usage.costs(
            start_time=start_time, end_time=end_time, bucket_width="1d",
            group_by=["line_item", "project_id"], limit=limit, **kwargs,
        )
    except openai.OpenAIError as exc:
        raise _translate(exc, "the costs query") from None
    return result.model_dump(mode="json")
