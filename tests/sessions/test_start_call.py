"""Starting a proxy-mode call: POST /api/calls/ with the SDP offer."""

import pytest

from billing.models import Hold
from sessions.models import CallEvent, CallState, Cause, RealtimeCall
from tests.factories import fund, wallet_of


def start(client, assistant, offer, **extra):
    return client.post(f"/api/calls/?assistant={assistant.pk}", data=offer, content_type="application/sdp", **extra)


def assert_nothing_held(user):
    wallet = wallet_of(user)
    assert wallet.held == 0
    assert not Hold.objects.filter(wallet=wallet, status=Hold.Status.ACTIVE).exists()


def test_it_starts_a_call_and_returns_the_sdp_answer(alice_client, funded_alice, assistant, offer_sdp, openai_settings):
    response = start(alice_client, assistant, offer_sdp)

    assert response.status_code == 201, response.content
    assert response["Content-Type"] == "application/sdp"
    assert response.content.decode().startswith("v=0")
    call = RealtimeCall.objects.get()
    assert response["X-Call-Id"] == call.public_id
    assert response["Location"] == f"/api/calls/{call.public_id}"
    assert call.state == CallState.ACTIVE
    assert call.openai_call_id.startswith("rtc_")
    assert call.user == funded_alice and call.mode == "proxy" and call.model == "gpt-realtime"
    assert call.credits_held == 423  # 10 min at the worst-case rate of gpt-realtime, +50 %
    assert call.allowed_seconds == 600
    assert (call.expected_end_at - call.started_at).total_seconds() == 600
    assert wallet_of(funded_alice).held == 423
    hold = Hold.objects.get(pk=call.hold_id)
    assert hold.status == Hold.Status.ACTIVE and hold.credits == 423
    assert [(e.from_state, e.to_state, e.cause) for e in call.events.all()] == [
        ("", CallState.PENDING, Cause.STARTED),
        (CallState.PENDING, CallState.ACTIVE, Cause.UPSTREAM_ANSWERED),
    ]
    upstream = openai_settings.call(call.openai_call_id)
    assert upstream["session"]["model"] == "gpt-realtime"
    assert upstream["session"]["instructions"] == "You are a test assistant."
    assert upstream["session"]["audio"]["output"]["voice"] == "marin"
    # Nothing happens before the supervisor watches: no voice activity detection, so no response.
    assert upstream["session"]["audio"]["input"]["turn_detection"] is None
    assert upstream["responses"] == 0


def test_the_browser_cannot_change_the_session(alice_client, funded_alice, assistant, offer_sdp, openai_settings):
    response = alice_client.post(
        f"/api/calls/?assistant={assistant.pk}&model=gpt-4o-realtime-preview&instructions=leak&voice=ash",
        data=offer_sdp, content_type="application/sdp",
    )
    assert response.status_code == 201
    session = openai_settings.call(response["X-Call-Id"] and RealtimeCall.objects.get().openai_call_id)["session"]
    assert (session["model"], session["instructions"], session["audio"]["output"]["voice"]) == (
        "gpt-realtime", "You are a test assistant.", "marin")


def test_a_partial_hold_keeps_the_assistants_maximum_length_as_its_only_clock(
    alice_client, alice, assistant, offer_sdp, openai_settings
):
    """Issue 11: a hold capped by what the user can afford no longer shortens the call to a
    worst-case clock (100 of 423 credits used to mean 141 s); the supervisor ends it by credits."""
    fund(alice, 100)
    response = start(alice_client, assistant, offer_sdp)
    assert response.status_code == 201
    call = RealtimeCall.objects.get()
    assert call.credits_held == 100
    assert call.partial_hold is True
    assert call.allowed_seconds == 600
    assert (call.expected_end_at - call.started_at).total_seconds() == 600
    assert wallet_of(alice).held == 100


def test_a_full_hold_is_not_partial(alice_client, alice, assistant, offer_sdp, openai_settings):
    fund(alice, 1_000)
    assert start(alice_client, assistant, offer_sdp).status_code == 201
    call = RealtimeCall.objects.get()
    assert (call.credits_held, call.partial_hold, call.allowed_seconds) == (423, False, 600)


def test_too_few_credits_is_402_and_nothing_is_written(alice_client, alice, assistant, offer_sdp, openai_settings):
    fund(alice, 9)
    response = start(alice_client, assistant, offer_sdp)
    assert response.status_code == 402
    body = response.json()
    assert body["error"]["code"] == "insufficient_credits"
    assert "at least 10 credits" in body["error"]["message"] and "9 available" in body["error"]["message"]
    assert body["detail"] == body["error"]["message"]
    assert not RealtimeCall.objects.exists()
    assert_nothing_held(alice)
    assert openai_settings.calls() == []


