import datetime as dt

from django.core.management import call_command
from django.utils import timezone

from realtime_saas.settings import CELERY_BEAT_SCHEDULE
from sessions.models import CallState, Cause, ModelPrice, RealtimeCall, TokenCounts, credits_for_cost
from sessions.tasks import sweep_calls


def test_the_openapi_schema_builds_without_warnings(tmp_path):
    path = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    schema = path.read_text()
    for endpoint in ("/api/assistants/", "/api/calls/", "/api/calls/{call_id}", "/api/calls/{call_id}/hangup",
                     "/api/calls/{call_id}/attach", "/api/client-secrets/"):
        assert f"  {endpoint}:" in schema
    assert "application/sdp" in schema
    for code in ("insufficient_credits", "concurrency_limit", "upstream_unavailable", "payload_too_large",
                 "invalid_offer"):
        assert code in schema


def test_prices_are_seeded_in_microusd_per_million_tokens(db):
    price = ModelPrice.objects.get(model="gpt-realtime")
    assert price.text_in_microusd_per_mtok == 4_000_000
    assert price.text_cached_microusd_per_mtok == 400_000
    assert price.audio_out_microusd_per_mtok == 64_000_000
    assert ModelPrice.objects.get(model="gpt-realtime-mini").text_cached_microusd_per_mtok == 60_000


def test_cost_and_credits_round_up(db, settings):
    settings.REALTIME_CREDITS_PER_USD = 100
    price = ModelPrice.objects.get(model="gpt-realtime")
    usage = {"input_token_details": {"text_tokens": 119, "audio_tokens": 13, "cached_tokens": 64,
                                     "cached_tokens_details": {"text_tokens": 64, "audio_tokens": 0}},
             "output_token_details": {"text_tokens": 30, "audio_tokens": 91}}
    tokens = TokenCounts.from_usage(usage)
    assert tokens == TokenCounts(text_in=55, text_cached=64, text_out=30, audio_in=13, audio_cached=0, audio_out=91)
    # 55×4 + 64×0.4 + 30×16 + 13×32 + 91×64 = 6,965.6 µ$ → 6,966
    assert price.cost_microusd(tokens) == 6966
    assert credits_for_cost(6966, markup_percent=50) == 2  # $0.0104 → 1.04 credits → 2
    assert credits_for_cost(0, markup_percent=50) == 0


def test_the_sweep_runs_every_minute_from_beat(db):
    assert CELERY_BEAT_SCHEDULE["realtime-sweep-calls"]["task"] == "sessions.tasks.sweep_calls"
    assert sweep_calls.apply().get() == 0


def test_admin_lists_and_filters_calls(staff_client, alice, assistant):
    call = RealtimeCall.objects.create(
        user=alice, assistant=assistant, model="gpt-realtime", markup_percent=50, allowed_seconds=60,
        created_at=timezone.now(), expected_end_at=timezone.now() + dt.timedelta(minutes=1),
    )
    for query in ("", "?state=pending", f"?assistant__id__exact={assistant.pk}", "?mode=proxy",
                  f"?user__id__exact={alice.pk}", f"?q={call.public_id}"):
        response = staff_client.get(f"/admin/realtime/realtimecall/{query}")
        assert response.status_code == 200, query
        assert call.public_id in response.content.decode(), query
    assert staff_client.get(f"/admin/realtime/realtimecall/{call.pk}/change/").status_code == 200
    assert staff_client.get("/admin/realtime/assistant/").status_code == 200
    assert staff_client.get("/admin/realtime/modelprice/").status_code == 200


def test_admin_hang_up_now_calls_the_service(staff_client, staff, alice, assistant):
    call = RealtimeCall.objects.create(
        user=alice, assistant=assistant, model="gpt-realtime", markup_percent=50, allowed_seconds=60, mode="key",
        state=CallState.ACTIVE, created_at=timezone.now(), expected_end_at=timezone.now() + dt.timedelta(minutes=1),
    )
    response = staff_client.post("/admin/realtime/realtimecall/",
                                 {"action": "hang_up_now", "_selected_action": [call.pk]}, follow=True)
    assert response.status_code == 200
    assert "hang up 1 call" in response.content.decode()
    call.refresh_from_db()
    assert call.state == CallState.KILLED and call.end_reason == Cause.STAFF_HANGUP
    assert call.events.last().actor == staff
