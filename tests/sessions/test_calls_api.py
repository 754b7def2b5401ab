"""Reading, hanging up and settling calls; key mode; the sweep."""

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from billing.models import Hold
from sessions import services
from sessions.models import CallEvent, CallState, Cause, RealtimeCall
from tests.factories import fund, wallet_of
from tests.sessions.factories import AssistantFactory


@pytest.fixture
def live_call(alice_client, funded_alice, assistant, offer_sdp, openai_settings):
    response = alice_client.post(f"/api/calls/?assistant={assistant.pk}", data=offer_sdp,
                                 content_type="application/sdp")
    assert response.status_code == 201
    return RealtimeCall.objects.get(public_id=response["X-Call-Id"])


def test_detail_shows_the_call(alice_client, live_call):
    body = alice_client.get(f"/api/calls/{live_call.public_id}").json()
    assert body["id"] == live_call.public_id
    assert body["assistant"] == {"id": live_call.assistant_id, "name": live_call.assistant.name}
    assert body["mode"] == "proxy" and body["state"] == "active"
    assert 590 <= body["seconds_left"] <= 600
    assert body["duration_seconds"] == 0
    assert body["credits_held"] == 423 and body["credits_charged"] is None and body["cost_microusd"] == 0
    assert body["tokens"] == {"text_in": 0, "text_cached": 0, "text_out": 0, "audio_in": 0, "audio_cached": 0,
                              "audio_out": 0}
    assert body["end_reason"] == ""
    assert [(e["kind"], e["cause"]) for e in body["events"]] == [("pending", "started"), ("active", "upstream_answered")]
    for key in ("created_at", "started_at", "ended_at", "expected_end_at"):
        assert key in body


def test_list_is_own_calls_paginated(alice_client, live_call, bob):
    other = RealtimeCall.objects.create(
        user=bob, assistant=live_call.assistant, model="gpt-realtime", markup_percent=50, allowed_seconds=60,
        created_at=timezone.now(), expected_end_at=timezone.now(),
    )
    body = alice_client.get("/api/calls/").json()
    assert body["count"] == 1 and body["next"] is None and body["previous"] is None
    assert [c["id"] for c in body["results"]] == [live_call.public_id]
    assert other.public_id not in str(body)


def test_assistants_lists_active_ones(alice_client, assistant):
    AssistantFactory(is_active=False, name="Hidden")
    body = alice_client.get("/api/assistants/").json()
    names = [a["name"] for a in body["results"]]
    assert assistant.name in names and "Hidden" not in names
    mine = next(a for a in body["results"] if a["id"] == assistant.pk)
    assert mine == {"id": assistant.pk, "name": assistant.name, "model": "gpt-realtime", "voice": "marin",
                    "max_call_seconds": 600, "modes": ["proxy", "key"], "min_credits": 10}


def test_the_seeded_default_assistant_exists(alice_client):
    from tests.sessions.factories import ensure_prices

    ensure_prices()  # no-op unless a transactional test flushed the migration's rows
    body = alice_client.get("/api/assistants/").json()
    assert any(a["name"] == "Friendly assistant" and "proxy" in a["modes"] for a in body["results"])


def test_another_users_call_is_404_and_nothing_changes(client, bob, live_call, openai_settings):
    client.force_login(bob)
    before = RealtimeCall.objects.values().get(pk=live_call.pk)
    events = CallEvent.objects.count()
    for method, path in (("get", ""), ("post", "/hangup"), ("post", "/attach")):
        response = getattr(client, method)(f"/api/calls/{live_call.public_id}{path}", content_type="application/json",
                                           data={"call_id": "rtc_" + "0" * 32} if path == "/attach" else None)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
    assert RealtimeCall.objects.values().get(pk=live_call.pk) == before
    assert CallEvent.objects.count() == events
    assert openai_settings.call(live_call.openai_call_id)["hangup_requests"] == []


def test_hangup_ends_the_call_upstream_and_is_202(alice_client, live_call, openai_settings, funded_alice):
    response = alice_client.post(f"/api/calls/{live_call.public_id}/hangup")
    assert response.status_code == 202
    assert response.json()["state"] == "ending"
    assert response.json()["end_reason"] == "user_hangup"
    assert len(openai_settings.call(live_call.openai_call_id)["hangup_requests"]) == 1
    live_call.refresh_from_db()
    assert live_call.ending_at is not None
    kinds = list(live_call.events.values_list("kind", "to_state", "actor"))
    assert kinds[-2:] == [("state", "ending", funded_alice.pk), ("hangup_sent", "", funded_alice.pk)]

    again = alice_client.post(f"/api/calls/{live_call.public_id}/hangup")
    assert again.status_code == 202 and again.json()["state"] == "ending"
    assert len(openai_settings.call(live_call.openai_call_id)["hangup_requests"]) == 1


