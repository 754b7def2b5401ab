"""Reconciliation's tasks retry as billing's do (STYLE.md rule 18): named transient errors only,
exponential backoff with full jitter, a cap; any other failure is not retried.

Eager Celery with CELERY_TASK_EAGER_PROPAGATES (the test settings) reports a retry by raising
`celery.exceptions.Retry` from `apply()`, with the countdown a worker would wait (`when`);
`apply(retries=n)` runs the attempt a worker would run after n retries. The tasks are taken from
the product's Celery app, not through `shared_task`'s proxy, which follows whichever app is
current (another test may have made a bare `Celery()` current, without the product's settings).
"""

from types import SimpleNamespace

import pytest
from celery.exceptions import Retry

from realtime_saas.celery import app
from sessions import openai_client
from sessions.reconciliation import importer, keymode, tasks

IMPORT = app.tasks[tasks.import_and_reconcile.name]
KEY_WINDOWS = app.tasks[tasks.reconcile_key_windows.name]
WINDOW = app.tasks[tasks.reconcile_window.name]


def _unavailable(attempts):
    def fail(*args, **kwargs):
        attempts.append(1)
        raise openai_client.UpstreamTimeout("the Usage API timed out")

    return fail


@pytest.mark.parametrize(
    ("task", "target", "countdowns"),
    [
        (IMPORT, (importer, "import_usage"), [30, 60, 120, 240, 480]),
        (KEY_WINDOWS, (keymode, "reconcile_due_windows"), [5, 10, 20]),
    ],
    ids=["import_and_reconcile", "reconcile_key_windows"],
)
def test_transient_usage_api_errors_back_off_exponentially_up_to_the_cap_then_stop(
    monkeypatch, task, target, countdowns
) -> None:
    attempts: list[int] = []
    monkeypatch.setattr(*target, _unavailable(attempts))
    # Full jitter draws from [0, backoff]; draw the top of the range to see the backoff itself.
    monkeypatch.setattr("celery.utils.time.random", SimpleNamespace(randrange=lambda stop: stop - 1))
    seen: list[object] = []  # Retry.when: the countdown in seconds
    for retries in range(task.max_retries):
        with pytest.raises(Retry) as retry:
            task.apply(retries=retries)
        assert isinstance(retry.value.exc, openai_client.UpstreamTimeout)
        seen.append(retry.value.when)
    assert seen == countdowns
    with pytest.raises(openai_client.UpstreamTimeout):  # the last attempt fails the task
        task.apply(retries=task.max_retries)
    assert len(attempts) == len(countdowns) + 1


def test_both_upstream_tasks_share_one_policy():
    for task in (IMPORT, KEY_WINDOWS):
        assert task.autoretry_for == tasks.TRANSIENT_ERRORS == (openai_client.UpstreamUnavailable,)
        assert task.retry_jitter is True
    assert not getattr(WINDOW, "autoretry_for", ())  # no upstream call: nothing to retry


def test_a_permanent_usage_api_error_is_not_retried(monkeypatch):
    def refused(*args, **kwargs):
        raise openai_client.UpstreamError("the admin key was refused", upstream_status=401)

    monkeypatch.setattr(importer, "import_usage", refused)
    with pytest.raises(openai_client.UpstreamError) as error:  # raised as is, not as a Retry
        IMPORT.apply()
    assert not isinstance(error.value, Retry | openai_client.UpstreamUnavailable)
