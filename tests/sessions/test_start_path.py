"""The call-start hot path: one transaction for the call and its hold, the live push built from the
row in hand, and a bounded number of queries."""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
import time_machine
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.models import Hold
from realtime_saas import live
from realtime_saas.live import user_group
from sessions import presenters
from sessions.api.serializers import CallSerializer
from sessions.models import CallEvent, CallState, Cause, RealtimeCall
from tests.factories import wallet_of
from tests.sessions.factories import AssistantFactory


def start(client, assistant, offer):
    return client.post(f"/api/calls/?assistant={assistant.pk}", data=offer, content_type="application/sdp")


def test_a_start_writes_the_call_its_hold_and_its_events(alice_client, funded_alice, assistant, offer_sdp,
                                                         openai_settings):
    response = start(alice_client, assistant, offer_sdp)
    assert response.status_code == 201
    call = RealtimeCall.objects.get()
    hold = Hold.objects.get(pk=call.hold_id)
    assert hold.status == Hold.Status.ACTIVE and hold.credits == call.credits_held > 0
    assert hold.reference == f"realtime-call:{call.public_id}"
    assert wallet_of(funded_alice).held == call.credits_held
    states = list(call.events.filter(kind=CallEvent.Kind.STATE).order_by("pk").values_list("from_state", "to_state"))
    assert states == [("", CallState.PENDING), (CallState.PENDING, CallState.ACTIVE)]
    assert call.state == CallState.ACTIVE and call.started_at is not None and call.openai_call_id.startswith("rtc_")


def test_a_failure_after_the_call_row_rolls_back_the_hold_too(alice_client, funded_alice, assistant, offer_sdp,
                                                              openai_settings):
    """The call, its first event and its hold commit together: if the call and its event cannot be
    written (after the hold was), neither the call nor the hold exist, and nothing is held."""
    failing = mock.patch("sessions.services._write_call", side_effect=RuntimeError("disk full"))
    with failing, pytest.raises(RuntimeError):
        start(alice_client, assistant, offer_sdp)
    assert not RealtimeCall.objects.exists()
    assert not Hold.objects.exists()
    assert wallet_of(funded_alice).held == 0
    assert openai_settings.calls() == []


def test_a_blocked_wallet_is_402_wallet_blocked_and_nothing_is_written(alice_client, funded_alice, assistant,
                                                                       offer_sdp, openai_settings):
    from billing import services as billing

    billing.clawback(user=funded_alice, credits=20_000, idempotency_key="cb", kind="refund", reference="test")
    response = start(alice_client, assistant, offer_sdp)
    assert response.status_code == 402
    body = response.json()
    assert body["error"]["code"] == "wallet_blocked"
    assert "Buy credits" in body["error"]["message"]
    assert not RealtimeCall.objects.exists() and not Hold.objects.exists()
    assert openai_settings.calls() == []


def test_the_start_rate_retry_after_counts_from_the_oldest_start_in_the_window(alice_client, funded_alice,
                                                                              offer_sdp, openai_settings):
    assistant = AssistantFactory(max_starts_per_minute=2, max_concurrent_calls=5)
    t0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    with time_machine.travel(t0, tick=False):
        assert start(alice_client, assistant, offer_sdp).status_code == 201
    with time_machine.travel(t0 + timedelta(seconds=10), tick=False):
        assert start(alice_client, assistant, offer_sdp).status_code == 201
    with time_machine.travel(t0 + timedelta(seconds=30), tick=False):
        refused = start(alice_client, assistant, offer_sdp)
        assert refused.status_code == 429 and refused["Retry-After"] == "30"
    with time_machine.travel(t0 + timedelta(seconds=61), tick=False):
        assert start(alice_client, assistant, offer_sdp).status_code == 201


