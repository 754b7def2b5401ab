from decimal import Decimal

from aiortc.sdp import SessionDescription

from fakes.openai.media import EnergyVad, synthetic_answer
from fakes.openai.pricing import cost_usd, price_family
from fakes.openai.session import apply_update, build_session
from fakes.openai.usage_store import split_usage


def test_price_family_strips_snapshots_without_confusing_families():
    assert price_family("gpt-realtime-2025-08-28") == "gpt-realtime"
    assert price_family("gpt-realtime-mini-2025-12-15") == "gpt-realtime-mini"
    assert price_family("gpt-realtime-2.1-mini") == "gpt-realtime-2.1-mini"
    assert price_family("gpt-4o-realtime-preview-2024-12-17") == "gpt-4o-realtime-preview"
    assert price_family("something-else") == "gpt-realtime"


def test_cost_of_a_million_tokens_is_the_list_price():
    assert cost_usd("gpt-realtime-2", {"output_text_tokens": 1_000_000}) == Decimal("24.00")
    assert cost_usd("gpt-realtime", {"input_cached_audio_tokens": 1_000_000}) == Decimal("0.40")


def test_split_usage_reports_uncached_counts_and_prices_bare_totals():
    _, _, tokens = split_usage(
        {
            "input_tokens": 10,
            "output_tokens": 5,
            "input_token_details": {
                "text_tokens": 8,
                "audio_tokens": 2,
                "cached_tokens": 6,
                "cached_tokens_details": {"text_tokens": 6},
            },
        }
    )
    assert tokens["input_text_tokens"] == 2 and tokens["input_cached_text_tokens"] == 6
    assert tokens["output_text_tokens"] == 5  # no details: counted as text
    assert split_usage({"input_tokens": 7})[2]["input_text_tokens"] == 7


def test_synthetic_answer_is_parseable_and_mirrors_the_offer():
    offer = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=mid:a\r\n"
        "a=rtpmap:111 opus/48000/2\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:d\r\n"
    )
    parsed = SessionDescription.parse(synthetic_answer(offer))
    assert [(m.kind, m.rtp.muxId if m.kind == "audio" else None) for m in parsed.media] == [
        ("audio", "a"),
        ("application", None),
    ]
    assert parsed.media[0].dtls.role == "client"


def test_energy_vad_finds_one_turn():
    events = []
    vad = EnergyVad(
        lambda: {"type": "server_vad", "threshold": 0.5, "silence_duration_ms": 200},
        lambda start: events.append(("start", start)),
        lambda end, ms: events.append(("stop", end, ms)),
    )
    for rms in [0.0] * 10 + [0.2] * 50 + [0.0] * 20:
        vad.feed(rms, 20)
    assert events == [("start", 200), ("stop", 1200, 1000)]


def test_session_update_keeps_unmentioned_fields():
    session = build_session(
        {"type": "realtime", "instructions": "a", "audio": {"output": {"voice": "marin"}}}
    )
    updated = apply_update(
        session, {"type": "realtime", "audio": {"output": {"speed": 1.2}}}, audio_sent=False
    )
    assert updated["audio"]["output"] == {**session["audio"]["output"], "speed": 1.2}
    assert updated["instructions"] == "a"
    cleared = apply_update(updated, {"audio": {"input": {"turn_detection": None}}}, audio_sent=True)
    assert cleared["audio"]["input"]["turn_detection"] is None
