"""Building calls the supervisor can watch, and running supervisors, for tests and the benchmark."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

from django.utils import timezone

from billing import services as billing
from sessions.models import Assistant, CallMode, CallState, ModelPrice, RealtimeCall
from sessions.supervisor.conf import SupervisorConf
from sessions.supervisor.runner import Supervisor
from tests.waiting import wait_until

MODEL = "supervisor-test-model"
# 100 µ$ per output text token, markup 0, 100 credits per USD: 100 text-out tokens = 1 credit.
PRICE_MICROUSD_PER_MTOK = 100_000_000


def usage_for(credits: int) -> dict:
    """A `response.done` usage block that costs exactly `credits` at the test price."""
    tokens = 100 * credits
    return {"total_tokens": tokens, "input_tokens": 0, "output_tokens": tokens,
            "input_token_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0, "cached_tokens": 0,
                                    "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0,
                                                              "image_tokens": 0}},
            "output_token_details": {"text_tokens": tokens, "audio_tokens": 0}}


def make_assistant(**fields) -> Assistant:
    ModelPrice.objects.get_or_create(model=MODEL, defaults={
        "text_in_microusd_per_mtok": 1, "text_cached_microusd_per_mtok": 1,
        "text_out_microusd_per_mtok": PRICE_MICROUSD_PER_MTOK, "audio_in_microusd_per_mtok": 1,
        "audio_cached_microusd_per_mtok": 1, "audio_out_microusd_per_mtok": 1,
    })
    # No greeting by default: its usage would blur the exact figures these tests assert
    # (tests/supervisor/test_policy.py covers it).
    return Assistant.objects.create(
        **{"name": "Supervised", "model": MODEL, "markup_percent": 0, "greeting": False, **fields}
    )


def upstream_call(fake, assistant: Assistant, **options) -> str:
    """A headless call at fakes/openai created as sessions.services creates one: with the
    assistant's session config (turn detection off until the supervisor turns it on)."""
    return fake.create_call(session=assistant.session_config(), **options)["id"]


def watched_call(*, user, assistant: Assistant, openai_call_id: str, hold: int, balance: int | None = None,
                 seconds: int = 600, mode: str = CallMode.PROXY, started_ago: float = 0.0,
                 partial_hold: bool = False) -> RealtimeCall:
    """An active call with a real hold, as sessions.services leaves it once OpenAI answered."""
    now = timezone.now()
    call = RealtimeCall.objects.create(
        user=user, assistant=assistant, mode=mode, state=CallState.ACTIVE, model=assistant.model,
        markup_percent=assistant.markup_percent, allowed_seconds=seconds, openai_call_id=openai_call_id,
        created_at=now - timedelta(seconds=started_ago), started_at=now - timedelta(seconds=started_ago),
        expected_end_at=now - timedelta(seconds=started_ago) + timedelta(seconds=seconds), credits_held=hold,
        partial_hold=partial_hold,
    )
    billing.grant(user=user, credits=balance if balance is not None else hold, kind="bonus",
                  idempotency_key=f"test-grant:{call.public_id}", reference="test")
    h = billing.place_hold(user=user, credits=hold, idempotency_key=f"test-hold:{call.public_id}",
                           reference=f"realtime-call:{call.public_id}")
    RealtimeCall.objects.filter(pk=call.pk).update(hold_id=h.pk)
    call.refresh_from_db()
    return call


# Crashed supervisors' loops, kept alive (never closed) so their abandoned tasks are not collected
# mid-test with noise: a killed process would not run them either.
_CRASHED: list = []

FAST = {
    "lease_seconds": 3.0, "renew_seconds": 0.5, "poll_seconds": 0.2, "check_seconds": 0.2,
    "attach_grace_seconds": 2.0, "attach_backoff_initial": 0.05, "attach_backoff_max": 0.3,
    "ending_timeout_seconds": 2.0, "warn_seconds": 0.0,
}


class SupervisorThread:
    """A Supervisor on its own event loop in a thread (the test body stays sync and uses the ORM)."""

    def __init__(self, owner: str = "test-sup", **overrides) -> None:
        self.supervisor = Supervisor(owner=owner, conf=SupervisorConf.from_settings(**{**FAST, **overrides}))
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.error: BaseException | None = None
        self.crashed = False
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self.stop_event = asyncio.Event()
            await self.supervisor.run(self.stop_event)

        try:
            self.loop.run_until_complete(main())
        except BaseException as exc:  # surfaced by stop()
            if not self.crashed:
                self.error = exc
        finally:
            if not self.crashed:  # a crashed loop keeps its tasks, as a killed process would
                self.loop.close()

    def start(self) -> SupervisorThread:
        self.thread.start()
        wait_until(lambda: self.stop_event is not None, timeout=5, what=f"supervisor {self.supervisor.owner} running")
        return self

    def crash(self) -> None:
        """Stop dead, as kill -9 would: no lease released, no socket closed politely."""
        self.crashed = True
        _CRASHED.append(self)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        asyncio.run(self.supervisor._close_db())  # only so the test database can be dropped

    def stop(self) -> None:
        if self.crashed:
            return
        if self.thread.is_alive() and self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(timeout=15)
        if self.error is not None:
            raise self.error


def credits_from_fake_usage(fake, openai_call_id: str, *, model: str, markup_percent: int) -> int:
    """What a call should cost, from fakes/openai's own usage records (the Usage API's rows, one
    per response it served), priced independently of the supervisor's code: each response's cost
    rounded up to a micro-dollar, then credits once for the call (docs/supervisor.md, "Meter")."""
    from django.conf import settings

    price = ModelPrice.objects.get(model=model)
    classes = {
        "input_text_tokens": price.text_in_microusd_per_mtok,
        "input_cached_text_tokens": price.text_cached_microusd_per_mtok,
        "output_text_tokens": price.text_out_microusd_per_mtok,
        "input_audio_tokens": price.audio_in_microusd_per_mtok,
        "input_cached_audio_tokens": price.audio_cached_microusd_per_mtok,
        "output_audio_tokens": price.audio_out_microusd_per_mtok,
    }
    cost_microusd = 0
    for record in fake.usage_records(call_id=openai_call_id):
        per_mtok = sum(record[name] * unit for name, unit in classes.items())
        cost_microusd += -(-per_mtok // 1_000_000)
    return -(-cost_microusd * (100 + markup_percent) * settings.REALTIME_CREDITS_PER_USD // (100 * 1_000_000))