def test_live_calls_and_recent_starts_are_counted_separately(alice_client, funded_alice, offer_sdp, openai_settings):
    """A call that ended a second ago still counts toward the start rate, not toward concurrency."""
    assistant = AssistantFactory(max_starts_per_minute=5, max_concurrent_calls=1)
    assert start(alice_client, assistant, offer_sdp).status_code == 201
    assert start(alice_client, assistant, offer_sdp).status_code == 429  # one live call already
    RealtimeCall.objects.filter(state=CallState.ACTIVE).update(state=CallState.ENDED, ended_at=timezone.now())
    assert start(alice_client, assistant, offer_sdp).status_code == 201


@pytest.mark.parametrize("state", [CallState.PENDING, CallState.ACTIVE, CallState.ENDING, CallState.ENDED])
def test_the_live_push_payloads_are_the_api_response(alice_client, alice, assistant, state):
    """The pushes (`presenters.call_payload`, with events after a transition, without on a start)
    are what GET /api/calls/<id> answers, key for key and in the same order; the schema names the
    same fields."""
    now = datetime(2026, 11, 30, 12, 0, 0, 250_000, tzinfo=UTC)
    started = state != CallState.PENDING
    call = RealtimeCall.objects.create(
        user=alice, assistant=assistant, state=state, mode="proxy", model=assistant.model, allowed_seconds=300,
        markup_percent=50, created_at=now - timedelta(seconds=50), credits_held=321, credits_used=12,
        audio_out_tokens=40, text_cached_tokens=7, cost_microusd=1_234, partial_hold=state == CallState.ACTIVE,
        started_at=now - timedelta(seconds=42, microseconds=500_000) if started else None,
        ending_at=now - timedelta(seconds=2) if state in (CallState.ENDING, CallState.ENDED) else None,
        ended_at=now if state == CallState.ENDED else None, expected_end_at=now + timedelta(minutes=5, seconds=0.5),
        metered_at=now - timedelta(seconds=40) if started else None,
        credits_charged=12 if state == CallState.ENDED else None,
        end_reason=Cause.USER_HANGUP if state in (CallState.ENDING, CallState.ENDED) else "",
    )
    CallEvent.objects.create(call=call, at=call.created_at, to_state=CallState.PENDING, cause=Cause.STARTED)
    CallEvent.objects.create(call=call, at=now - timedelta(seconds=1), kind=CallEvent.Kind.WARNING, detail="Credits")
    with time_machine.travel(now, tick=False):
        response = alice_client.get(f"/api/calls/{call.public_id}")
        assert response.status_code == 200
        api = response.json()
        call = RealtimeCall.objects.select_related("assistant").get(pk=call.pk)
        with_events = presenters.call_payload(call, events=True)
        without_events = presenters.call_payload(call)
    assert json.loads(json.dumps(with_events)) == api
    assert list(with_events) == list(api) == CallSerializer.Meta.fields
    assert [event["kind"] for event in api["events"]] == ["pending", "warning"]
    api.pop("events")
    assert json.loads(json.dumps(without_events)) == api and list(without_events) == list(api)


def test_the_start_pushes_the_active_call_to_its_user(alice_client, funded_alice, assistant, offer_sdp,
                                                      openai_settings, monkeypatch,
                                                      django_capture_on_commit_callbacks):
    pushed = []
    monkeypatch.setattr("sessions.services.push_to_user", lambda uid, kind, data: pushed.append((uid, kind, data)))
    with django_capture_on_commit_callbacks(execute=True):
        assert start(alice_client, assistant, offer_sdp).status_code == 201
    call = RealtimeCall.objects.get()
    calls = [push for push in pushed if push[1] == "call"]
    assert len(calls) == 1
    user_id, _, payload = calls[0]
    assert user_id == funded_alice.pk
    assert payload["id"] == call.public_id and payload["state"] == "active"
    assert payload["credits_held"] == call.credits_held and payload["seconds_left"] > 0


