"""End to end through a real daphne server, fakes/openai and a real WebRTC peer (aiortc)."""

import asyncio

import httpx
import pytest
from django.test import Client
from openai import AsyncOpenAI

from billing.models import Hold
from sessions.models import CallState, RealtimeCall
from tests.factories import UserFactory, fund, wallet_of
from tests.live import start_daphne
from tests.sessions.factories import AssistantFactory
from tests.sessions.helpers import Caller, find_keys

pytestmark = pytest.mark.slow
CSRF = "b" * 32


@pytest.fixture(scope="module")
def sessions_server(django_db_setup, django_db_blocker, tmp_path_factory, fake_openai_server):
    with django_db_blocker.unblock():
        server = start_daphne(tmp_path_factory.mktemp("sessions-live"), OPENAI_BASE_URL=fake_openai_server.base_url,
                              OPENAI_API_KEY=fake_openai_server.project_key, LOG_LEVEL="DEBUG")
    yield server
    server.stop()


@pytest.fixture
def browser(transactional_db, fake_openai):
    """A signed-in, funded user's cookies and CSRF header, as the Talk page has them."""
    user = UserFactory(email="carol@example.com")
    fund(user, 10_000)
    client = Client()
    client.force_login(user)
    cookies = {"sessionid": client.cookies["sessionid"].value, "csrftoken": CSRF}
    return user, AssistantFactory(), cookies


def test_proxy_mode_call_connects_media_gets_a_response_and_hangs_up(sessions_server, browser, fake_openai):
    user, assistant, cookies = browser

    async def scenario() -> tuple[str, dict]:
        caller = Caller()
        try:
            async with httpx.AsyncClient(base_url=sessions_server.url, cookies=cookies,
                                         headers={"X-CSRFToken": CSRF}, timeout=15) as http:
                response = await http.post(f"/api/calls/?assistant={assistant.pk}", content=await caller.offer(),
                                           headers={"Content-Type": "application/sdp"})
                assert response.status_code == 201, response.text
                assert response.headers["content-type"] == "application/sdp"
                call_id = response.headers["x-call-id"]
                assert response.headers["location"] == f"/api/calls/{call_id}"
                await caller.accept(response.text)
                await caller.wait_connected()
                done = await caller.wait_for("response.done")
                assert done["response"]["output"][0]["content"][0]["transcript"]
                during = (await http.get(f"/api/calls/{call_id}")).json()
                assert during["state"] == "active" and during["seconds_left"] > 0
                hangup = await http.post(f"/api/calls/{call_id}/hangup")
                assert hangup.status_code == 202 and hangup.json()["state"] == "ending"
                for body in (response.text, during, hangup.text):
                    assert find_keys(str(body)) == []
                return call_id, done
        finally:
            await caller.close()

    call_id, _ = asyncio.run(scenario())
    call = RealtimeCall.objects.get(public_id=call_id)
    assert call.state == CallState.ENDING and call.user == user
    fake_openai.wait_for_call(call.openai_call_id, lambda info: info["state"] != "active" or not info.get("live", True))
    assert wallet_of(user).held == call.credits_held == Hold.objects.get(pk=call.hold_id).credits
    assert find_keys(sessions_server.log()) == []


def test_key_mode_the_official_sdk_connects_with_the_minted_secret(sessions_server, browser, fake_openai):
    user, assistant, cookies = browser

    async def scenario() -> tuple[str, str]:
        caller = Caller()
        try:
            async with httpx.AsyncClient(base_url=sessions_server.url, cookies=cookies,
                                         headers={"X-CSRFToken": CSRF}, timeout=15) as http:
                minted = await http.post("/api/client-secrets/", json={"assistant": assistant.pk})
                assert minted.status_code == 201, minted.text
                body = minted.json()
                sdk = AsyncOpenAI(api_key=body["client_secret"], base_url=body["calls_url"].rsplit("/realtime", 1)[0],
                                  max_retries=0)
                raw = await sdk.realtime.calls.with_raw_response.create(sdp=await caller.offer())
                answer = raw.http_response.text
                openai_call_id = raw.headers["location"].rsplit("/", 1)[-1]
                await caller.accept(answer)
                await caller.wait_connected()
                await caller.wait_for("response.done")
                attached = await http.post(f"/api/calls/{body['call']}/attach", json={"call_id": openai_call_id})
                assert attached.status_code == 200, attached.text
                assert find_keys(attached.text) == []
                return body["call"], body["client_secret"]
        finally:
            await caller.close()

    call_id, secret = asyncio.run(scenario())
    call = RealtimeCall.objects.get(public_id=call_id)
    assert call.mode == "key" and call.openai_call_id.startswith("rtc_")
    session = fake_openai.call(call.openai_call_id)["session"]
    assert session["instructions"] == assistant.instructions and session["model"] == assistant.model
    assert Hold.objects.get(pk=call.hold_id).status == Hold.Status.ACTIVE
    assert secret not in sessions_server.log()
    assert find_keys(sessions_server.log()) == []
