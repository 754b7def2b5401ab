"""Each process kind's metrics, scraped from a real process (issue 13, item 3): the figures move
after a call, a webhook and a reconciliation run; a scrape without the token is refused."""

from __future__ import annotations

import time

import httpx
import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from billing.models import StripeEvent
from sessions.models import RealtimeCall
from tests.factories import fund
from tests.live import (
    LiveProcess,
    free_port,
    start_celery_worker,
    start_daphne,
    start_supervisor,
    subprocess_env,
)
from tests.sessions.helpers import make_offer
from tests.supervisor.helpers import make_assistant, upstream_call, usage_for, watched_call
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "metrics-test-token-0123456789"
Samples = dict[tuple[str, frozenset], float]


def scrape(url: str, token: str | None = TOKEN) -> Samples:
    response = httpx.get(url, headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def assert_refused_without_the_token(url: str) -> None:
    anonymous = httpx.get(url, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert "METRICS_TOKEN" in anonymous.text
    wrong = httpx.get(url, headers={"Authorization": "Bearer not-the-token-at-all"}, timeout=10)
    assert wrong.status_code == 401
    assert "web_requests_total" not in wrong.text and "supervisor_" not in wrong.text


def _session_cookies(user) -> dict[str, str]:
    client = Client()
    client.force_login(user)
    csrf = "c" * 32  # Django accepts a well-formed token the client chose (cookie = header)
    return {"sessionid": client.cookies["sessionid"].value, "csrftoken": csrf}


# --- web -----------------------------------------------------------------------------------------


def test_web_metrics_count_requests_and_call_starts_by_outcome(openai_settings, alice, bob, tmp_path):
    fake = openai_settings
    multiproc = tmp_path / "web-metrics"
    multiproc.mkdir()
    # Multiprocess mode, as with several web workers: the figures go through PROMETHEUS_MULTIPROC_DIR.
    server = start_daphne(tmp_path, OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY=fake.project_key,
                          METRICS_TOKEN=TOKEN, PROMETHEUS_MULTIPROC_DIR=str(multiproc))
    try:
        url = f"{server.url}/metrics"
        assert_refused_without_the_token(url)
        assistant = make_assistant()
        fund(alice, 100_000)
        before = scrape(url)
        assert value(before, "web_call_starts_total", mode="proxy", outcome="started") == 0

        offer = make_offer()
        starts = {}
        for user in (alice, bob):  # bob has no credits
            cookies = _session_cookies(user)
            starts[user.email] = httpx.post(
                f"{server.url}/api/calls/", params={"assistant": assistant.pk}, content=offer, cookies=cookies,
                headers={"Content-Type": "application/sdp", "X-CSRFToken": cookies["csrftoken"],
                         "X-Request-ID": f"start-{user.pk}"}, timeout=30)
        assert starts[alice.email].status_code == 201, starts[alice.email].text
        assert starts[bob.email].status_code == 402, starts[bob.email].text
        assert starts[alice.email].headers["x-request-id"] == f"start-{alice.pk}"  # the caller's id, echoed
        assert list(multiproc.iterdir())  # the figures live in the shared directory

        after = scrape(url)
        assert value(after, "web_call_starts_total", mode="proxy", outcome="started") == 1
        assert value(after, "web_call_starts_total", mode="proxy", outcome="refused_credits") == 1
        route = {"route": "/api/calls/", "method": "POST"}
        assert value(after, "web_requests_total", **route, status="201") == 1
        assert value(after, "web_requests_total", **route, status="402") == 1
        assert value(after, "web_request_duration_seconds_count", **route) == 2
        assert value(after, "web_request_duration_seconds_sum", **route) > 0
        # The refused scrapes were counted too, under the route pattern (never a raw path).
        assert value(after, "web_requests_total", route="/metrics", method="GET", status="401") == 2
        assert not any(labels for name, labels in after if ("route", f"/api/calls/{RealtimeCall.objects.get().public_id}")
                       in labels)
    finally:
        server.stop()


def test_web_workers_sharing_a_multiprocess_directory_each_expose_the_sum(tmp_path):
    """Several web processes on one host (gunicorn/granian workers): one scrape sees all of them."""
    multiproc = tmp_path / "web-metrics"
    multiproc.mkdir()
    env = {"METRICS_TOKEN": TOKEN, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    first = start_daphne(tmp_path, **env)
    try:
        second = start_daphne(tmp_path, **env)
        try:
            healthz = {"route": "/healthz", "method": "GET", "status": "200"}
            before = value(scrape(f"{first.url}/metrics"), "web_requests_total", **healthz)
            for _ in range(3):
                assert httpx.get(f"{second.url}/healthz", timeout=10).status_code == 200
            assert httpx.get(f"{first.url}/healthz", timeout=10).status_code == 200
            for server in (first, second):
                assert value(scrape(f"{server.url}/metrics"), "web_requests_total", **healthz) == before + 4
        finally:
            second.stop()
    finally:
        first.stop()


def test_granian_s_worker_processes_answer_one_sum_whichever_serves_the_scrape(tmp_path):
    """The web as production serves it (tests.live.start_web: granian, two WSGI worker processes)."""
    from tests.live import start_web

    multiproc = tmp_path / "web-metrics"
    multiproc.mkdir()
    server = start_web(tmp_path, METRICS_TOKEN=TOKEN, PROMETHEUS_MULTIPROC_DIR=str(multiproc))
    try:
        healthz = {"route": "/healthz", "method": "GET", "status": "200"}
        before = value(scrape(f"{server.url}/metrics"), "web_requests_total", **healthz)
        with httpx.Client(base_url=server.url, timeout=10) as client:  # new connections: both workers serve
            for _ in range(10):
                assert client.get("/healthz", headers={"Connection": "close"}).status_code == 200
        assert len({path.name.rsplit("_", 1)[-1] for path in multiproc.iterdir()}) >= 2  # two processes wrote
        for _ in range(6):  # whichever worker answers the scrape, it reports both
            assert value(scrape(f"{server.url}/metrics"), "web_requests_total", **healthz) == before + 10
    finally:
        server.stop()  # and its daphne


def test_a_generated_request_id_is_returned_when_the_caller_sends_none_or_a_bad_one(live_asgi_server):
    plain = httpx.get(f"{live_asgi_server.url}/healthz", timeout=10)
    bad = httpx.get(f"{live_asgi_server.url}/healthz", headers={"X-Request-ID": "x" * 200}, timeout=10)
    for response in (plain, bad):
        assert len(response.headers["x-request-id"]) == 32
    assert plain.headers["x-request-id"] != bad.headers["x-request-id"]


def test_metrics_are_refused_when_neither_a_token_nor_networks_are_configured(live_asgi_server):
    response = httpx.get(f"{live_asgi_server.url}/metrics", timeout=10)
    assert response.status_code == 403
    assert "METRICS_TOKEN or METRICS_ALLOWED_NETWORKS" in response.text


def test_an_allowed_network_scrapes_without_a_token(tmp_path):
    server = start_daphne(tmp_path, METRICS_ALLOWED_NETWORKS="127.0.0.0/8")
    try:
        assert "web_requests_total" in httpx.get(f"{server.url}/metrics", timeout=10).text
    finally:
        server.stop()


# --- supervisor ----------------------------------------------------------------------------------


def test_supervisor_metrics_see_a_call_watched_attached_and_hung_up(openai_settings, alice, tmp_path):
    fake = openai_settings
    assistant = make_assistant()
    rtc = upstream_call(fake, assistant)
    call = watched_call(user=alice, assistant=assistant, openai_call_id=rtc, hold=3)
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    env = subprocess_env(OPENAI_API_KEY=fake.project_key, OPENAI_BASE_URL=fake.base_url, METRICS_TOKEN=TOKEN)
    supervisor: LiveProcess = start_supervisor(tmp_path, env, "--owner", "metrics", "--poll-seconds", "0.2",
                                               "--metrics-port", str(port))

    def scraped(predicate):
        def check():
            try:
                samples = scrape(url)
            except httpx.HTTPError:
                return None  # not listening yet
            return samples if predicate(samples) else None
        return wait_until(check, timeout=120, what=lambda: "the supervisor's figures:\n" + supervisor.log()[-3000:])

    try:
        watching = scraped(lambda s: value(s, "supervisor_calls_watched") == 1
                           and value(s, "supervisor_attach_seconds_count", kind="first") == 1)
        assert_refused_without_the_token(url)
        assert fake.call(rtc)["sidebands"] == 1
        assert value(watching, "supervisor_heartbeat_timestamp_seconds") > 0
        assert value(watching, "supervisor_hangups_total", cause="credits_exhausted") == 0
        assert value(watching, "supervisor_lease_takeovers_total") == 0

        fake.response_done(rtc, usage_for(3))  # the whole hold: the supervisor hangs up
        ended = scraped(lambda s: value(s, "supervisor_hangups_total", cause="credits_exhausted") == 1
                        and value(s, "supervisor_calls_watched") == 0)
        assert value(ended, "supervisor_enforcement_seconds_count", cause="credits_exhausted") == 1
        assert value(ended, "supervisor_enforcement_seconds_sum", cause="credits_exhausted") > 0
        assert value(ended, "supervisor_heartbeat_timestamp_seconds") >= value(
            watching, "supervisor_heartbeat_timestamp_seconds")
        call.refresh_from_db()
        assert call.end_reason == "credits_exhausted"
    finally:
        supervisor.stop()


# --- worker (Celery signals, and the database read at scrape time) -------------------------------


def _probe_app(data_dir):
    from celery import Celery

    app = Celery("metrics-probe", set_as_current=False)  # never the current app of later tests
    app.conf.broker_url = "filesystem://"
    folders = {name: data_dir / name for name in ("queue", "processed", "control")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    app.conf.broker_transport_options = {
        "data_folder_in": str(folders["queue"]), "data_folder_out": str(folders["queue"]),
        "processed_folder": str(folders["processed"]), "control_folder": str(folders["control"]),
    }
    return app


def test_worker_metrics_see_tasks_the_webhook_backlog_the_beat_and_a_reconciliation(
        openai_settings, alice, tmp_path):
    fake = openai_settings
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    data_dir = tmp_path / "celery"  # a broker of this test's own (the filesystem transport)
    worker = start_celery_worker(
        tmp_path, CELERY_TASK_ALWAYS_EAGER="false", CELERY_BROKER_URL="filesystem://", CELERY_DATA_DIR=str(data_dir),
        METRICS_TOKEN=TOKEN, WORKER_METRICS_PORT=str(port), OPENAI_BASE_URL=fake.base_url,
        OPENAI_API_KEY=fake.project_key, OPENAI_ADMIN_KEY=fake.admin_key, PYTHONUNBUFFERED="1")
    log = lambda: f"(exit code {worker.poll()})\n" + next(tmp_path.glob("celery-*.log")).read_text(errors="replace")[-3000:]  # noqa: E731
    probe = _probe_app(data_dir)

    def scraped(predicate):
        def check():
            try:
                samples = scrape(url)
            except httpx.HTTPError:
                return None
            return samples if predicate(samples) else None
        # Generous: a worker's start-up shares two cores with other suites on a loaded machine.
        return wait_until(check, timeout=120, what=lambda: "the worker's figures:\n" + log())

    try:
        first = scraped(lambda s: ("stripe_webhook_backlog_events", frozenset()) in s)
        assert_refused_without_the_token(url)
        assert value(first, "stripe_webhook_backlog_events") == 0
        assert value(first, "stripe_webhook_backlog_oldest_age_seconds") == 0
        assert ("reconciliation_lag_seconds", frozenset()) not in first  # never reconciled

        # A webhook stored and not processed yet: the backlog; then the worker processes it.
        event = StripeEvent.objects.create(event_id="evt_metrics_1", type="customer.created",
                                           payload={"id": "evt_metrics_1", "type": "customer.created",
                                                    "data": {"object": {"id": "cus_1"}}})
        backlog = scrape(url)
        assert value(backlog, "stripe_webhook_backlog_events") == 1
        assert value(backlog, "stripe_webhook_backlog_oldest_age_seconds") > 0
        probe.send_task("billing.process_stripe_event", args=[event.pk])
        # A run is over once its duration is observed (task_postrun, after the task's body).
        done = scraped(lambda s: value(s, "worker_task_duration_seconds_count", task="billing.process_stripe_event") == 1)
        assert value(done, "stripe_webhook_backlog_events") == 0
        assert value(done, "worker_task_runs_total", task="billing.process_stripe_event") == 1
        assert StripeEvent.objects.get(pk=event.pk).status == "ignored"

        # The beat heartbeat, as beat would send it.
        sent_at = time.time()
        probe.send_task("realtime_saas.beat_heartbeat")
        beat = scraped(lambda s: value(s, "worker_task_duration_seconds_count", task="realtime_saas.beat_heartbeat") == 1)
        assert value(beat, "worker_task_runs_total", task="realtime_saas.beat_heartbeat") == 1
        assert value(beat, "celery_beat_heartbeat_timestamp_seconds") >= sent_at

        # A reconciliation run: usage at OpenAI that no call of ours explains raises a flag.
        assistant = make_assistant()
        rtc = upstream_call(fake, assistant)
        fake.response_done(rtc, usage_for(50))
        open_before = sum(value(first, "reconciliation_open_flags", severity=s) for s in ("low", "medium", "high"))
        probe.send_task("sessions.reconciliation.import_and_reconcile")
        reconciled = scraped(lambda s: value(s, "worker_task_duration_seconds_count",
                                             task="sessions.reconciliation.import_and_reconcile") == 1)
        assert ("reconciliation_lag_seconds", frozenset()) in reconciled
        assert value(reconciled, "worker_task_runs_total", task="sessions.reconciliation.import_and_reconcile") == 1
        assert value(reconciled, "worker_task_failures_total",
                     task="sessions.reconciliation.import_and_reconcile") == 0
        assert 0 <= value(reconciled, "reconciliation_lag_seconds") < 3600
        open_after = sum(value(reconciled, "reconciliation_open_flags", severity=s) for s in ("low", "medium", "high"))
        assert open_after > open_before
    finally:
        worker.terminate()
        worker.wait(timeout=20)
