from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts.decorators import verified_email_required
from accounts.http import AuthenticatedHttpRequest
from realtime_saas.dashboard import panels_for
from realtime_saas.health import beat_status, run_checks


def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("dashboard")
    return render(request, "home.html")


@login_required
@verified_email_required
def dashboard(request: AuthenticatedHttpRequest) -> HttpResponse:
    return render(request, "dashboard.html", {"panels": panels_for(request)})


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready or not for everyone (load balancers); which service failed, and why, for staff only:
    the detail names internal hosts and error messages an outsider has no use for."""
    checks = run_checks()
    ready = all(result == "ok" for result in checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "unavailable"}
    if checks.get("database") == "ok" and request.user.is_authenticated and request.user.is_staff:
        body["checks"] = checks
        failed = [name for name, result in checks.items() if result != "ok"]
        if failed:
            body["failed"] = failed
        body["beat"] = beat_status()  # detail only: a stale beat does not make the web unready
    return JsonResponse(body, status=200 if ready else 503)
