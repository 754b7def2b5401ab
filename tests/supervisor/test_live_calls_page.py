"""The staff "Live calls" page."""

from django.urls import reverse

from sessions.models import CallEvent, CallState, Cause
from tests.supervisor.helpers import make_assistant, upstream_call, watched_call


def test_staff_see_calls_in_flight_and_can_hang_one_up(staff_client, alice, settings, fake_openai, db):
    settings.OPENAI_API_KEY = fake_openai.project_key
    settings.OPENAI_BASE_URL = fake_openai.base_url
    assistant = make_assistant()
    rtc = upstream_call(fake_openai, assistant)
    call = watched_call(user=alice, assistant=assistant, openai_call_id=rtc, hold=9)

    page = staff_client.get(reverse("live_calls"))
    assert page.status_code == 200
    assert call.public_id.encode() in page.content and b"alice@example.com" in page.content

    response = staff_client.post(reverse("live_call_hangup", args=[call.public_id]))
    assert response.status_code == 302
    call.refresh_from_db()
    assert (call.state, call.end_reason) == (CallState.ENDING, Cause.STAFF_HANGUP)
    assert CallEvent.objects.filter(call=call, kind=CallEvent.Kind.HANGUP_SENT).exists()
    assert fake_openai.call(rtc)["hangup_requests"]


def test_the_live_calls_page_is_for_staff_only(alice_client, db):
    assert alice_client.get(reverse("live_calls")).status_code == 302  # to the admin login
    assert alice_client.post(reverse("live_call_hangup", args=["call_x"])).status_code == 302
