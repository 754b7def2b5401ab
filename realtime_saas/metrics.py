"""Prometheus metrics (issue 13): one endpoint per process kind; docs/operations.md lists every
metric with the alert to set on it.

- web: `GET /metrics` on the web server (realtime_saas.views.metrics; requests and call starts are
  counted by realtime_saas.middleware);
- supervisor: its own listener, `SUPERVISOR_METRICS_PORT` (sessions/supervisor/runner.py);
- worker: its own listener, `WORKER_METRICS_PORT`, started by the Celery worker's main process:
  task runs, failures and retries (Celery signals), plus what the database and the cache say at
  scrape time (webhook backlog, beat heartbeat, reconciliation lag, open flags).

Several processes of one kind on one host (web workers under gunicorn/granian, Celery's prefork
children) share their figures through prometheus_client's multiprocess mode: set
`PROMETHEUS_MULTIPROC_DIR` to an empty directory of their own (one per kind) before they start
(https://prometheus.github.io/client_python/multiprocess/). Without it each process exposes its own.

Access: a scrape needs `Authorization: Bearer <METRICS_TOKEN>` or a client address inside
`METRICS_ALLOWED_NETWORKS`; with neither configured the endpoints answer 403.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

# Seconds: a request, an attach, an enforcement (decision → hangup confirmed by OpenAI).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


T = TypeVar("T")


def created_once(make: Callable[[], T]) -> Callable[[], T]:
    """`make()` on the first call only, under a lock: two threads (daphne's, a threads pool's)
    asking at once must not both register the metrics (the registry refuses duplicates)."""
    lock = threading.Lock()
    made: list[T] = []

    @functools.wraps(make)
    def get() -> T:
        if not made:
            with lock:
                if not made:
                    made.append(make())
        return made[0]

    return get


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


# --- access --------------------------------------------------------------------------------------


def refusal(*, authorization: str | None, client_address: str | None) -> tuple[int, str] | None:
    """None when this scrape may read the metrics; else (HTTP status, the reason)."""
    token: str = settings.METRICS_TOKEN
    networks = allowed_networks()
    if not token and not networks:
        return 403, "Metrics are off: set METRICS_TOKEN or METRICS_ALLOWED_NETWORKS."
    if token and authorization:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return None
        return 401, "The bearer token is wrong."
    if networks and client_address:
        try:
            address = ipaddress.ip_address(client_address)
        except ValueError:
            address = None
        if address is not None and any(address in network for network in networks):
            return None
    if token:
        return 401, "Send Authorization: Bearer <METRICS_TOKEN>."
    return 403, "This address may not read the metrics (METRICS_ALLOWED_NETWORKS)."


def allowed_networks() -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(net, strict=False) for net in settings.METRICS_ALLOWED_NETWORKS)


# --- exposition ----------------------------------------------------------------------------------


class _Registered(Collector):
    """Another registry's metrics, collected into the scrape's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()


def exposition(registry: CollectorRegistry, extra: Iterable[Collector] = ()) -> bytes:
    """The text format of `registry` (or of every process's files in multiprocess mode), plus the
    collectors computed at scrape time."""
    scrape = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(scrape)
    else:
        scrape.register(_Registered(registry))
    for collector in extra:
        scrape.register(collector)
    return generate_latest(scrape)


def serve(*, port: int, host: str, registry: CollectorRegistry, extra: Callable[[], Iterable[Collector]] = tuple,
          name: str) -> ThreadingHTTPServer:
    """A small HTTP listener (a daemon thread) answering `GET /metrics` for a process that has no
    web server of its own (the supervisor, the Celery worker). Returns the server (`server_port`)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self._answer(404, b"Not found: GET /metrics\n", "text/plain; charset=utf-8")
                return
            refused = refusal(authorization=self.headers.get("Authorization"), client_address=self.client_address[0])
            if refused is not None:
                self._answer(refused[0], refused[1].encode() + b"\n", "text/plain; charset=utf-8")
                return
            try:
                body = exposition(registry, extra())
            except Exception:
                logger.exception("%s metrics: scrape failed", name)
                self._answer(500, b"The metrics could not be collected; see the process's log.\n",
                             "text/plain; charset=utf-8")
                return
            self._answer(200, body, CONTENT_TYPE_LATEST)

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Bearer realm="metrics"')
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # http.server names it format
            pass  # one line per scrape would drown the process's own log

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=f"{name}-metrics", daemon=True).start()
    logger.info("%s metrics on http://%s:%d/metrics", name, host, server.server_port)
    return server


# --- web -----------------------------------------------------------------------------------------

WEB_REGISTRY = CollectorRegistry(auto_describe=True)


@dataclass(frozen=True)
class WebMetrics:
    requests: Counter
    latency: Histogram
    call_starts: Counter


@created_once
def web() -> WebMetrics:
    """Created on first use, so a process of another kind never exposes the web's figures."""
    return WebMetrics(
        requests=Counter("web_requests_total", "HTTP requests answered, by route pattern, method and status.",
                         ["route", "method", "status"], registry=WEB_REGISTRY),
        latency=Histogram("web_request_duration_seconds", "Time to answer an HTTP request, by route pattern.",
                          ["route", "method"], buckets=LATENCY_BUCKETS, registry=WEB_REGISTRY),
        call_starts=Counter(
            "web_call_starts_total",
            "Call starts (proxy calls and key-mode secrets) by outcome: started, refused_credits, refused_limits, "
            "refused_account, refused_invalid, upstream_error.",
            ["mode", "outcome"], registry=WEB_REGISTRY),
    )