def test_a_blocked_wallet_is_402(alice_client, funded_alice, assistant, offer_sdp, openai_settings):
    from billing import services as billing

    billing.clawback(user=funded_alice, credits=20_000, idempotency_key="cb", kind="refund", reference="test")
    response = start(alice_client, assistant, offer_sdp)
    assert response.status_code == 402
    # A negative balance leaves nothing available; billing reports it as blocked or insufficient.
    assert response.json()["error"]["code"] in ("wallet_blocked", "insufficient_credits")
    assert_nothing_held(funded_alice)


@pytest.mark.parametrize(
    ("offer", "reason"),
    [
        ("", "empty"),
        ("hello", "must start with 'v=0'"),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "no audio media section"),
        ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:x\r\na=ice-pwd:y\r\n", "no a=fingerprint"),
    ],
)
def test_a_bad_offer_is_400_with_the_reason_and_nothing_held(alice_client, funded_alice, assistant, offer, reason,
                                                              openai_settings):
    response = start(alice_client, assistant, offer)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_offer"
    assert reason in response.json()["error"]["message"]
    assert not RealtimeCall.objects.exists()
    assert_nothing_held(funded_alice)


def test_an_offer_openai_refuses_releases_the_hold(alice_client, funded_alice, assistant, openai_settings):
    # Passes our cheap check; the WebRTC stack behind the API cannot parse it.
    offer = ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
             "a=ice-ufrag:x\r\na=ice-pwd:y\r\na=fingerprint:sha-256 nonsense\r\n")
    response = start(alice_client, assistant, offer)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_offer"
    call = RealtimeCall.objects.get()
    assert call.state == CallState.FAILED and call.end_reason == Cause.INVALID_OFFER
    assert call.credits_charged == 0
    assert Hold.objects.get(pk=call.hold_id).status == Hold.Status.RELEASED
    assert_nothing_held(funded_alice)
    assert wallet_of(funded_alice).balance == 10_000


@pytest.mark.parametrize(
    ("fault", "status", "code", "cause"),
    [
        (500, 502, "upstream_error", Cause.UPSTREAM_ERROR),
        (429, 503, "upstream_unavailable", Cause.UPSTREAM_RATE_LIMITED),
        ("timeout", 503, "upstream_unavailable", Cause.UPSTREAM_TIMEOUT),
    ],
)
def test_upstream_failure_releases_the_hold_and_fails_the_call(alice_client, funded_alice, assistant, offer_sdp,
                                                               openai_settings, fault, status, code, cause):
    openai_settings.fault("calls.create", fault, timeout_seconds=4)
    response = start(alice_client, assistant, offer_sdp)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    # OpenAI's own Retry-After when it sends one (the fake does not), else ours: 10 s after a 429,
    # 5 s after a timeout (sessions/openai_client.py).
    assert response.get("Retry-After") == {500: None, 429: "10", "timeout": "5"}[fault]
    call = RealtimeCall.objects.get()
    assert call.state == CallState.FAILED
    assert call.end_reason == cause
    assert call.ended_at is not None and call.credits_charged == 0
    assert Hold.objects.get(pk=call.hold_id).status == Hold.Status.RELEASED
    assert_nothing_held(funded_alice)
    assert wallet_of(funded_alice).balance == 10_000
    assert list(call.events.values_list("to_state", flat=True)) == [CallState.PENDING, CallState.FAILED]


def test_an_upstream_429_passes_its_retry_after_on(alice_client, funded_alice, assistant, offer_sdp, openai_settings):
    openai_settings.fault("calls.create", 429)
    response = start(alice_client, assistant, offer_sdp)
    assert response.status_code == 503
    assert response["Retry-After"].isdigit()


def test_body_over_64_kb_is_413_and_nothing_held(alice_client, funded_alice, assistant, offer_sdp, openai_settings):
    response = start(alice_client, assistant, offer_sdp + "a=x-padding:" + "x" * 65_536 + "\r\n")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert not RealtimeCall.objects.exists()
    assert_nothing_held(funded_alice)


def test_wrong_content_type_is_415(alice_client, funded_alice, assistant, offer_sdp, openai_settings):
    response = alice_client.post(f"/api/calls/?assistant={assistant.pk}", data={"sdp": offer_sdp})
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert not RealtimeCall.objects.exists()


