"""What credits buy with an assistant (sessions.rates): the Talk page's range before a call."""

from datetime import timedelta

import pytest
from django.utils import timezone

from sessions.models import CallState, RealtimeCall
from sessions.rates import credit_rates
from sessions.services import worst_case_microusd_per_minute
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _finished(assistant, user, *, seconds: int, credits: int, state=CallState.ENDED) -> RealtimeCall:
    ended = timezone.now() - timedelta(minutes=5)
    return RealtimeCall.objects.create(
        user=user, assistant=assistant, state=state, model=assistant.model, markup_percent=50,
        allowed_seconds=600, created_at=ended - timedelta(seconds=seconds), started_at=ended - timedelta(seconds=seconds),
        ending_at=ended, ended_at=ended, metered_at=ended - timedelta(seconds=seconds),
        expected_end_at=ended, credits_used=credits, credits_charged=credits,
    )


def test_the_worst_case_is_the_hold_rate_and_typical_defaults_to_a_third(assistant):
    rates = credit_rates([assistant])[assistant.pk]
    # 281,600 µ$ a minute at gpt-realtime's prices (the hold rate), × 1.5, at 100 credits a dollar.
    assert worst_case_microusd_per_minute(assistant) == 281_600
    assert (rates.worst_per_minute, rates.typical_per_minute, rates.measured) == (43, 14, False)
    assert rates.minutes_covered(86, max_minutes=10) == (2.0, 86 / 14)
    assert rates.minutes_covered(10_000, max_minutes=10) == (10, 10)


def test_typical_comes_from_our_metering_of_recent_calls(assistant):
    user = UserFactory()
    for _ in range(3):
        _finished(assistant, user, seconds=120, credits=20)  # 10 credits a minute
    _finished(assistant, user, seconds=10, credits=40)  # too short to say anything
    rates = credit_rates([assistant])[assistant.pk]
    assert (rates.typical_per_minute, rates.measured) == (10, True)


def test_typical_needs_three_calls_and_never_exceeds_the_worst_case(assistant):
    user = UserFactory()
    for _ in range(2):
        _finished(assistant, user, seconds=60, credits=5)
    assert credit_rates([assistant])[assistant.pk].measured is False
    _finished(assistant, user, seconds=60, credits=500, state=CallState.KILLED)
    rates = credit_rates([assistant])[assistant.pk]
    assert (rates.typical_per_minute, rates.measured) == (rates.worst_per_minute, True)


def test_the_seeded_assistant_gets_key_mode_switched_off():
    """Migration 0007: key mode is the exception, so the assistant 0002 seeded with it on loses it
    (unless staff edited it into a key-only assistant); other assistants keep theirs."""
    import importlib

    from django.apps import apps

    from tests.sessions.factories import AssistantFactory

    migration = importlib.import_module("sessions.migrations.0007_authority_policy_partial_holds")
    seeded = AssistantFactory(name="Friendly assistant", allow_proxy=True, allow_key=True)
    key_only = AssistantFactory(name="Friendly assistant", allow_proxy=False, allow_key=True)
    other = AssistantFactory(name="Partner app", allow_proxy=True, allow_key=True)
    migration.key_mode_off_on_the_seeded_assistant(apps, None)
    for assistant in (seeded, key_only, other):
        assistant.refresh_from_db()
    assert (seeded.allow_key, key_only.allow_key, other.allow_key) == (False, True, True)
