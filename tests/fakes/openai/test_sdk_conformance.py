"""The official openai SDK, pointed at the fake, for every endpoint it serves."""

import asyncio
import time

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI
from openai.types.admin.organization import usage_completions_response, usage_costs_response
from openai.types.realtime import RealtimeErrorEvent, ResponseDoneEvent
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, InvalidStatus

from tests.fakes.openai.conftest import SESSION
from tests.fakes.openai.helpers import Caller
from tests.waiting import await_until

USAGE = {
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


async def offer_sdp() -> str:
    caller = Caller()
    try:
        return await caller.offer()
    finally:
        await caller.close()


def test_client_secret_has_the_ga_shape(client):
    secret = client.realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 120},
        session={"type": "realtime", "model": "gpt-realtime-mini", "audio": {"output": {"voice": "marin"}}},
    )
    assert secret.value.startswith("ek_") and len(secret.value) == 35
    assert abs(secret.expires_at - (time.time() + 120)) < 5
    assert secret.session.id.startswith("sess_")
    assert secret.session.model == "gpt-realtime-mini"
    assert secret.session.audio.output.voice == "marin"
    assert secret.session.audio.input.turn_detection.type == "server_vad"


def test_client_secret_defaults_to_ten_minutes(client):
    secret = client.realtime.client_secrets.create()
    assert abs(secret.expires_at - (time.time() + 600)) < 5


@pytest.mark.parametrize(
    ("seconds", "code"), [(9, "integer_below_min_value"), (7201, "integer_above_max_value")]
)
def test_client_secret_ttl_out_of_range_is_400(client, seconds, code):
    with pytest.raises(openai.BadRequestError) as exc:
        client.realtime.client_secrets.create(expires_after={"anchor": "created_at", "seconds": seconds})
    assert exc.value.code == code
    assert exc.value.param == "expires_after.seconds"


def test_unknown_key_is_401(fake_openai):
    bad = OpenAI(api_key="sk-proj-nope", base_url=fake_openai.base_url, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as exc:
        bad.realtime.client_secrets.create()
    assert exc.value.code == "invalid_api_key"
    assert "sk-proj-nope" not in str(exc.value)


def test_admin_key_is_refused_on_realtime_and_project_key_on_usage(fake_openai):
    as_admin = OpenAI(api_key=fake_openai.admin_key, base_url=fake_openai.base_url, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        as_admin.realtime.client_secrets.create()
    as_project = OpenAI(
        api_key="x", admin_api_key=fake_openai.project_key, base_url=fake_openai.base_url, max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        as_project.admin.organization.usage.completions(start_time=0)


async def test_multipart_call_returns_sdp_answer_and_location(client, fake_openai):
    raw = client.realtime.calls.with_raw_response.create(sdp=await offer_sdp(), session=SESSION)
    assert raw.status_code == 201
    assert raw.headers["content-type"].startswith("application/sdp")
    call_id = raw.headers["location"].rsplit("/", 1)[-1]
    assert raw.headers["location"] == f"/v1/realtime/calls/{call_id}"
    assert call_id.startswith("rtc_") and len(call_id) == 36
    answer = raw.parse().text
    assert answer.startswith("v=0") and "a=fingerprint:sha-256" in answer and "webrtc-datachannel" in answer
    info = fake_openai.call(call_id)
    assert info["state"] == "connecting"
    assert info["session"]["instructions"] == "Be brief."


async def test_raw_sdp_with_ephemeral_key_starts_several_calls_until_expiry(client, fake_openai):
    secret = client.realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 60},
        session={"type": "realtime", "model": "gpt-realtime-2"},
    )
    browser = OpenAI(api_key=secret.value, base_url=fake_openai.base_url, max_retries=0)
    offer = await offer_sdp()
    ids = {browser.realtime.calls.with_raw_response.create(sdp=offer).headers["location"] for _ in range(2)}
    assert len(ids) == 2
    assert {fake_openai.call(i.rsplit("/", 1)[-1])["model"] for i in ids} == {"gpt-realtime-2"}
    fake_openai.shift_clock(61)
    with pytest.raises(openai.AuthenticationError):
        browser.realtime.calls.create(sdp=offer)


async def test_raw_sdp_with_project_key_is_refused(client):
    with pytest.raises(openai.BadRequestError):
        client.realtime.calls.create(sdp=await offer_sdp())


def test_bad_sdp_is_invalid_offer(client):
    with pytest.raises(openai.BadRequestError) as exc:
        client.realtime.calls.create(sdp="hello", session=SESSION)
    assert exc.value.code == "invalid_offer"


def test_call_control_endpoints(client, fake_openai):
    a = fake_openai.create_call()["id"]
    client.realtime.calls.accept(a, type="realtime", instructions="Accepted.")
    assert fake_openai.call(a)["session"]["instructions"] == "Accepted."
    client.realtime.calls.refer(a, target_uri="tel:+14155550123")
    assert fake_openai.wait_for_call(a, lambda c: c["state"] == "ended")["end_reason"] == "referred"
    b = fake_openai.create_call()["id"]
    client.realtime.calls.reject(b, status_code=486)
    assert fake_openai.wait_for_call(b, lambda c: c["state"] == "ended")["end_reason"] == "rejected"
    c = fake_openai.create_call()["id"]
    assert client.realtime.calls.hangup(c) is None
    assert fake_openai.wait_for_call(c, lambda c: c["state"] == "ended")["end_reason"] == "hangup"


def test_hangup_of_unknown_or_ended_call_is_404_and_recorded(client, fake_openai):
    with pytest.raises(openai.NotFoundError) as exc:
        client.realtime.calls.hangup("rtc_" + "0" * 32)
    assert exc.value.code == "call_id_not_found"
    call_id = fake_openai.create_call()["id"]
    client.realtime.calls.hangup(call_id)
    with pytest.raises(openai.NotFoundError):
        client.realtime.calls.hangup(call_id)
    assert len(fake_openai.call(call_id)["hangup_requests"]) == 2


async def test_sideband_receives_typed_events_and_can_drive_responses(aclient, fake_openai):
    call_id = fake_openai.create_call(session=SESSION)["id"]
    async with aclient.realtime.connect(call_id=call_id) as conn:
        await conn.session.update(session={"type": "realtime", "instructions": "New rules."})
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Hello there"}],
            }
        )
        await conn.response.create()
        seen = []
        async for event in conn:
            seen.append(event.type)
            if event.type == "response.done":
                done = event
                break
    assert isinstance(done, ResponseDoneEvent)
    assert seen[:3] == ["session.updated", "conversation.item.added", "conversation.item.done"]
    assert (
        "response.output_audio_transcript.delta" in seen and "response.output_audio_transcript.done" in seen
    )
    usage = done.response.usage
    assert (
        usage.input_tokens == usage.input_token_details.text_tokens + usage.input_token_details.audio_tokens
    )
    assert usage.output_token_details.audio_tokens > 0 and usage.output_token_details.text_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert fake_openai.call(call_id)["session"]["instructions"] == "New rules."


