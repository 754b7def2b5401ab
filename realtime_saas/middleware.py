"""The request's context for logs and metrics: first in MIDDLEWARE, sync and async alike (under
ASGI it adds no thread hop).

- a request id: the caller's `X-Request-ID` when it is a sane token (a proxy or load balancer set
  it), else a new one; returned in the response's `X-Request-ID` and put on every log line;
- the user id on log lines, once something has loaded the user (never a query of its own);
- web metrics: requests by route pattern, method and status, their latency, and call starts by
  outcome (realtime_saas.metrics).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from realtime_saas import logging as log
from realtime_saas import metrics

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
# Call starts (sessions/api): the URL name and the mode it starts.
CALL_START_VIEWS = {"realtime-api:call-list": "proxy", "realtime-api:client-secret-create": "key"}


def incoming_request_id(request: HttpRequest) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _SANE_REQUEST_ID.match(given) else uuid.uuid4().hex


class RequestContextMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        request_id = incoming_request_id(request)
        tokens = _enter(request, request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
        finally:
            _leave(tokens)
        return _finish(request, response, request_id, started)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        request_id = incoming_request_id(request)
        tokens = _enter(request, request_id)
        started = time.perf_counter()
        try:
            get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
            response = await get_response(request)
        finally:
            _leave(tokens)
        return _finish(request, response, request_id, started)


def _enter(request: HttpRequest, request_id: str) -> list:
    request.request_id = request_id  # type: ignore[attr-defined]
    return [(log.request_id, log.request_id.set(request_id)), (log.current_request, log.current_request.set(request))]


def _leave(tokens: list) -> None:
    for var, token in reversed(tokens):
        var.reset(token)


def _finish(request: HttpRequest, response: HttpResponseBase, request_id: str, started: float) -> HttpResponseBase:
    response[REQUEST_ID_HEADER] = request_id
    match = getattr(request, "resolver_match", None)
    # The route pattern, never the path: one series per URL pattern, not per call id.
    route = ("/" + match.route) if match is not None and match.route else "unmatched"
    web = metrics.web()
    web.requests.labels(route=route, method=request.method, status=str(response.status_code)).inc()
    web.latency.labels(route=route, method=request.method).observe(time.perf_counter() - started)
    if match is not None and request.method == "POST" and match.view_name in CALL_START_VIEWS:
        web.call_starts.labels(
            mode=CALL_START_VIEWS[match.view_name], outcome=metrics.call_start_outcome(response.status_code)
        ).inc()
    return response
