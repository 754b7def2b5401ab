"""sessions.presenters: a call's duration and time left, one rule each, with no database."""

from datetime import UTC, datetime, timedelta

import pytest

from sessions import presenters
from sessions.models import CallState, RealtimeCall

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def call_at(state: str, *, started: float | None = 60, ending: float | None = None, ended: float | None = None,
            end_in: float = 120) -> RealtimeCall:
    """An unsaved call: `started`, `ending` and `ended` are seconds before NOW, `end_in` after it."""

    def ago(seconds: float | None) -> datetime | None:
        return None if seconds is None else NOW - timedelta(seconds=seconds)

    return RealtimeCall(state=state, started_at=ago(started), ending_at=ago(ending), ended_at=ago(ended),
                        expected_end_at=NOW + timedelta(seconds=end_in))


def test_an_open_call_lasts_until_now_and_a_call_that_never_started_has_no_duration():
    assert presenters.duration_seconds(call_at(CallState.ACTIVE, started=61.9), now=NOW) == 61
    assert presenters.duration_seconds(call_at(CallState.PENDING, started=None), now=NOW) is None
    assert presenters.duration_seconds(call_at(CallState.FAILED, started=None, ended=0), now=NOW) is None


def test_the_talking_stops_at_the_hangup_not_at_the_settlement():
    assert presenters.duration_seconds(call_at(CallState.ENDING, started=60, ending=20), now=NOW) == 40
    assert presenters.duration_seconds(call_at(CallState.ENDED, started=60, ending=20, ended=5), now=NOW) == 40
    assert presenters.duration_seconds(call_at(CallState.ENDED, started=60, ended=5), now=NOW) == 55


@pytest.mark.parametrize(
    ("state", "end_in", "left", "countdown"),
    [
        (CallState.PENDING, 90.7, 90, 90),
        (CallState.ACTIVE, 0.5, 0, 0),
        (CallState.ACTIVE, 0, None, 0),  # at its expected end: over for the API
        (CallState.ACTIVE, -30, None, 0),  # past it (not settled yet): never a negative countdown
        (CallState.ENDING, 30, None, 30),  # hung up: the API stops counting, the supervisor's push does not
        (CallState.ENDED, 30, None, 30),
    ],
)
def test_seconds_left_is_the_countdown_while_the_call_is_live(state, end_in, left, countdown):
    call = call_at(state, end_in=end_in)
    assert presenters.seconds_left(call, now=NOW) == left
    assert presenters.seconds_to_end(call.expected_end_at, now=NOW) == countdown


def test_datetimes_are_written_as_the_api_writes_them():
    assert presenters.iso_datetime(datetime(2026, 11, 30, 12, 0, 1, 250_000, tzinfo=UTC)) == "2026-11-30T12:00:01.250000Z"
    assert presenters.iso_datetime(NOW) == "2026-11-30T12:00:00Z"
    assert presenters.iso_datetime(None) is None