async def test_sideband_rejects_model_and_late_voice_changes(aclient, fake_openai):
    call_id = fake_openai.create_call()["id"]
    async with aclient.realtime.connect(call_id=call_id) as conn:
        await conn.session.update(session={"type": "realtime", "model": "gpt-realtime-mini"})
        err = await conn.recv()
        assert isinstance(err, RealtimeErrorEvent) and err.error.code == "cannot_update_model"
        await conn.response.create()
        while (await conn.recv()).type != "response.done":
            pass
        await conn.session.update(session={"type": "realtime", "audio": {"output": {"voice": "cedar"}}})
        while (event := await conn.recv()).type != "error":
            pass
        assert event.error.code == "cannot_update_voice"


async def test_sideband_for_unknown_call_is_404(aclient):
    with pytest.raises(InvalidStatus) as exc:
        async with aclient.realtime.connect(call_id="rtc_" + "f" * 32):
            pass
    assert exc.value.response.status_code == 404
    assert b"call_id_not_found" in exc.value.response.body


async def test_fresh_call_answers_404_during_the_configured_delay(aclient, fake_openai):
    call_id = fake_openai.create_call(sideband_404_delay=0.4)["id"]
    with pytest.raises(InvalidStatus):
        async with aclient.realtime.connect(call_id=call_id):
            pass

    async def attaches() -> bool:
        try:
            async with aclient.realtime.connect(call_id=call_id):
                return True
        except InvalidStatus as exc:
            assert exc.response.status_code == 404  # only "not yet", nothing else
            return False

    # The delay runs on the fake's own clock (a subprocess): wait for it to pass.
    await await_until(attaches, timeout=5, what="the sideband answering after the delay")


async def test_several_sidebands_see_the_same_events_and_hangup_closes_them(aclient, client, fake_openai):
    call_id = fake_openai.create_call()["id"]
    async with (
        aclient.realtime.connect(call_id=call_id) as one,
        aclient.realtime.connect(call_id=call_id) as two,
    ):
        event_id = fake_openai.response_done(call_id, USAGE)
        for conn in (one, two):
            assert (await conn.recv()).type == "response.created"  # every response is announced
            event = await conn.recv()
            assert event.type == "response.done" and event.event_id == event_id
            assert event.response.usage.total_tokens == 253
        client.realtime.calls.hangup(call_id)
        for conn in (one, two):
            with pytest.raises(ConnectionClosedOK) as exc:
                await asyncio.wait_for(conn.recv(), 5)
            assert exc.value.rcvd.code == 1000