@pytest.mark.postgres
def test_a_start_is_seven_statements(alice_client, funded_alice, assistant, offer_sdp, openai_settings):
    """Every statement of the hot path on PostgreSQL, session and user included: the user, the
    email check, then in one transaction the wallet lock, the limits, the hold, the call with its
    first event; after OpenAI answered, the activation with its event (in autocommit). The
    assistant and its price come from the per-process cache. The test's own transaction adds a
    SAVEPOINT and a RELEASE around each of the two writes: 11 here, 7 in production. Change the
    number only with a reason (benchmarks/start_call.py measures what each one costs)."""
    start(alice_client, assistant, offer_sdp)  # warm: wallet exists, caches filled
    with CaptureQueriesContext(connection) as queries:
        assert start(alice_client, assistant, offer_sdp).status_code == 201
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) == 11, "\n".join(statements)
    assert sum(sql.startswith(("SAVEPOINT", "RELEASE SAVEPOINT")) for sql in statements) == 4


# --- one live push a start --------------------------------------------------------------------


def _shared_layer():
    from django.conf import settings

    if "Redis" not in settings.CHANNEL_LAYERS["default"]["BACKEND"]:
        pytest.skip("listening beside the web process's pushes needs a shared (Redis) channel layer")
    return get_channel_layer()


def _listen(layer, user_id: int) -> str:
    """A channel in the user's group, as each of their open pages' sockets is."""
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(user_group(user_id), channel)
    return channel


def _received(layer, channel: str) -> list[dict]:
    """Every message the channel got, once the pushes under way are sent."""
    live.flush()

    async def drain() -> list[dict]:
        messages = []
        while True:
            try:
                messages.append(await asyncio.wait_for(layer.receive(channel), 0.5))
            except TimeoutError:
                return messages

    return async_to_sync(drain)()


@pytest.mark.django_db(transaction=True)
def test_a_start_is_one_live_message_with_the_wallet_and_the_call(alice_client, funded_alice, assistant,
                                                                 offer_sdp, openai_settings):
    """The hold's new wallet figures and the active call reach the user's pages as one channel-layer
    message (a `batch` live.js unpacks in order), not one send each."""
    layer = _shared_layer()
    channel = _listen(layer, funded_alice.pk)
    assert start(alice_client, assistant, offer_sdp).status_code == 201
    call = RealtimeCall.objects.get()
    wallet = wallet_of(funded_alice)
    messages = _received(layer, channel)
    assert [(m["type"], m["kind"]) for m in messages] == [("live.event", "batch")]
    assert [part["type"] for part in messages[0]["data"]] == ["balance", "call"]
    balance, pushed_call = (part["data"] for part in messages[0]["data"])
    assert balance == {"balance": 10_000, "held": call.credits_held, "available": 10_000 - call.credits_held}
    assert balance["held"] == wallet.held > 0
    assert pushed_call["id"] == call.public_id and pushed_call["state"] == "active"


@pytest.mark.django_db(transaction=True)
def test_a_failed_start_is_one_live_message_with_the_released_wallet_and_the_failed_call(
    alice_client, funded_alice, assistant, offer_sdp, openai_settings
):
    """The hold, its release and the failed call: one message, the wallet's latest figures only."""
    layer = _shared_layer()
    channel = _listen(layer, funded_alice.pk)
    openai_settings.fault("calls.create", 500)
    assert start(alice_client, assistant, offer_sdp).status_code == 502
    messages = _received(layer, channel)
    assert [m["kind"] for m in messages] == ["batch"]
    parts = messages[0]["data"]
    assert [part["type"] for part in parts] == ["balance", "call"]
    assert parts[0]["data"] == {"balance": 10_000, "held": 0, "available": 10_000}
    assert parts[1]["data"]["state"] == "failed"


# --- the Talk page's poll and the hangup: statements counted as for the start -----------------


@pytest.mark.postgres
def test_the_talk_pages_poll_of_a_call_is_two_statements(alice_client, funded_alice, assistant, offer_sdp,
                                                          openai_settings):
    """GET /api/calls/<id>, which the Talk page polls every 0.5-3 s during a call: the user, then
    the call with its assistant and its timeline in one statement (3 before: the timeline was
    read on its own). Change the number only with a reason."""
    call_id = start(alice_client, assistant, offer_sdp)["X-Call-Id"]
    alice_client.get(f"/api/calls/{call_id}")  # warm
    with CaptureQueriesContext(connection) as queries:
        response = alice_client.get(f"/api/calls/{call_id}")
    assert response.status_code == 200 and [e["kind"] for e in response.json()["events"]] == ["pending", "active"]
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) == 2, "\n".join(statements)