def call_start_outcome(status: int) -> str:
    """A call start's outcome from its HTTP status (sessions.exceptions gives each refusal one)."""
    if status in (200, 201):
        return "started"
    if status == 402:
        return "refused_credits"  # insufficient credits, blocked wallet
    if status == 429:
        return "refused_limits"  # concurrency, start rate, throttles
    if status in (401, 403):
        return "refused_account"  # signed out, unverified, suspended, key mode withdrawn
    if status >= 500:
        return "upstream_error"  # OpenAI failed or timed out (502/503), or we did
    return "refused_invalid"


# --- supervisor ----------------------------------------------------------------------------------

SUPERVISOR_REGISTRY = CollectorRegistry(auto_describe=True)


@dataclass(frozen=True)
class SupervisorMetrics:
    calls_watched: Gauge
    attach_latency: Histogram
    enforcement_latency: Histogram
    hangups: Counter
    takeovers: Counter
    leases_lost: Counter
    heartbeat: Gauge


@created_once
def supervisor() -> SupervisorMetrics:
    return SupervisorMetrics(
        calls_watched=Gauge("supervisor_calls_watched", "Calls this supervisor holds the lease of.",
                            registry=SUPERVISOR_REGISTRY, multiprocess_mode="livesum"),
        attach_latency=Histogram(
            "supervisor_attach_seconds",
            "From a call's start (first watch) or our claim (a takeover, a re-attach) to its sideband attached.",
            ["kind"], buckets=LATENCY_BUCKETS, registry=SUPERVISOR_REGISTRY),
        enforcement_latency=Histogram(
            "supervisor_enforcement_seconds",
            "From the supervisor's decision to end a call (credits, time, policy, suspension) to OpenAI "
            "confirming the hangup.", ["cause"], buckets=LATENCY_BUCKETS, registry=SUPERVISOR_REGISTRY),
        hangups=Counter("supervisor_hangups_total", "Hangups OpenAI confirmed, by cause.", ["cause"],
                        registry=SUPERVISOR_REGISTRY),
        takeovers=Counter("supervisor_lease_takeovers_total",
                          "Calls claimed that another supervisor had watched (its lease expired).",
                          registry=SUPERVISOR_REGISTRY),
        leases_lost=Counter("supervisor_leases_lost_total",
                            "Calls whose lease another supervisor took while this one held it (it stalled).",
                            registry=SUPERVISOR_REGISTRY),
        heartbeat=Gauge("supervisor_heartbeat_timestamp_seconds",
                        "When the supervisor's check loop last read its calls and renewed its leases (UNIX time).",
                        registry=SUPERVISOR_REGISTRY, multiprocess_mode="max"),
    )


# --- worker --------------------------------------------------------------------------------------

WORKER_REGISTRY = CollectorRegistry(auto_describe=True)


@dataclass(frozen=True)
class WorkerMetrics:
    runs: Counter
    failures: Counter
    retries: Counter
    duration: Histogram


@created_once
def worker() -> WorkerMetrics:
    return WorkerMetrics(
        runs=Counter("worker_task_runs_total", "Celery task runs started, by task.", ["task"],
                     registry=WORKER_REGISTRY),
        failures=Counter("worker_task_failures_total", "Celery task runs that failed (after their retries), by task.",
                         ["task"], registry=WORKER_REGISTRY),
        retries=Counter("worker_task_retries_total", "Celery task retries scheduled, by task.", ["task"],
                        registry=WORKER_REGISTRY),
        duration=Histogram("worker_task_duration_seconds", "Time a Celery task run took, by task.", ["task"],
                           buckets=LATENCY_BUCKETS, registry=WORKER_REGISTRY),
    )


_task_started: dict[str, float] = {}