@pytest.mark.parametrize("query", ["", "?assistant=999999", "?assistant=abc", "?assistant=INACTIVE", "?assistant=KEYONLY"])
def test_an_unusable_assistant_is_400(alice_client, funded_alice, assistant, offer_sdp, openai_settings, query):
    from tests.sessions.factories import AssistantFactory

    query = query.replace("INACTIVE", str(AssistantFactory(is_active=False).pk))
    query = query.replace("KEYONLY", str(AssistantFactory(allow_proxy=False, allow_key=True).pk))
    response = alice_client.post(f"/api/calls/{query}", data=offer_sdp, content_type="application/sdp")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_assistant"
    assert not RealtimeCall.objects.exists()
    assert_nothing_held(funded_alice)


def test_anonymous_is_refused(client, assistant, offer_sdp, openai_settings):
    response = start(client, assistant, offer_sdp)
    assert response.status_code in (401, 403)
    assert response.json()["error"]["code"] == "not_authenticated"
    assert not RealtimeCall.objects.exists()


def test_unverified_email_is_403(client, assistant, offer_sdp, openai_settings):
    from tests.factories import UserFactory

    user = UserFactory(verified=False)
    fund(user, 1000)
    client.force_login(user)
    response = start(client, assistant, offer_sdp)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "email_unverified"
    assert not RealtimeCall.objects.exists()


def test_suspended_user_cannot_start(funded_alice, assistant, offer_sdp, openai_settings):
    from accounts.services import suspend_user
    from sessions import exceptions, services

    suspend_user(user=funded_alice, reason="abuse")
    funded_alice.refresh_from_db()
    with pytest.raises(exceptions.AccountSuspended):
        services.start_proxy_call(user=funded_alice, assistant_id=assistant.pk, offer_sdp=offer_sdp)
    assert not RealtimeCall.objects.exists()


def test_suspended_users_session_is_refused(alice_client, funded_alice, assistant, offer_sdp, openai_settings):
    from accounts.services import suspend_user

    suspend_user(user=funded_alice, reason="abuse")
    response = start(alice_client, assistant, offer_sdp)
    assert response.status_code == 403
    assert response.json()["error"]["code"] in ("account_suspended", "not_authenticated")
    assert not RealtimeCall.objects.exists()


def test_concurrency_limit_is_429(alice_client, funded_alice, offer_sdp, openai_settings):
    from tests.sessions.factories import AssistantFactory

    assistant = AssistantFactory(max_concurrent_calls=1)
    assert start(alice_client, assistant, offer_sdp).status_code == 201
    held = wallet_of(funded_alice).held

    response = start(alice_client, assistant, offer_sdp)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "concurrency_limit"
    assert RealtimeCall.objects.count() == 1
    assert wallet_of(funded_alice).held == held


def test_start_rate_limit_is_429_with_retry_after(alice_client, funded_alice, offer_sdp, openai_settings):
    from tests.sessions.factories import AssistantFactory

    assistant = AssistantFactory(max_starts_per_minute=2, max_concurrent_calls=5)
    assert start(alice_client, assistant, offer_sdp).status_code == 201
    assert start(alice_client, assistant, offer_sdp).status_code == 201
    response = start(alice_client, assistant, offer_sdp)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(response["Retry-After"]) <= 60
    assert RealtimeCall.objects.count() == 2


def test_the_named_throttle_limits_starts(alice_client, funded_alice, assistant, offer_sdp, openai_settings,
                                          monkeypatch):
    from realtime_saas.throttles import CallStartThrottle

    monkeypatch.setattr(CallStartThrottle, "THROTTLE_RATES", {"call_start": "1/min"})
    assert start(alice_client, assistant, "bad offer").status_code == 400
    response = start(alice_client, assistant, offer_sdp)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert int(response["Retry-After"]) >= 1
    assert not RealtimeCall.objects.exists()


def test_csrf_is_enforced_for_browser_sessions(funded_alice, assistant, offer_sdp, openai_settings):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(funded_alice)
    refused = start(browser, assistant, offer_sdp)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_failed"
    assert not RealtimeCall.objects.exists()
    assert_nothing_held(funded_alice)

    token = "a" * 32
    browser.cookies["csrftoken"] = token
    accepted = start(browser, assistant, offer_sdp, headers={"X-CSRFToken": token})
    assert accepted.status_code == 201


def test_events_record_actor_and_cause(alice_client, funded_alice, assistant, offer_sdp, openai_settings):
    start(alice_client, assistant, offer_sdp)
    first = CallEvent.objects.order_by("pk").first()
    assert first.actor == funded_alice and first.cause == Cause.STARTED