@pytest.mark.postgres
def test_a_hangup_is_five_statements(alice_client, funded_alice, assistant, offer_sdp, openai_settings,
                                     monkeypatch):
    """POST /api/calls/<id>/hangup: the user, the call with its assistant, the transition to
    `ending` with its event (one statement, in autocommit), the hangup_sent event once OpenAI
    answered, the timeline the answer and the one live push share. The test's transaction adds a
    SAVEPOINT and a RELEASE around the transition: 7 here, 5 in production (16 before issue 16:
    each read again, BEGIN/COMMIT, the push's own two queries)."""
    pushed = []
    monkeypatch.setattr("sessions.services.push_to_user", lambda uid, kind, data: pushed.append((uid, kind, data)))
    call_id = start(alice_client, assistant, offer_sdp)["X-Call-Id"]
    with CaptureQueriesContext(connection) as queries:
        response = alice_client.post(f"/api/calls/{call_id}/hangup")
    assert response.status_code == 202
    body = response.json()
    assert body["state"] == "ending" and body["end_reason"] == "user_hangup"
    assert [e["kind"] for e in body["events"]] == ["pending", "active", "ending", "hangup_sent"]
    assert pushed[-1] == (funded_alice.pk, "call", body)  # the push is the answer
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) == 7, "\n".join(statements)
    assert sum(sql.startswith(("SAVEPOINT", "RELEASE SAVEPOINT")) for sql in statements) == 2
    assert alice_client.get(f"/api/calls/{call_id}").json() == body | {
        "seconds_left": None, "duration_seconds": body["duration_seconds"]
    }


def test_the_poll_answers_what_the_serializer_renders(alice_client, funded_alice, assistant, offer_sdp,
                                                      openai_settings, bob):
    """The one-statement read renders the call exactly as CallSerializer does from the ORM's rows,
    timeline in order; another user's call and an unknown id are the same 404."""
    call_id = start(alice_client, assistant, offer_sdp)["X-Call-Id"]
    alice_client.post(f"/api/calls/{call_id}/hangup")
    call = RealtimeCall.objects.select_related("assistant").prefetch_related("events").get(public_id=call_id)
    now = timezone.now()
    with time_machine.travel(now, tick=False):
        body = alice_client.get(f"/api/calls/{call_id}").json()
        assert body == json.loads(json.dumps(CallSerializer(call).data))
    assert [e["kind"] for e in body["events"]] == ["pending", "active", "ending", "hangup_sent"]
    from django.test import Client

    bob_client = Client()
    bob_client.force_login(bob)
    for client, path in ((bob_client, call_id), (alice_client, "call_unknown")):
        response = client.get(f"/api/calls/{path}")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_a_transition_forgets_a_timeline_prefetched_before_it(alice_client, funded_alice, assistant, offer_sdp,
                                                              openai_settings):
    """The one-statement transition refreshes the call from its row; a timeline prefetched before
    would lack the event it wrote, so it is read again, as refresh_from_db would."""
    from sessions import services

    call_id = start(alice_client, assistant, offer_sdp)["X-Call-Id"]
    call = RealtimeCall.objects.prefetch_related("events").get(public_id=call_id)
    assert [e.to_state for e in call.events.all()] == ["pending", "active"]
    assert services.transition(call, to=CallState.ENDING, cause=Cause.USER_HANGUP, end_reason=Cause.USER_HANGUP)
    assert call.state == CallState.ENDING and call.ending_at is not None
    assert [(e.from_state, e.to_state) for e in call.events.all()] == [
        ("", "pending"), ("pending", "active"), ("active", "ending")
    ]
    assert not services.transition(call, to=CallState.ENDING, cause=Cause.STAFF_HANGUP)  # already ending
    assert call.events.count() == 3
