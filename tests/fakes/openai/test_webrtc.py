"""A real aiortc caller through the fake: media, data channel, sideband, usage, hangup."""

import asyncio

import pytest
from openai import AsyncOpenAI, OpenAI
from websockets.exceptions import ConnectionClosedOK, InvalidStatus

from fakes.openai.pytest_plugin import start_fake_openai
from tests.fakes.openai.conftest import SESSION
from tests.fakes.openai.helpers import Caller, ScriptedMic
from tests.waiting import await_until


async def connect(caller: Caller, client) -> str:
    raw = client.realtime.calls.with_raw_response.create(sdp=await caller.offer(), session=SESSION)
    await caller.accept_answer(raw.parse().text)
    return raw.headers["location"].rsplit("/", 1)[-1]


@pytest.mark.slow
async def test_spoken_turn_gets_a_spoken_answer_seen_on_both_links(client, aclient, admin, fake_openai):
    caller = Caller(ScriptedMic([(0.3, False), (1.2, True)]))
    try:
        call_id = await connect(caller, client)
        # The sideband answers 404 until the caller is connected (reference §3 "Timing").
        await caller.wait_for("session.created", timeout=5)
        async with aclient.realtime.connect(call_id=call_id) as sideband:
            stopped = await caller.wait_for("input_audio_buffer.speech_stopped")
            started = await caller.wait_for("input_audio_buffer.speech_started")
            assert 1000 <= stopped["audio_end_ms"] - started["audio_start_ms"] <= 1400
            done = await caller.wait_for("response.done")
            types = [e["type"] for e in caller.events]
            for expected in (
                "input_audio_buffer.committed",
                "conversation.item.added",
                "response.created",
                "rate_limits.updated",
                "response.output_audio_transcript.delta",
                "response.output_audio_transcript.done",
                "output_audio_buffer.started",
            ):
                assert expected in types
            usage = done["response"]["usage"]
            assert 10 <= usage["input_token_details"]["audio_tokens"] <= 14  # ~1 token per 100 ms of speech
            transcript = done["response"]["output"][0]["content"][0]["transcript"]
            words_seconds = len(transcript.split()) / 3.0  # fake's default speaking rate
            assert usage["output_token_details"]["audio_tokens"] == pytest.approx(words_seconds * 20, abs=1)
            assert all(e["event_id"].startswith("event_") for e in caller.events)

            on_sideband = []
            async for event in sideband:
                on_sideband.append(event)
                if event.type == "response.done":
                    break
            assert on_sideband[-1].event_id == done["event_id"]
            assert on_sideband[-1].response.usage.total_tokens == usage["total_tokens"]
            sideband_types = [e.type for e in on_sideband]
            assert sideband_types == types[types.index(sideband_types[0]) : types.index("response.done") + 1]

            # The spoken answer reaches the caller as sound (audio arrives in real time).
            await await_until(lambda: caller.loud_frames >= 10, timeout=5,
                              what="10 loud frames at the caller")

            await aclient.realtime.calls.hangup(call_id)
            with pytest.raises(ConnectionClosedOK):
                await asyncio.wait_for(sideband.recv(), 5)
            await asyncio.wait_for(caller.channel_closed.wait(), 5)
            await await_until(lambda: caller.pc.connectionState in ("closed", "failed"), timeout=5,
                              what="the peer connection closed by the hangup")

        buckets = admin.admin.organization.usage.completions(
            start_time=fake_openai.now() - 120, bucket_width="1m"
        )
        results = [r for b in buckets.data for r in b.results]
        assert sum(r.input_tokens for r in results) == usage["input_tokens"]
        assert sum(r.output_tokens for r in results) == usage["output_tokens"]
        assert sum(r.num_model_requests for r in results) == 1
    finally:
        await caller.close()


async def test_response_create_on_datachannel_open_yields_a_transcript(client, fake_openai):
    # What the product's Talk page does so that a transcript appears without anyone speaking.
    caller = Caller()
    caller.channel.on("open", lambda: caller.channel.send('{"type": "response.create"}'))
    try:
        call_id = await connect(caller, client)
        done = await caller.wait_for("response.done")
        transcript = await caller.wait_for("response.output_audio_transcript.done")
        deltas = [e["delta"] for e in caller.events if e["type"] == "response.output_audio_transcript.delta"]
        assert "".join(deltas) == transcript["transcript"] != ""
        assert done["response"]["status"] == "completed"
        assert fake_openai.call(call_id)["state"] == "active"
    finally:
        await caller.close()


async def test_caller_leaving_ends_the_call_and_its_sidebands(client, aclient, fake_openai):
    caller = Caller()
    call_id = await connect(caller, client)
    await caller.wait_for("session.created", timeout=5)
    async with aclient.realtime.connect(call_id=call_id) as sideband:
        await caller.close()
        with pytest.raises(ConnectionClosedOK):
            await asyncio.wait_for(sideband.recv(), 3)
    assert fake_openai.call(call_id)["end_reason"].startswith("peer_")


@pytest.mark.slow
async def test_caller_that_never_connects_gets_no_sideband_and_times_out():
    fake = start_fake_openai("--connect-timeout-seconds", "0.5", "--sideband-requires-connection")
    try:
        client = OpenAI(api_key=fake.project_key, base_url=fake.base_url, max_retries=0)
        caller = Caller()
        offer = await caller.offer()
        await caller.close()
        raw = client.realtime.calls.with_raw_response.create(sdp=offer, session=SESSION)
        call_id = raw.headers["location"].rsplit("/", 1)[-1]
        aclient = AsyncOpenAI(api_key=fake.project_key, base_url=fake.base_url, max_retries=0)
        with pytest.raises(InvalidStatus):
            async with aclient.realtime.connect(call_id=call_id):
                pass
        info = await asyncio.to_thread(fake.wait_for_call, call_id, lambda c: c["state"] == "ended", 3)
        assert info["end_reason"] == "connect_timeout"
    finally:
        fake.close()