def test_an_ended_call_unmetered_is_settled_at_its_full_hold_by_the_sweep(alice_client, live_call, funded_alice):
    alice_client.post(f"/api/calls/{live_call.public_id}/hangup")
    assert services.sweep_calls() == 0  # within the ending grace: a supervisor may still settle it
    with time_machine.travel(timezone.now() + dt.timedelta(seconds=31)):
        assert services.sweep_calls() == 1
    live_call.refresh_from_db()
    assert live_call.state == CallState.ENDED
    assert live_call.end_reason == Cause.USER_HANGUP
    assert live_call.credits_charged == 423
    assert Hold.objects.get(pk=live_call.hold_id).status == Hold.Status.SETTLED
    wallet = wallet_of(funded_alice)
    assert (wallet.balance, wallet.held) == (10_000 - 423, 0)
    assert services.sweep_calls() == 0
    body = alice_client.get(f"/api/calls/{live_call.public_id}").json()
    assert body["state"] == "ended" and body["seconds_left"] is None and body["credits_charged"] == 423


def test_a_call_running_past_its_end_is_hung_up_and_expired(live_call, funded_alice, openai_settings):
    # Its supervisor renewed the lease to the end, then died: the expected end decides.
    RealtimeCall.objects.filter(pk=live_call.pk).update(lease_owner="", lease_expires_at=live_call.expected_end_at)
    with time_machine.travel(live_call.expected_end_at + dt.timedelta(seconds=59)):
        assert services.sweep_calls() == 0
    with time_machine.travel(live_call.expected_end_at + dt.timedelta(seconds=61)):
        assert services.sweep_calls() == 1
    live_call.refresh_from_db()
    assert live_call.state == CallState.EXPIRED and live_call.end_reason == Cause.UNMETERED
    assert live_call.credits_charged == 423
    assert len(openai_settings.call(live_call.openai_call_id)["hangup_requests"]) == 1
    assert wallet_of(funded_alice).held == 0


@pytest.mark.parametrize("watched_until", [None, 30])
def test_a_call_no_supervisor_watches_is_hung_up_after_the_unwatched_grace(
    live_call, funded_alice, openai_settings, watched_until
):
    """Fail closed when every supervisor is gone: a running call nobody watched (never, or since
    its last lease expired) is hung up REALTIME_UNWATCHED_GRACE_SECONDS (120) later, long before its
    expected end, and charged its full hold as an unmetered call."""
    started = live_call.started_at
    free_since = started if watched_until is None else started + dt.timedelta(seconds=watched_until)
    if watched_until is not None:
        RealtimeCall.objects.filter(pk=live_call.pk).update(lease_owner="", lease_expires_at=free_since,
                                                            metered_at=started)
    with time_machine.travel(free_since + dt.timedelta(seconds=119)):
        assert services.sweep_calls() == 0
    with time_machine.travel(free_since + dt.timedelta(seconds=121)):
        assert services.sweep_calls() == 1
    live_call.refresh_from_db()
    assert (live_call.state, live_call.end_reason, live_call.credits_charged) == (
        CallState.EXPIRED, Cause.UNMETERED, 423)
    assert live_call.expected_end_at - free_since > dt.timedelta(minutes=5)
    assert len(openai_settings.call(live_call.openai_call_id)["hangup_requests"]) == 1


def test_a_leased_call_is_left_to_its_supervisor(live_call):
    RealtimeCall.objects.filter(pk=live_call.pk).update(
        lease_owner="sup-1", lease_expires_at=live_call.expected_end_at + dt.timedelta(hours=1))
    with time_machine.travel(live_call.expected_end_at + dt.timedelta(minutes=5)):
        assert services.sweep_calls() == 0


def test_settlement_is_exactly_once(live_call, funded_alice):
    services.settle_call(call=live_call, cause=Cause.CALL_CLOSED, used_credits=50)
    services.settle_call(call=live_call, cause=Cause.UNMETERED)
    live_call.refresh_from_db()
    assert live_call.state == CallState.ENDED and live_call.credits_charged == 50
    assert wallet_of(funded_alice).balance == 10_000 - 50
    assert live_call.events.filter(to_state__in=["ended", "expired"]).count() == 1


def test_staff_hangup_kills_the_call(live_call, staff, openai_settings):
    services.request_hangup(call=live_call, cause=Cause.STAFF_HANGUP, actor=staff)
    services.settle_call(call=live_call, cause=Cause.CALL_CLOSED, used_credits=10)
    live_call.refresh_from_db()
    assert live_call.state == CallState.KILLED and live_call.end_reason == Cause.STAFF_HANGUP


def test_every_state_change_is_pushed_live(live_call, monkeypatch, django_capture_on_commit_callbacks):
    pushed = []
    monkeypatch.setattr("sessions.services.push_to_user", lambda uid, kind, data: pushed.append((uid, kind, data)))
    with django_capture_on_commit_callbacks(execute=True):
        services.request_hangup(call=live_call, cause=Cause.USER_HANGUP, actor=live_call.user)
    assert pushed and pushed[-1][:2] == (live_call.user_id, "call")
    assert pushed[-1][2]["state"] == "ending" and pushed[-1][2]["id"] == live_call.public_id


