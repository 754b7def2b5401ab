"""WebSocket routes of every app, gathered in one list for asgi.py."""

from django.urls import path

from realtime_saas.consumers import LiveConsumer

websocket_urlpatterns = [
    path("ws/live/", LiveConsumer.as_asgi()),
]
