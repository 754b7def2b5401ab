"""The per-process caches of the call start (sessions/caches.py): assistants and prices are read
once per REALTIME_CACHE_SECONDS; a save in this process is seen at once; 0 turns them off."""

import pytest

from sessions import caches
from sessions.models import Assistant, ModelPrice
from tests.sessions.factories import AssistantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_caches():
    caches.clear()
    yield
    caches.clear()


def start(client, assistant, offer):
    return client.post(f"/api/calls/?assistant={assistant.pk}", data=offer, content_type="application/sdp")


def test_an_assistant_is_read_once_within_the_expiry(settings, django_assert_num_queries):
    settings.REALTIME_CACHE_SECONDS = 60
    assistant = AssistantFactory()
    with django_assert_num_queries(1):
        first = caches.active_assistant(assistant.pk)
    with django_assert_num_queries(0):
        again = caches.active_assistant(assistant.pk)
    assert again is first and first.assistant.pk == assistant.pk
    assert '"turn_detection":null' in first.session_json  # the session OpenAI is sent, serialised once


def test_a_save_in_this_process_is_seen_at_once(settings, alice_client, funded_alice, offer_sdp, openai_settings):
    settings.REALTIME_CACHE_SECONDS = 60
    assistant = AssistantFactory()
    assert caches.active_assistant(assistant.pk) is not None
    assistant.is_active = False
    assistant.save()
    assert caches.active_assistant(assistant.pk) is None
    response = start(alice_client, assistant, offer_sdp)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_assistant"


def test_an_edit_elsewhere_waits_for_the_expiry_and_zero_turns_the_cache_off(settings):
    """`update()` sends no signal, like an edit in another process: the cached row stays until it
    expires; with REALTIME_CACHE_SECONDS=0 every read goes to the database."""
    settings.REALTIME_CACHE_SECONDS = 60
    assistant = AssistantFactory()
    price = ModelPrice.objects.get(model=assistant.model)
    assert caches.active_assistant(assistant.pk) is not None and caches.model_price(assistant.model) == price
    Assistant.objects.filter(pk=assistant.pk).update(is_active=False)
    ModelPrice.objects.filter(pk=price.pk).update(audio_out_microusd_per_mtok=1)
    assert caches.active_assistant(assistant.pk) is not None
    assert caches.model_price(assistant.model).audio_out_microusd_per_mtok == price.audio_out_microusd_per_mtok
    settings.REALTIME_CACHE_SECONDS = 0
    assert caches.active_assistant(assistant.pk) is None
    assert caches.model_price(assistant.model).audio_out_microusd_per_mtok == 1