async def test_session_cap_sends_session_expired_then_1001(aclient, fake_openai):
    call_id = fake_openai.create_call(session_cap_seconds=0.5)["id"]
    async with aclient.realtime.connect(call_id=call_id) as conn:
        event = await asyncio.wait_for(conn.recv(), 3)
        assert isinstance(event, RealtimeErrorEvent) and event.error.code == "session_expired"
        with pytest.raises(ConnectionClosed) as exc:
            await asyncio.wait_for(conn.recv(), 2)
        assert exc.value.rcvd.code == 1001
    assert fake_openai.call(call_id)["end_reason"] == "expired"


async def test_dropped_sideband_can_reattach(aclient, fake_openai):
    call_id = fake_openai.create_call()["id"]
    async with aclient.realtime.connect(call_id=call_id) as conn:
        assert fake_openai.drop_sidebands(call_id) == 1
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(conn.recv(), 2)
    async with aclient.realtime.connect(call_id=call_id) as conn:
        fake_openai.response_done(call_id, USAGE)
        assert (await asyncio.wait_for(conn.recv(), 2)).type == "response.created"
        assert (await asyncio.wait_for(conn.recv(), 2)).type == "response.done"


def test_injected_faults_then_recovery(client, fake_openai):
    fake_openai.fault("client_secrets", 429, count=2)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError):
            client.realtime.client_secrets.create()
    client.realtime.client_secrets.create()
    fake_openai.fault("calls.hangup", 500)
    call_id = fake_openai.create_call()["id"]
    with pytest.raises(openai.InternalServerError):
        client.realtime.calls.hangup(call_id)
    client.realtime.calls.hangup(call_id)


def test_timeout_fault_and_latency(fake_openai):
    slow = OpenAI(api_key=fake_openai.project_key, base_url=fake_openai.base_url, max_retries=0, timeout=0.3)
    fake_openai.fault("client_secrets", "timeout", timeout_seconds=2)
    with pytest.raises(openai.APITimeoutError):
        slow.realtime.client_secrets.create()
    fake_openai.set_latency(150)
    raw = slow.realtime.client_secrets.with_raw_response.create()
    assert int(raw.headers["openai-processing-ms"]) >= 150  # the fake's own measure of the request


def test_plain_group_by_and_bracket_encodings_agree(fake_openai):
    call_id = fake_openai.create_call()["id"]
    fake_openai.response_done(call_id, USAGE)
    headers = {"Authorization": f"Bearer {fake_openai.admin_key}"}
    url = fake_openai.base_url + "/organization/usage/completions"
    start = fake_openai.now() - 60
    plain = httpx.get(
        url,
        params=[("start_time", start), ("group_by", "model"), ("group_by", "api_key_id")],
        headers=headers,
    ).json()
    brackets = httpx.get(
        url,
        params=[("start_time", start), ("group_by[]", "model"), ("group_by[]", "api_key_id")],
        headers=headers,
    ).json()
    assert plain == brackets
    (result,) = [r for b in plain["data"] for r in b["results"]]
    assert result["model"] == "gpt-realtime" and result["api_key_id"] == fake_openai.project_key_id


# The SDK's sync realtime client trips a websockets deprecation warning of its own.
@pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning")
def test_websocket_session_with_model(fake_openai):
    client = OpenAI(api_key=fake_openai.project_key, base_url=fake_openai.base_url, max_retries=0)
    with client.realtime.connect(model="gpt-realtime") as conn:
        assert conn.recv().type == "session.created"
        conn.response.create(response={"output_modalities": ["text"]})
        types = []
        while (event := conn.recv()).type != "response.done":
            types.append(event.type)
        assert (
            "response.output_text.delta" in types
            and event.response.usage.output_token_details.audio_tokens == 0
        )


async def test_async_client_control_calls(aclient, fake_openai):
    call_id = fake_openai.create_call()["id"]
    await aclient.realtime.calls.hangup(call_id)
    with pytest.raises(openai.NotFoundError):
        await aclient.realtime.calls.hangup(call_id)


def test_admin_client_parses_usage_and_costs(admin: OpenAI, fake_openai):
    fake_openai.response_done(fake_openai.create_call()["id"], USAGE)
    page = admin.admin.organization.usage.completions(start_time=fake_openai.now() - 3600, bucket_width="1h")
    assert page.object == "page"
    usage = page.data[-1].results[0]
    assert isinstance(usage, usage_completions_response.DataResultOrganizationUsageCompletionsResult)
    assert usage.input_tokens == 132
    costs = admin.admin.organization.usage.costs(start_time=fake_openai.now() - 86400)
    cost = costs.data[-1].results[0]
    assert isinstance(cost, usage_costs_response.DataResultOrganizationCostsResult)
    assert cost.amount is not None and cost.amount.currency == "usd"


async def test_async_admin_client(fake_openai):
    admin = AsyncOpenAI(api_key="x", admin_api_key=fake_openai.admin_key, base_url=fake_openai.base_url)
    page = await admin.admin.organization.usage.completions(
        start_time=fake_openai.now() - 60, bucket_width="1m"
    )
    assert page.data
