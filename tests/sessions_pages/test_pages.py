from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from sessions.models import CallState
from tests.factories import UserFactory
from tests.sessions_pages.helpers import make_assistant, make_call

pytestmark = pytest.mark.django_db


@pytest.fixture
def assistant(db):
    return make_assistant(name="Concierge", voice="coral", max_call_seconds=300, min_credits=25)


def test_pages_need_login(client, assistant, alice):
    call = make_call(user=alice, assistant=assistant)
    for url in (reverse("talk"), reverse("call_history"), reverse("call_detail", args=[call.public_id])):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("account_login"))


def test_pages_need_a_verified_email(client, assistant):
    unverified = UserFactory(email="carol@example.com", verified=False)
    client.force_login(unverified)
    response = client.get(reverse("talk"))
    assert response.status_code == 302
    assert response["Location"] == reverse("account_email")


def test_talk_lists_active_proxy_assistants(alice_client, assistant):
    make_assistant(name="Retired", is_active=False)
    make_assistant(name="Key only", allow_proxy=False, allow_key=True)
    response = alice_client.get(reverse("talk"))
    assert response.status_code == 200
    html = response.content.decode()
    assert f'value="{assistant.pk}"' in html
    assert 'data-max-call-seconds="300"' in html
    assert "Concierge" in html
    assert "Retired" not in html
    assert "Key only" not in html
    assert 'data-testid="call-state"' in html
    assert "js/talk.js" in html
    assert '"user_hangup": "You ended the call."' in html  # end reasons for the script


def test_talk_without_assistants_says_so(alice_client):
    from sessions.models import Assistant

    Assistant.objects.update(is_active=False)
    response = alice_client.get(reverse("talk"))
    assert response.status_code == 200
    assert b'data-testid="no-assistants"' in response.content


def test_nav_links_talk_and_history(alice_client, assistant):
    html = alice_client.get(reverse("call_history")).content.decode()
    assert f'href="{reverse("talk")}"' in html
    assert f'href="{reverse("call_history")}" aria-current="page"' in html


def test_history_lists_own_calls_with_figures(alice_client, alice, bob, assistant):
    mine = make_call(
        user=alice,
        assistant=assistant,
        seconds=95,
        audio_out_tokens=1200,
        text_in_tokens=300,
        cost_microusd=84_000,
    )
    theirs = make_call(user=bob, assistant=assistant)
    response = alice_client.get(reverse("call_history"))
    assert response.status_code == 200
    html = response.content.decode()
    assert mine.public_id in html
    assert theirs.public_id not in html
    rows = response.context["rows"]
    assert len(rows) == 1
    assert rows[0]["duration"] == "1:35"
    assert rows[0]["f"].tokens_total == 1500
    assert rows[0]["f"].cost_usd == "$0.0840"
    assert rows[0]["f"].credits == 37
    assert rows[0]["f"].credits_label == "charged"
    assert "You ended the call." in html


def test_history_shows_held_credits_of_an_open_call(alice_client, alice, assistant):
    with time_machine.travel(datetime(2026, 3, 2, 12, 0, tzinfo=UTC), tick=False):
        make_call(user=alice, assistant=assistant, state=CallState.ACTIVE)  # created 10 min ago, started 1 s later
        row = alice_client.get(reverse("call_history")).context["rows"][0]
    assert row["f"].credits == 120
    assert row["f"].credits_label == "held"
    assert row["f"].duration_seconds == 10 * 60 - 1  # counts up to now while open


def test_history_duration_stops_at_hangup(alice_client, alice, assistant):
    call = make_call(user=alice, assistant=assistant, state=CallState.ENDING)
    call.ending_at = call.started_at + timedelta(seconds=42)
    call.save(update_fields=["ending_at"])
    row = alice_client.get(reverse("call_history")).context["rows"][0]
    assert row["duration"] == "0:42"


def test_history_is_paginated_newest_first(alice_client, alice, assistant):
    from django.utils import timezone

    now = timezone.now()
    calls = [
        make_call(user=alice, assistant=assistant, created_at=now - timedelta(hours=i)) for i in range(30)
    ]
    first = alice_client.get(reverse("call_history"))
    assert [r["call"].pk for r in first.context["rows"]] == [c.pk for c in calls[:25]]
    assert b'rel="next"' in first.content
    second = alice_client.get(reverse("call_history"), {"page": 2})
    assert [r["call"].pk for r in second.context["rows"]] == [c.pk for c in calls[25:]]
    assert b'rel="prev"' in second.content


def test_history_without_calls(alice_client):
    response = alice_client.get(reverse("call_history"))
    assert b'data-testid="no-calls"' in response.content


def test_staff_call_page_shows_figures_and_timeline(staff_client, alice, assistant):
    call = make_call(
        user=alice, assistant=assistant, audio_in_tokens=640, audio_out_tokens=1200, cost_microusd=97_280
    )
    response = staff_client.get(reverse("staff_call_detail", args=[call.public_id]))
    assert response.status_code == 200
    html = response.content.decode()
    assert response.context["duration"] == "1:35"
    assert [row["count"] for row in response.context["token_rows"]] == [0, 0, 0, 640, 0, 1200]
    assert [(e.from_state, e.to_state) for e in response.context["events"]] == [
        ("", "pending"),
        ("pending", "active"),
    ]
    assert "$0.0973" in html
    assert "OpenAI answered" in html
    assert 'data-testid="call-timeline"' in html
    assert "You ended the call." in html


def test_another_users_call_is_404(alice_client, bob, assistant):
    theirs = make_call(user=bob, assistant=assistant)
    response = alice_client.get(reverse("call_detail", args=[theirs.public_id]))
    assert response.status_code == 404
    assert theirs.public_id not in response.content.decode()


def test_unknown_call_is_404(alice_client):
    assert alice_client.get(reverse("call_detail", args=["call_nope"])).status_code == 404


def test_pages_are_get_only(alice_client):
    assert alice_client.post(reverse("call_history")).status_code == 405


def test_talk_shows_available_credits(alice_client, alice, assistant):
    from billing.services import grant

    grant(user=alice, credits=1234, idempotency_key="pages-grant", kind="bonus")
    response = alice_client.get(reverse("talk"))
    assert response.context["available_credits"] == 1234
    assert b"<span data-live-balance>1,234</span>" in response.content


def test_the_call_admin_links_to_the_staff_call_page(staff_client, alice, assistant):
    # Staff reach the call's timeline, cost and markup from the admin ("View on site"), not by typing a URL.
    call = make_call(user=alice, assistant=assistant)
    response = staff_client.get(reverse("admin:realtime_realtimecall_change", args=[call.pk]))
    staff_page = reverse("staff_call_detail", args=[call.public_id])
    assert response.status_code == 200
    assert f'href="{staff_page}"' in response.content.decode()
