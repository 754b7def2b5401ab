"""tests/waiting.py: waiting for a condition returns what it found, or fails naming what never came."""

import pytest

from tests.waiting import await_until, wait_until


def test_it_returns_the_first_truthy_value_and_stops_asking():
    answers = iter([None, 0, "", {"state": "ended"}, "never asked"])
    asked = []

    def predicate():
        asked.append(1)
        return next(answers)

    assert wait_until(predicate, interval=0) == {"state": "ended"}
    assert len(asked) == 4


def test_it_fails_naming_what_it_waited_for_and_the_last_answer():
    asked = []

    def predicate():
        asked.append(1)
        return 0

    # A deadline already past: asked once, then the failure.
    with pytest.raises(AssertionError, match=r"waiting for the call settled \(last: 0\)"):
        wait_until(predicate, timeout=-1, what="the call settled")
    assert len(asked) == 1


def test_a_description_function_is_called_only_on_failure():
    described = []

    def describe() -> str:
        described.append(1)
        return "the server's log"

    assert wait_until(lambda: True, what=describe) is True
    assert described == []
    with pytest.raises(AssertionError, match="waiting for the server's log"):
        wait_until(lambda: False, timeout=-1, what=describe)
    assert described == [1]


async def test_on_an_event_loop_it_awaits_coroutine_predicates():
    answers = iter([False, False, "attached"])

    async def attaches():
        return next(answers)

    assert await await_until(attaches, interval=0) == "attached"
    with pytest.raises(AssertionError, match="waiting for the sideband"):
        await await_until(lambda: None, timeout=-1, what="the sideband")
