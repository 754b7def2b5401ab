"""WebSocket routes of every app, gathered in one list for asgi.py."""

from django.urls import path

from realtime_saas.consumers import LiveConsumer

websocket_urlpatterns = [
    # django-stubs' path() accepts views only, though Channels routes ASGI apps through it.
    path("ws/live/", LiveConsumer.as_asgi()),  # type: ignore[arg-type]
]
