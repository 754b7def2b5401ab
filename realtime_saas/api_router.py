"""Every app's REST endpoints under /api/. Each app keeps its own `api/urls.py`."""

from django.urls import include, path

api_urlpatterns = [
    path("", include("billing.api.urls")),
    path("", include("sessions.api.urls")),
]