def connect_worker_signals() -> None:
    """Count task runs, failures and retries in whichever process runs them (Celery's signals)."""
    from celery.signals import task_failure, task_postrun, task_prerun, task_retry

    def prerun(sender=None, task_id: str = "", **kwargs: object) -> None:
        worker().runs.labels(task=getattr(sender, "name", "?")).inc()
        _task_started[task_id] = time.perf_counter()

    def postrun(sender=None, task_id: str = "", **kwargs: object) -> None:
        started = _task_started.pop(task_id, None)
        if started is not None:
            worker().duration.labels(task=getattr(sender, "name", "?")).observe(time.perf_counter() - started)

    def failure(sender=None, **kwargs: object) -> None:
        worker().failures.labels(task=getattr(sender, "name", "?")).inc()

    def retry(sender=None, **kwargs: object) -> None:
        worker().retries.labels(task=getattr(sender, "name", "?")).inc()

    task_prerun.connect(prerun, weak=False)
    task_postrun.connect(postrun, weak=False)
    task_failure.connect(failure, weak=False)
    task_retry.connect(retry, weak=False)


class DatabaseCollector(Collector):
    """What an operator alerts on that lives in the database and the cache, read at scrape time:
    the Stripe webhook backlog, the beat heartbeat, the reconciliation lag and open flags."""

    def collect(self) -> Iterator[Metric]:
        from django.db import close_old_connections, connection
        from django.db.models import Count, Min
        from django.utils import timezone

        from billing.models import StripeEvent
        from realtime_saas.beat import last_beat_heartbeat
        from sessions.reconciliation.models import Flag, FlagStatus, ImportWatermark, Severity
        from sessions.reconciliation.tasks import RECONCILED_WATERMARK

        close_old_connections()
        try:
            now = timezone.now()
            pending = StripeEvent.objects.filter(status__in=[
                StripeEvent.Status.RECEIVED, StripeEvent.Status.PROCESSING, StripeEvent.Status.FAILED])
            backlog = pending.aggregate(count=Count("id"), oldest=Min("received_at"))
            yield GaugeMetricFamily("stripe_webhook_backlog_events",
                                    "Stripe events stored and not processed yet (received, processing, failed).",
                                    value=backlog["count"])
            oldest = backlog["oldest"]
            yield GaugeMetricFamily("stripe_webhook_backlog_oldest_age_seconds",
                                    "Age of the oldest unprocessed Stripe event (0 when there is none).",
                                    value=(now - oldest).total_seconds() if oldest else 0.0)
            yield GaugeMetricFamily("stripe_webhook_dead_events",
                                    "Stripe events whose attempts ran out (the dead letter; staff retry them).",
                                    value=StripeEvent.objects.filter(status=StripeEvent.Status.DEAD).count())

            beat = last_beat_heartbeat()
            if beat is not None:
                yield GaugeMetricFamily("celery_beat_heartbeat_timestamp_seconds",
                                        "When a worker last ran beat's heartbeat task (UNIX time).", value=beat)

            reconciled = (ImportWatermark.objects.filter(name=RECONCILED_WATERMARK)
                          .values_list("watermark", flat=True).first())
            if reconciled is not None:
                yield GaugeMetricFamily("reconciliation_lag_seconds",
                                        "Seconds from the end of the newest reconciled usage window to now.",
                                        value=max((now - reconciled).total_seconds(), 0.0))
            flags = GaugeMetricFamily("reconciliation_open_flags", "Open reconciliation flags, by severity.",
                                      labels=["severity"])
            counts = dict(Flag.objects.filter(status=FlagStatus.OPEN).values_list("severity").annotate(n=Count("id")))
            for severity in Severity.values:
                flags.add_metric([severity], counts.get(severity, 0))
            yield flags
        finally:
            connection.close()  # the listener's threads are short-lived: leave no connection behind


def start_worker_listener() -> ThreadingHTTPServer | None:
    """In the Celery worker's main process: serve the worker's metrics on WORKER_METRICS_PORT."""
    port: int = settings.WORKER_METRICS_PORT
    if not port:
        return None
    return serve(port=port, host=settings.METRICS_LISTEN_HOST, registry=WORKER_REGISTRY,
                 extra=lambda: (DatabaseCollector(),), name="worker")


def web_metrics_view(request: HttpRequest) -> HttpResponse:
    """`GET /metrics` of the web server (every worker process's figures in multiprocess mode)."""
    if request.method != "GET":
        return HttpResponse("Only GET.\n", status=405, headers={"Allow": "GET"}, content_type="text/plain")
    refused = refusal(authorization=request.headers.get("Authorization"),
                      client_address=request.META.get("REMOTE_ADDR"))
    if refused is not None:
        headers = {"WWW-Authenticate": 'Bearer realm="metrics"'} if refused[0] == 401 else {}
        return HttpResponse(refused[1] + "\n", status=refused[0], headers=headers,
                            content_type="text/plain; charset=utf-8")
    web()  # the families exist (at zero) before the first request is counted
    return HttpResponse(exposition(WEB_REGISTRY), content_type=CONTENT_TYPE_LATEST,
                        headers={"Cache-Control": "no-store"})
