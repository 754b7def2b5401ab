"""Key mode policed (issue 11): the API's refusals, withdrawal and restore, and what staff and users see."""

import re

import pytest
from django.contrib.admin.models import LogEntry

from accounts import services as accounts
from billing.models import Hold, LedgerEntry
from sessions.models import RealtimeCall
from tests.factories import fund, wallet_of
from tests.sessions.factories import AssistantFactory


def mint(client, assistant):
    return client.post("/api/client-secrets/", data={"assistant": assistant.pk}, content_type="application/json")


def written():
    return RealtimeCall.objects.count(), Hold.objects.count(), LedgerEntry.objects.count()


@pytest.fixture
def key_assistant(db):
    return AssistantFactory(allow_key=True, key_ttl_seconds=30, max_concurrent_calls=3)


def test_a_second_unreported_secret_is_409_and_writes_nothing(alice_client, funded_alice, key_assistant,
                                                              openai_settings):
    first = mint(alice_client, key_assistant)
    assert first.status_code == 201
    before, held = written(), wallet_of(funded_alice).held
    response = mint(alice_client, key_assistant)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "secret_outstanding"
    assert response.json()["detail"] == response.json()["error"]["message"]
    assert 1 <= int(response["Retry-After"]) <= 30
    assert written() == before and wallet_of(funded_alice).held == held
    assert "ek_" not in response.content.decode()


def test_a_reported_secret_lets_the_user_mint_another(alice_client, funded_alice, key_assistant, openai_settings):
    call_id = mint(alice_client, key_assistant).json()["call"]
    attached = alice_client.post(f"/api/calls/{call_id}/attach", data={"call_id": "rtc_" + "d" * 32},
                                 content_type="application/json")
    assert attached.status_code == 200
    assert mint(alice_client, key_assistant).status_code == 201


def test_a_withdrawn_user_is_refused_with_403_and_nothing_is_written(alice_client, funded_alice, key_assistant,
                                                                      openai_settings):
    accounts.withdraw_key_mode(user=funded_alice, reason="Test: a secret was used beyond its call.")
    before, wallet = written(), wallet_of(funded_alice)
    response = mint(alice_client, key_assistant)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "key_mode_withdrawn"
    assert "proxy mode" in response.json()["error"]["message"]
    assert written() == before
    assert (wallet_of(funded_alice).balance, wallet_of(funded_alice).held) == (wallet.balance, wallet.held)
    assert openai_settings.calls() == []  # nothing was asked of OpenAI either


def test_proxy_calls_still_work_when_key_mode_is_withdrawn(alice_client, funded_alice, key_assistant, offer_sdp,
                                                           openai_settings):
    accounts.withdraw_key_mode(user=funded_alice, reason="Test.")
    response = alice_client.post(f"/api/calls/?assistant={key_assistant.pk}", data=offer_sdp,
                                 content_type="application/sdp")
    assert response.status_code == 201


def test_withdraw_and_restore_are_idempotent_and_recorded(alice, staff):
    first = accounts.withdraw_key_mode(user=alice, reason="First reason.", actor=staff)
    again = accounts.withdraw_key_mode(user=alice, reason="Second reason.")
    assert again.key_mode_withdrawn_at == first.key_mode_withdrawn_at
    assert again.key_mode_withdrawn_reason == "First reason."
    with pytest.raises(ValueError):
        accounts.withdraw_key_mode(user=alice, reason="  ")
    restored = accounts.restore_key_mode(user=alice, actor=staff)
    assert (restored.key_mode_withdrawn_at, restored.key_mode_withdrawn_reason) == (None, "")
    assert accounts.restore_key_mode(user=alice, actor=staff).key_mode_withdrawn_at is None
    history = list(LogEntry.objects.filter(object_id=str(alice.pk)).order_by("pk").values_list("user", "change_message"))
    assert [user for user, _ in history] == [staff.pk, staff.pk]
    assert history[0][1] == "Key mode withdrawn: First reason."
    assert history[1][1].startswith("Key mode restored (withdrawn ") and history[1][1].endswith("First reason.)")


def test_staff_restore_key_mode_from_the_users_admin(staff_client, staff, alice, bob, key_assistant, client,
                                                     openai_settings):
    accounts.withdraw_key_mode(user=alice, reason="Reconciliation flag #7: used beyond its call.")
    page = staff_client.get(f"/admin/accounts/user/{alice.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Key mode" in html and "Reconciliation flag #7: used beyond its call." in html
    listing = staff_client.get("/admin/accounts/user/?key_mode=withdrawn")
    assert alice.email in listing.content.decode() and bob.email not in listing.content.decode()

    response = staff_client.post(
        "/admin/accounts/user/",
        {"action": "restore_key_mode", "_selected_action": [alice.pk, bob.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Restored key mode for 1 user(s): alice@example.com." in response.content.decode()
    alice.refresh_from_db()
    assert alice.key_mode_withdrawn_at is None and alice.key_mode_withdrawn_reason == ""
    entry = LogEntry.objects.get(object_id=str(alice.pk))
    assert entry.user_id == staff.pk and entry.change_message.startswith("Key mode restored")
    assert not LogEntry.objects.filter(object_id=str(bob.pk)).exists()

    fund(alice, 1_000)
    client.force_login(alice)
    assert mint(client, key_assistant).status_code == 201


def test_the_account_page_says_when_key_mode_is_withdrawn(alice_client, alice):
    assert "Key mode is withdrawn" not in alice_client.get("/account/").content.decode()
    accounts.withdraw_key_mode(user=alice, reason="The client secret of call call_x started calls that were "
                                                  "never reported.")
    html = alice_client.get("/account/").content.decode()
    assert "Key mode is withdrawn from your account since" in html
    assert "started calls that were never reported" in html
    assert "staff can restore key mode" in html


def test_the_assistant_form_says_what_a_leaked_secret_can_do(staff_client, db):
    assistant = AssistantFactory(allow_key=True, key_ttl_seconds=30, max_call_seconds=600, markup_percent=50)
    html = staff_client.get(f"/admin/realtime/assistant/{assistant.pk}/change/").content.decode()
    text = re.sub(r"\s+", " ", html)
    # gpt-realtime's worst case is 281,600 µ$ a minute: 10 min at +50 % is 423 credits (the hold).
    assert "a leaked secret can start any number of calls for 30 s" in text
    assert "can last up to 10 min and cost up to ≈ 423 credits" in text
    assert "OpenAI&#x27;s 60 min cap, ≈ 2,535 credits" in text or "OpenAI's 60 min cap, ≈ 2,535 credits" in text
    assert "reconciliation charges what the others used within the window and withdraws key mode" in text
    # The fields added before this change stay on the form.
    for name in ("turn_detection", "greeting", "greeting_instructions"):
        assert f'name="{name}"' in html

    off = AssistantFactory(allow_key=False, allow_proxy=True)
    text = staff_client.get(f"/admin/realtime/assistant/{off.pk}/change/").content.decode()
    assert "Key mode is off. If it were on:" in text
    assert staff_client.get("/admin/realtime/assistant/add/").status_code == 200
