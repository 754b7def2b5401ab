"""The warning before a cut-off: recorded on the call and, per assistant, told to the model."""

import json
import threading

import pytest
from websockets.sync.client import ClientConnection, connect

from sessions.models import CallEvent, CallState, Cause
from tests.supervisor.helpers import make_assistant, upstream_call, usage_for, watched_call
from tests.waiting import wait_until


class Observer:
    """A sideband of our own on the fake's call (it allows any number): it sees every server event,
    so a `conversation.item.create` the supervisor sent shows up as `conversation.item.added`."""

    def __init__(self, fake, call_id: str) -> None:
        self.events: list[dict] = []
        self.url = f"{fake.websocket_base_url}/realtime?call_id={call_id}"
        self.key = fake.project_key
        self.socket: ClientConnection | None = None
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        assert self.ready.wait(10) and self.error is None, self.error

    def _read(self) -> None:
        try:
            with connect(self.url, additional_headers={"Authorization": f"Bearer {self.key}"},
                         open_timeout=5) as socket:
                self.socket = socket
                self.ready.set()
                while True:
                    self.events.append(json.loads(socket.recv()))
        except Exception as exc:  # closed with the call (or never opened: reported by __init__)
            if not self.ready.is_set():
                self.error = exc
                self.ready.set()

    def system_messages(self) -> list[str]:
        texts = []
        for event in list(self.events):
            item = event.get("item") or {}
            if event.get("type") == "conversation.item.added" and item.get("role") == "system":
                texts += [part.get("text") for part in item.get("content") or []]
        return texts

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
        self.thread.join(timeout=5)


@pytest.fixture
def observe(openai_settings):
    observers = []

    def start(call_id: str) -> Observer:
        observer = Observer(openai_settings, call_id)
        observers.append(observer)
        return observer

    yield start
    for observer in observers:
        observer.close()


def _warn_then_exhaust(fake, supervisor, call, rtc, observe, **conf):
    observer = observe(rtc)
    supervisor(**conf)
    wait_until(lambda: fake.call(rtc)["sidebands"] >= 2, what="supervisor attached beside the observer")
    fake.response_done(rtc, usage_for(9))  # 1 of 10 credits left: ≤ 10 % of the hold → warning
    wait_until(lambda: CallEvent.objects.filter(call=call, kind=CallEvent.Kind.WARNING).exists(), what="warning")
    wait_until(observer.system_messages, what="wrap-up message at the fake")
    return observer


def test_the_assistants_wrap_up_message_is_sent_to_the_model_at_the_warning(
    supervisor, openai_settings, alice, observe, settings
):
    settings.SUPERVISOR_WRAP_UP_MESSAGE = "Generic wrap-up."
    fake = openai_settings
    assistant = make_assistant(wrap_up_message="Tell the caller the call ends soon and say goodbye.")
    rtc = upstream_call(fake, assistant)
    call = watched_call(user=alice, assistant=assistant, openai_call_id=rtc, hold=10)

    observer = _warn_then_exhaust(fake, supervisor, call, rtc, observe)

    assert observer.system_messages() == ["Tell the caller the call ends soon and say goodbye."]
    warning = CallEvent.objects.get(call=call, kind=CallEvent.Kind.WARNING)
    assert (warning.detail, warning.get_kind_display()) == ("Credits are running out.", "warning")

    fake.response_done(rtc, usage_for(1))  # the last credit: cut off
    fake.wait_for_call(rtc, lambda c: c["state"] == "ended", timeout=3)
    wait_until(lambda: call.__class__.objects.get(pk=call.pk).state == CallState.KILLED, what="settled")
    call.refresh_from_db()
    assert (call.end_reason, call.credits_charged) == (Cause.CREDITS_EXHAUSTED, 10)
    assert observer.system_messages() == ["Tell the caller the call ends soon and say goodbye."]  # once


def test_an_assistant_without_one_falls_back_to_the_setting(supervisor, openai_settings, alice, observe, settings):
    settings.SUPERVISOR_WRAP_UP_MESSAGE = "Please wrap up now."
    fake = openai_settings
    assistant = make_assistant()
    rtc = upstream_call(fake, assistant)
    call = watched_call(user=alice, assistant=assistant, openai_call_id=rtc, hold=10)

    observer = _warn_then_exhaust(fake, supervisor, call, rtc, observe)

    assert observer.system_messages() == ["Please wrap up now."]


def test_no_message_is_sent_when_neither_is_set(supervisor, openai_settings, alice, observe, settings):
    settings.SUPERVISOR_WRAP_UP_MESSAGE = ""
    fake = openai_settings
    assistant = make_assistant()
    rtc = upstream_call(fake, assistant)
    call = watched_call(user=alice, assistant=assistant, openai_call_id=rtc, hold=10)
    observer = observe(rtc)
    supervisor()
    wait_until(lambda: fake.call(rtc)["sidebands"] >= 2, what="supervisor attached beside the observer")

    fake.response_done(rtc, usage_for(9))
    wait_until(lambda: CallEvent.objects.filter(call=call, kind=CallEvent.Kind.WARNING).exists(), what="warning")
    fake.response_done(rtc, usage_for(1))
    fake.wait_for_call(rtc, lambda c: c["state"] == "ended", timeout=3)

    assert observer.system_messages() == []
    assert any(e.get("type") == "response.done" for e in observer.events)  # the observer did see the call
