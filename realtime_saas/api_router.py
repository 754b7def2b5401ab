"""Every app's REST endpoints under /api/. Each app keeps its own `api/urls.py`."""

from django.urls import URLPattern, URLResolver, include, path, re_path

from realtime_saas.api import not_found

api_urlpatterns: list[URLPattern | URLResolver] = [
    path("", include("billing.api.urls")),
    path("", include("sessions.api.urls")),
    # Last: whatever no endpoint matched answers the API's JSON 404, not Django's HTML page.
    re_path(r"^(?P<unmatched>.*)$", not_found, name="api-not-found"),
]