# --- key mode --------------------------------------------------------------------------------


def mint(client, assistant):
    return client.post("/api/client-secrets/", data={"assistant": assistant.pk}, content_type="application/json")


def test_minting_returns_the_secret_once_and_stores_a_fingerprint(alice_client, funded_alice, assistant,
                                                                  openai_settings):
    response = mint(alice_client, assistant)
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"call", "client_secret", "expires_at", "model", "calls_url"}
    assert body["client_secret"].startswith("ek_")
    assert body["calls_url"] == openai_settings.base_url + "/realtime/calls"
    assert body["model"] == "gpt-realtime"
    assert 29 <= body["expires_at"] - openai_settings.now() <= 30
    call = RealtimeCall.objects.get(public_id=body["call"])
    assert call.mode == "key" and call.state == CallState.ACTIVE and call.openai_call_id is None
    assert call.secret_fingerprint.startswith("sha256:") and body["client_secret"] not in call.secret_fingerprint
    assert call.credits_held == 423 and wallet_of(funded_alice).held == 423
    assert call.expected_end_at == call.secret_expires_at + dt.timedelta(seconds=600)
    detail = alice_client.get(f"/api/calls/{call.public_id}")
    assert "ek_" not in detail.content.decode()


def test_minting_needs_key_mode(alice_client, funded_alice, openai_settings):
    response = mint(alice_client, AssistantFactory(allow_key=False))
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_assistant"
    assert not RealtimeCall.objects.exists()


def test_minting_upstream_failure_releases_the_hold(alice_client, funded_alice, assistant, openai_settings):
    openai_settings.fault("client_secrets", 500)
    response = mint(alice_client, assistant)
    assert response.status_code == 502
    call = RealtimeCall.objects.get()
    assert call.state == CallState.FAILED and Hold.objects.get(pk=call.hold_id).status == Hold.Status.RELEASED
    assert wallet_of(funded_alice).held == 0


def test_attach_records_the_openai_call_id(alice_client, funded_alice, assistant, openai_settings):
    call_id = mint(alice_client, assistant).json()["call"]
    response = alice_client.post(f"/api/calls/{call_id}/attach", data={"call_id": "rtc_" + "a" * 32},
                                 content_type="application/json")
    assert response.status_code == 200
    call = RealtimeCall.objects.get(public_id=call_id)
    assert call.openai_call_id == "rtc_" + "a" * 32
    assert call.events.filter(kind=CallEvent.Kind.ATTACHED).count() == 1
    same = alice_client.post(f"/api/calls/{call_id}/attach", data={"call_id": "rtc_" + "a" * 32},
                             content_type="application/json")
    assert same.status_code == 200
    other = alice_client.post(f"/api/calls/{call_id}/attach", data={"call_id": "rtc_" + "b" * 32},
                              content_type="application/json")
    assert other.status_code == 409 and other.json()["error"]["code"] == "already_attached"
    bad = alice_client.post(f"/api/calls/{call_id}/attach", data={"call_id": "sk-nope"},
                            content_type="application/json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_call_id"


def test_attach_refuses_proxy_calls(alice_client, live_call):
    response = alice_client.post(f"/api/calls/{live_call.public_id}/attach", data={"call_id": "rtc_" + "c" * 32},
                                 content_type="application/json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "not_key_mode"


def test_a_key_mode_call_never_reported_is_charged_its_full_hold_when_its_window_closes(
        alice_client, funded_alice, assistant, openai_settings):
    call = RealtimeCall.objects.get(public_id=mint(alice_client, assistant).json()["call"])
    with time_machine.travel(call.expected_end_at + dt.timedelta(seconds=61)):
        assert services.sweep_calls() == 1
    call.refresh_from_db()
    assert call.state == CallState.EXPIRED and call.credits_charged == 423
    assert wallet_of(funded_alice).balance == 10_000 - 423


def test_hanging_up_an_unreported_key_mode_call_settles_it_at_once(alice_client, funded_alice, assistant,
                                                                   openai_settings):
    call_id = mint(alice_client, assistant).json()["call"]
    response = alice_client.post(f"/api/calls/{call_id}/hangup")
    assert response.status_code == 202
    assert response.json()["state"] == "ended" and response.json()["credits_charged"] == 423


def test_mint_counts_against_the_concurrency_limit(alice_client, funded_alice, openai_settings):
    assistant = AssistantFactory(max_concurrent_calls=1)
    assert mint(alice_client, assistant).status_code == 201
    response = mint(alice_client, assistant)
    assert response.status_code == 429 and response.json()["error"]["code"] == "concurrency_limit"


def test_fund_helper_is_per_user(bob):
    fund(bob, 5)
    assert wallet_of(bob).balance == 5
