"""HTTP and WebSocket routes: the OpenAI surface under /v1, the control API under /_fake."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from aiohttp import BodyPartReader, web

from fakes.openai import ids, usage_api
from fakes.openai.call import Call, SidebandSink
from fakes.openai.config import FakeConfig, KeyInfo
from fakes.openai.errors import ApiError, call_not_found
from fakes.openai.media import MediaPeer, looks_like_offer, synthetic_answer
from fakes.openai.pricing import price_table_json
from fakes.openai.session import build_session
from fakes.openai.state import ClientSecret, Fake, Fault

log = logging.getLogger("fakes.openai")

FAKE = web.AppKey("fake", Fake)
ENDPOINTS = (
    "client_secrets",
    "calls.create",
    "calls.hangup",
    "calls.accept",
    "calls.reject",
    "calls.refer",
    "sideband",
    "usage.completions",
    "costs",
)


def _redact(key: str) -> str:
    return key[:6] + "***" + key[-3:] if len(key) > 12 else "***"


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    # Browsers cannot set headers on a WebSocket: OpenAI accepts the key as a subprotocol.
    for proto in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        proto = proto.strip()
        if proto.startswith("openai-insecure-api-key."):
            return proto.removeprefix("openai-insecure-api-key.")
    return None


def authenticate(
    request: web.Request, kind: str, *, allow_ephemeral: bool = False
) -> tuple[KeyInfo, ClientSecret | None]:
    fake = request.app[FAKE]
    key = _bearer(request)
    if not key:
        raise ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            code=None,
        )
    if key.startswith("ek_"):
        secret = fake.secrets.get(key)
        if secret is None or not allow_ephemeral:
            raise ApiError(401, f"Incorrect API key provided: {_redact(key)}.", code="invalid_api_key")
        if fake.now() >= secret.expires_at:
            raise ApiError(401, "The ephemeral client secret has expired.", code="invalid_api_key")
        return secret.minted_by, secret
    info = fake.config.lookup(key)
    if info is None:
        raise ApiError(
            401,
            f"Incorrect API key provided: {_redact(key)}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )
    if info.kind != kind:
        scope = "api.usage.read" if kind == "admin" else "api.model.request"
        raise ApiError(
            401, f"You have insufficient permissions for this operation. Missing scopes: {scope}.", code=None
        )
    return info, None


CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    # A browser in key mode reads the call id from Location.
    "Access-Control-Expose-Headers": "Location, x-request-id, openai-processing-ms",
}


@web.middleware
async def middleware(request: web.Request, handler):
    fake = request.app[FAKE]
    started = time.monotonic()
    if request.method == "OPTIONS" and request.path.startswith("/v1/"):
        # Browsers with an ephemeral key call OpenAI directly, cross-origin.
        return web.Response(
            status=204,
            headers={
                **CORS_HEADERS,
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", "*"),
                "Access-Control-Max-Age": "600",
            },
        )
    if request.path.startswith("/v1/"):
        if fake.latency_ms > 0:
            await asyncio.sleep(fake.latency_ms / 1000)
        endpoint = request.match_info.route.name
        fault = fake.take_fault(endpoint) if endpoint else None
        if fault is not None:
            if fault.status == "timeout":
                await asyncio.sleep(fault.timeout_seconds)
                resp = ApiError(
                    504, "Gateway timeout (injected by the fake).", type="server_error"
                ).response()
            elif fault.status == 429:
                resp = ApiError(
                    429,
                    "Rate limit reached (injected by the fake). Please try again later.",
                    type="requests",
                    code="rate_limit_exceeded",
                ).response()
            else:
                resp = ApiError(
                    int(fault.status),
                    "The server had an error while processing your request (injected by the fake).",
                    type="server_error",
                ).response()
            resp.headers["x-request-id"] = ids.request_id()
            return resp
    try:
        resp = await handler(request)
    except ApiError as err:
        resp = err.response()
    if not resp.prepared:
        resp.headers.update(CORS_HEADERS)
        resp.headers["x-request-id"] = ids.request_id()
        resp.headers["openai-processing-ms"] = str(int((time.monotonic() - started) * 1000))
    return resp


async def _json_body(request: web.Request) -> dict:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json(loads=json.loads)
    except ValueError:
        raise ApiError(
            400, "We could not parse the JSON body of your request.", code="invalid_json"
        ) from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    return body


# --- /v1/realtime ----------------------------------------------------------------------------


async def client_secrets(request: web.Request) -> web.Response:
    fake = request.app[FAKE]
    key, _ = authenticate(request, "project")
    body = await _json_body(request)
    expires_after = body.get("expires_after") or {}
    if expires_after.get("anchor", "created_at") != "created_at":
        raise ApiError(
            400,
            "Invalid value for 'expires_after.anchor': only 'created_at' is supported.",
            param="expires_after.anchor",
            code="invalid_value",
        )
    seconds = expires_after.get("seconds", 600)
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise ApiError(
            400,
            "Invalid type for 'expires_after.seconds': expected an integer.",
            param="expires_after.seconds",
            code="invalid_type",
        )
    if seconds < 10:
        raise ApiError(
            400,
            f"Invalid 'expires_after.seconds': integer below minimum value. Expected a value >= 10, "
            f"but got {seconds} instead.",
            param="expires_after.seconds",
            code="integer_below_min_value",
        )
    if seconds > 7200:
        raise ApiError(
            400,
            f"Invalid 'expires_after.seconds': integer above maximum value. Expected a value <= "
            f"7200, but got {seconds} instead.",
            param="expires_after.seconds",
            code="integer_above_max_value",
        )
    raw_session = body.get("session") or {"type": "realtime"}
    if raw_session.get("type") is None:
        raise ApiError(
            400,
            "Missing required parameter: 'session.type'.",
            param="session.type",
            code="missing_required_parameter",
        )
    session = build_session(raw_session)
    value = ids.client_secret()
    expires_at = fake.now() + seconds
    fake.secrets[value] = ClientSecret(value=value, expires_at=expires_at, session=session, minted_by=key)
    return web.json_response({"value": value, "expires_at": expires_at, "session": session})


async def _read_offer(request: web.Request) -> tuple[str, dict | None]:
    ctype = request.content_type
    if ctype == "multipart/form-data":
        sdp, session = None, None
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):  # OpenAI's form has flat fields only
                raise ApiError(400, "Nested multipart parts are not supported.", code="invalid_request")
            text = await part.text()
            if part.name == "sdp":
                sdp = text
            elif part.name == "session":
                try:
                    session = json.loads(text) if text.strip() else None
                except ValueError:
                    raise ApiError(
                        400, "The 'session' field is not valid JSON.", param="session", code="invalid_json"
                    ) from None
        if sdp is None:
            raise ApiError(
                400, "Missing required parameter: 'sdp'.", param="sdp", code="missing_required_parameter"
            )
        return sdp, session
    if ctype == "application/sdp":
        return await request.text(), None
    raise ApiError(
        400,
        "Unsupported Content-Type: send application/sdp (ephemeral key) or multipart/form-data "
        "with 'sdp' and 'session' fields.",
        code="unsupported_content_type",
    )


def _invalid_offer() -> ApiError:
    return ApiError(
        400, "Invalid SDP offer. Please try again with a WHIP-compliant offer.", code="invalid_offer"
    )


async def create_call(request: web.Request) -> web.Response:
    fake = request.app[FAKE]
    key, secret = authenticate(request, "project", allow_ephemeral=True)
    sdp, session_part = await _read_offer(request)
    if secret is None and request.content_type != "multipart/form-data":
        # OpenAI reserves the raw form for ephemeral keys (see PITFALLS: the SDK still sends it).
        raise ApiError(
            400,
            "Requests authenticated with a standard API key must use multipart/form-data with "
            "'sdp' and 'session' fields.",
            code="invalid_request",
        )
    if secret is not None:
        session = dict(secret.session)
        if session_part:
            session = build_session({**secret.session, **session_part})
    else:
        patch = dict(session_part or {"type": "realtime"})
        if request.query.get("model") and not patch.get("model"):
            patch["model"] = request.query["model"]
        session = build_session(patch)
    session["id"] = ids.session_id()
    session["expires_at"] = fake.now() + int(fake.config.session_cap_seconds)
    if not looks_like_offer(sdp):
        raise _invalid_offer()
    usage_key_id = key.key_id if secret is None or fake.config.ephemeral_usage_under_minting_key else None
    call = Call(
        fake,
        session=session,
        key=key,
        usage_key_id=usage_key_id,
        headless=not fake.config.media,
        sideband_404_delay=fake.config.sideband_404_delay,
        session_cap_seconds=fake.config.session_cap_seconds,
    )
    if fake.config.media:
        call.media = MediaPeer(call)
        try:
            answer = await call.media.answer(sdp)
        except Exception as exc:
            log.info("rejected offer: %s", exc)
            await call.end("invalid_offer")
            raise _invalid_offer() from None
        call.expect_connection(fake.config.connect_timeout_seconds)
    else:
        answer = synthetic_answer(sdp)
    fake.calls[call.id] = call
    if secret is not None:
        secret.calls.append(call.id)
    return web.Response(
        status=201,
        text=answer,
        content_type="application/sdp",
        headers={"Location": f"/v1/realtime/calls/{call.id}"},
    )


def _live_call(request: web.Request, key: KeyInfo) -> Call:
    fake = request.app[FAKE]
    call = fake.calls.get(request.match_info["call_id"])
    if call is None or not call.live or call.project_id != key.project_id:
        raise call_not_found(fake.config.call_not_found_status)
    return call


async def hangup(request: web.Request) -> web.Response:
    arrived = time.time()
    fake = request.app[FAKE]
    key, _ = authenticate(request, "project")
    known = fake.calls.get(request.match_info["call_id"])
    if known is not None:
        # Recorded before any check: a benchmark measures enforcement latency up to this instant.
        known.hangup_requests.append(arrived)
    call = _live_call(request, key)
    call.spawn(call.end("hangup"))
    return web.Response(status=200)


async def accept(request: web.Request) -> web.Response:
    key, _ = authenticate(request, "project")
    call = _live_call(request, key)
    body = await _json_body(request)
    if body.get("type") != "realtime":
        raise ApiError(
            400, "Missing required parameter: 'type'.", param="type", code="missing_required_parameter"
        )
    call.handle_client_event({"type": "session.update", "session": body})
    return web.Response(status=200)


async def reject(request: web.Request) -> web.Response:
    key, _ = authenticate(request, "project")
    call = _live_call(request, key)
    body = await _json_body(request)
    status_code = body.get("status_code", 603)
    if not isinstance(status_code, int) or not 400 <= status_code <= 699:
        raise ApiError(
            400,
            "Invalid 'status_code': expected a SIP status code.",
            param="status_code",
            code="invalid_value",
        )
    call.spawn(call.end("rejected"))
    return web.Response(status=200)


async def refer(request: web.Request) -> web.Response:
    key, _ = authenticate(request, "project")
    call = _live_call(request, key)
    body = await _json_body(request)
    target = body.get("target_uri")
    if not isinstance(target, str) or not target.startswith(("tel:", "sip:", "sips:")):
        raise ApiError(
            400,
            "Missing or invalid 'target_uri': expected a tel: or sip: URI.",
            param="target_uri",
            code="invalid_value",
        )
    call.refer_target = target
    call.spawn(call.end("referred"))
    return web.Response(status=200)


async def realtime_ws(request: web.Request) -> web.StreamResponse:
    fake = request.app[FAKE]
    if request.headers.get("OpenAI-Beta", "").replace(" ", "") == "realtime=v1":
        ws = web.WebSocketResponse(protocols=("realtime",))
        await ws.prepare(request)
        await ws.send_json(
            {
                "type": "error",
                "event_id": ids.event_id(),
                "error": {
                    "type": "invalid_request_error",
                    "code": "beta_api_shape_disabled",
                    "param": None,
                    "event_id": None,
                    "message": "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API.",
                },
            }
        )
        await ws.close(code=4000, message=b"beta_api_shape_disabled")
        return ws
    key, _ = authenticate(request, "project")
    call_id = request.query.get("call_id")
    if call_id:
        call = fake.calls.get(call_id)
        if call is None or call.project_id != key.project_id or not call.sideband_ready():
            raise call_not_found(404)
    else:
        model = request.query.get("model")
        if not model:
            raise ApiError(
                400,
                "Missing required parameter: 'model' or 'call_id'.",
                param="model",
                code="missing_required_parameter",
            )
        session = build_session({"type": "realtime", "model": model})
        call = Call(
            fake,
            session=session,
            key=key,
            usage_key_id=key.key_id,
            headless=True,
            sideband_404_delay=0,
            session_cap_seconds=fake.config.session_cap_seconds,
            transport="websocket",
        )
        fake.calls[call.id] = call
    ws = web.WebSocketResponse(protocols=("realtime",), max_msg_size=32 * 1024 * 1024)
    await ws.prepare(request)
    sink = SidebandSink(ws, key.key_id)
    if call_id:
        call.attach_sideband(sink)
    else:
        call.sinks.append(sink)
        call.emit({"type": "session.created", "session": call.session}, only=sink)
    try:
        async for msg in ws:
            if msg.type == web.WSMsgType.TEXT:
                call.handle_client_text(msg.data, sink)
    finally:
        call.detach(sink)
        if not call_id and call.live:
            # A WebSocket-transport session lives as long as its socket.
            await call.end("client_closed")
        if not sink.closed.is_set():
            sink.task.cancel()
    return ws


# --- /v1/organization ------------------------------------------------------------------------


async def usage_completions(request: web.Request) -> web.Response:
    fake = request.app[FAKE]
    authenticate(request, "admin")
    return web.json_response(usage_api.completions(fake.store, request.query, fake.now()))


async def costs(request: web.Request) -> web.Response:
    fake = request.app[FAKE]
    authenticate(request, "admin")
    return web.json_response(usage_api.costs(fake.store, request.query, fake.now()))


async def v1_not_found(request: web.Request) -> web.Response:
    raise ApiError(404, f"Invalid URL ({request.method} {request.path})", code=None)


# --- /_fake control API ----------------------------------------------------------------------


def _control_call(request: web.Request) -> Call:
    call = request.app[FAKE].calls.get(request.match_info["call_id"])
    if call is None:
        raise web.HTTPNotFound(text=json.dumps({"error": "unknown call"}), content_type="application/json")
    return call


async def ctl_health(request: web.Request) -> web.Response:
    fake = request.app[FAKE]
    cfg = fake.config
    return web.json_response(
        {
            "ok": True,
            "media": cfg.media,
            "usage_db": cfg.usage_db,
            "project_keys": [{"key_id": k.key_id, "project_id": k.project_id} for k in cfg.project_keys],
            "admin_keys": [{"key_id": k.key_id} for k in cfg.admin_keys],
            "sideband_404_delay": cfg.sideband_404_delay,
            "session_cap_seconds": cfg.session_cap_seconds,
            "ephemeral_usage_under_minting_key": cfg.ephemeral_usage_under_minting_key,
            "latency_ms": fake.latency_ms,
            "clock_offset": fake.clock_offset,
            "now": fake.now(),
            "calls_live": sum(1 for c in fake.calls.values() if c.live),
        }
    )


async def ctl_reset(request: web.Request) -> web.Response:
    body = await _json_body(request)
    await request.app[FAKE].reset(calls=bool(body.get("calls", True)), usage=bool(body.get("usage", False)))
    return web.json_response({"ok": True})


async def ctl_calls(request: web.Request) -> web.Response:
    fake = request.app[FAKE]
    state = request.query.get("state")
    brief = request.query.get("brief") in ("1", "true")
    calls = [c.describe() for c in fake.calls.values() if state is None or c.state == state]
    if brief:
        for c in calls:
            for heavy in ("response_done_log", "session"):
                c.pop(heavy)
    return web.json_response({"calls": calls})


async def ctl_create_call(request: web.Request) -> web.Response:
    fake = request.app[FAKE]
    body = await _json_body(request)
    cfg = fake.config
    key = cfg.project_keys[0]
    if body.get("api_key"):
        found = cfg.lookup(body["api_key"])
        if found is None or found.kind != "project":
            raise ApiError(400, "api_key is not a configured project key", param="api_key")
        key = found
    session = build_session(body.get("session") or {"type": "realtime"})
    session["expires_at"] = fake.now() + int(cfg.session_cap_seconds)
    call = Call(
        fake,
        session=session,
        key=key,
        usage_key_id=key.key_id,
        headless=True,
        sideband_404_delay=float(body.get("sideband_404_delay", cfg.sideband_404_delay)),
        session_cap_seconds=float(body.get("session_cap_seconds", cfg.session_cap_seconds)),
        transport="headless",
    )
    fake.calls[call.id] = call
    script = body.get("script")
    if script:
        _start_script(call, script)
    return web.json_response(call.describe(), status=201)


async def ctl_call(request: web.Request) -> web.Response:
    return web.json_response(_control_call(request).describe())


def _start_script(call: Call, body: dict) -> None:
    interval_ms = float(body.get("interval_ms", 1000))
    if interval_ms <= 0:
        raise ApiError(400, "interval_ms must be positive", param="interval_ms")
    usage = body.get("usage") or {
        "total_tokens": 253,
        "input_tokens": 132,
        "output_tokens": 121,
        "input_token_details": {
            "text_tokens": 119,
            "audio_tokens": 13,
            "image_tokens": 0,
            "cached_tokens": 64,
            "cached_tokens_details": {"text_tokens": 64, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": 30, "audio_tokens": 91},
    }
    count = body.get("count")
    call.start_script(interval_ms=interval_ms, usage=usage, count=int(count) if count is not None else None)


async def ctl_script(request: web.Request) -> web.Response:
    call = _control_call(request)
    if request.method == "DELETE":
        call.stop_script()
    else:
        _start_script(call, await _json_body(request))
    return web.json_response({"ok": True, "script": call.script})


async def ctl_event(request: web.Request) -> web.Response:
    call = _control_call(request)
    body = await _json_body(request)
    call.handle_client_event(body.get("event", body))
    return web.json_response({"ok": True})


async def ctl_response_done(request: web.Request) -> web.Response:
    call = _control_call(request)
    body = await _json_body(request)
    if not call.live:
        raise ApiError(409, "call has ended")
    response = {
        "object": "realtime.response",
        "id": ids.response_id(),
        "status": body.get("status", "completed"),
        "status_details": None,
        "output": [],
        "conversation_id": call.conversation_id,
        "output_modalities": call.session["output_modalities"],
        "max_output_tokens": call.session.get("max_output_tokens", "inf"),
        "usage": body.get("usage") or {},
        "metadata": None,
    }
    event = call.send_scripted_response(response)
    return web.json_response({"ok": True, "event_id": event["event_id"]})


async def ctl_drop_sidebands(request: web.Request) -> web.Response:
    call = _control_call(request)
    body = await _json_body(request)
    dropped = call.drop_sidebands(mode=body.get("mode", "abort"), code=int(body.get("code", 1011)))
    return web.json_response({"ok": True, "dropped": dropped})


async def ctl_end(request: web.Request) -> web.Response:
    call = _control_call(request)
    body = await _json_body(request)
    await call.end(body.get("reason", "client_closed"), code=int(body.get("code", 1000)))
    return web.json_response(call.describe())


async def ctl_expire(request: web.Request) -> web.Response:
    call = _control_call(request)
    call.expire()
    await asyncio.wait_for(call.ended.wait(), timeout=5)
    return web.json_response(call.describe())


async def ctl_faults(request: web.Request) -> web.Response:
    fake = request.app[FAKE]
    if request.method == "POST":
        body = await _json_body(request)
        endpoint = body.get("endpoint")
        if endpoint not in (*ENDPOINTS, "*"):
            raise ApiError(400, f"endpoint must be one of {', '.join(ENDPOINTS)} or '*'", param="endpoint")
        status = body.get("status", 500)
        if status != "timeout" and not (isinstance(status, int) and 400 <= status <= 599):
            raise ApiError(400, "status must be an HTTP error status or 'timeout'", param="status")
        fake.faults.append(
            Fault(
                endpoint=endpoint,
                remaining=int(body.get("count", 1)),
                status=status,
                timeout_seconds=float(body.get("timeout_seconds", 30)),
            )
        )
    elif request.method == "DELETE":
        fake.faults.clear()
    return web.json_response({"faults": [f.describe() for f in fake.faults]})


async def ctl_latency(request: web.Request) -> web.Response:
    fake = request.app[FAKE]
    if request.method == "POST":
        fake.latency_ms = float((await _json_body(request)).get("ms", 0))
    return web.json_response({"ms": fake.latency_ms})


async def ctl_clock(request: web.Request) -> web.Response:
    fake = request.app[FAKE]
    if request.method == "POST":
        body = await _json_body(request)
        if "now" in body:
            fake.clock_offset = float(body["now"]) - time.time()
        elif "offset_seconds" in body:
            fake.clock_offset = float(body["offset_seconds"])
        else:
            fake.clock_offset += float(body.get("advance_seconds", 0))
    return web.json_response({"now": fake.now(), "offset_seconds": fake.clock_offset})


async def ctl_usage(request: web.Request) -> web.Response:
    fake = request.app[FAKE]
    call_id = request.query.get("call_id")
    rows = [r for r in fake.store.rows() if call_id is None or r.call_id == call_id]
    return web.json_response(
        {
            "records": [
                {
                    "ts": r.ts,
                    "call_id": r.call_id,
                    "project_id": r.project_id,
                    "api_key_id": r.api_key_id,
                    "model": r.model,
                    "input_tokens": r.input_tokens,
                    "output_tokens": r.output_tokens,
                    **r.tokens,
                }
                for r in rows
            ]
        }
    )


async def ctl_prices(request: web.Request) -> web.Response:
    return web.json_response({"unit": "usd_per_1m_tokens", "prices": price_table_json()})


async def _flush_loop(app: web.Application):
    fake = app[FAKE]

    async def loop() -> None:
        while True:
            await asyncio.sleep(0.5)
            fake.store.flush()

    task = asyncio.ensure_future(loop())
    yield
    task.cancel()
    await fake.shutdown()


def make_app(config: FakeConfig | None = None) -> web.Application:
    app = web.Application(middlewares=[middleware], client_max_size=32 * 1024 * 1024)
    app[FAKE] = Fake(config or FakeConfig())
    app.cleanup_ctx.append(_flush_loop)
    r = app.router
    r.add_post("/v1/realtime/client_secrets", client_secrets, name="client_secrets")
    r.add_post("/v1/realtime/calls", create_call, name="calls.create")
    r.add_post("/v1/realtime/calls/{call_id}/hangup", hangup, name="calls.hangup")
    r.add_post("/v1/realtime/calls/{call_id}/accept", accept, name="calls.accept")
    r.add_post("/v1/realtime/calls/{call_id}/reject", reject, name="calls.reject")
    r.add_post("/v1/realtime/calls/{call_id}/refer", refer, name="calls.refer")
    r.add_get("/v1/realtime", realtime_ws, name="sideband")
    r.add_get("/v1/organization/usage/completions", usage_completions, name="usage.completions")
    r.add_get("/v1/organization/costs", costs, name="costs")
    r.add_route("*", "/v1/{tail:.*}", v1_not_found)
    r.add_get("/_fake/health", ctl_health)
    r.add_post("/_fake/reset", ctl_reset)
    r.add_get("/_fake/calls", ctl_calls)
    r.add_post("/_fake/calls", ctl_create_call)
    r.add_get("/_fake/calls/{call_id}", ctl_call)
    r.add_route("POST", "/_fake/calls/{call_id}/script", ctl_script)
    r.add_route("DELETE", "/_fake/calls/{call_id}/script", ctl_script)
    r.add_post("/_fake/calls/{call_id}/events", ctl_event)
    r.add_post("/_fake/calls/{call_id}/response_done", ctl_response_done)
    r.add_post("/_fake/calls/{call_id}/drop_sidebands", ctl_drop_sidebands)
    r.add_post("/_fake/calls/{call_id}/end", ctl_end)
    r.add_post("/_fake/calls/{call_id}/expire", ctl_expire)
    for method in ("GET", "POST", "DELETE"):
        r.add_route(method, "/_fake/faults", ctl_faults)
    r.add_route("GET", "/_fake/latency", ctl_latency)
    r.add_route("POST", "/_fake/latency", ctl_latency)
    r.add_route("GET", "/_fake/clock", ctl_clock)
    r.add_route("POST", "/_fake/clock", ctl_clock)
    r.add_get("/_fake/usage", ctl_usage)
    r.add_get("/_fake/prices", ctl_prices)
    return app
