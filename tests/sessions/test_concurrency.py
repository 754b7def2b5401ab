"""Races between real concurrent connections (PostgreSQL row locks)."""

import threading

import pytest
from django.db import connection

from sessions import services
from sessions.models import CallState, Cause, RealtimeCall
from tests.factories import fund, wallet_of
from tests.sessions.factories import AssistantFactory

pytestmark = pytest.mark.postgres


def run_together(*functions):
    barrier = threading.Barrier(len(functions))
    results: list = [None] * len(functions)

    def run(index, function):
        try:
            barrier.wait()
            results[index] = function()
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, f)) for i, f in enumerate(functions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_two_simultaneous_starts_respect_the_concurrency_limit(transactional_db, alice, offer_sdp, openai_settings):
    fund(alice, 10_000)
    assistant = AssistantFactory(max_concurrent_calls=1)

    def start():
        return services.start_proxy_call(user=alice, assistant_id=assistant.pk, offer_sdp=offer_sdp)

    results = run_together(start, start, start)
    started = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if not isinstance(r, tuple)]
    assert len(started) == 1, results
    assert all(getattr(r, "code", None) == "concurrency_limit" for r in refused), refused
    assert RealtimeCall.objects.count() == 1
    assert wallet_of(alice).held == started[0][0].credits_held


def test_a_hangup_racing_the_sweep_settles_once(transactional_db, alice, offer_sdp, openai_settings):
    fund(alice, 10_000)
    call, _ = services.start_proxy_call(user=alice, assistant_id=AssistantFactory().pk, offer_sdp=offer_sdp)

    def settle_metered():
        return services.settle_call(call=RealtimeCall.objects.get(pk=call.pk), cause=Cause.CALL_CLOSED,
                                    used_credits=40)

    def settle_full():
        return services.settle_call(call=RealtimeCall.objects.get(pk=call.pk), cause=Cause.UNMETERED)

    run_together(settle_metered, settle_full, settle_metered)
    call.refresh_from_db()
    assert call.state in (CallState.ENDED, CallState.EXPIRED)
    wallet = wallet_of(alice)
    assert wallet.held == 0
    assert wallet.balance == 10_000 - call.credits_charged
    assert call.credits_charged in (40, call.credits_held)
    assert call.events.filter(to_state__in=[CallState.ENDED, CallState.EXPIRED]).count() == 1
