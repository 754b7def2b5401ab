"""ASGI entry point, served by daphne: Django for HTTP, Channels for WebSockets."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime_saas.settings")
# Django must be set up before the routing (and so the models) is imported.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from realtime_saas.routing import websocket_urlpatterns  # noqa: E402
from realtime_saas.websocket_origin import SameOriginValidator  # noqa: E402

# types-channels' URLRouter takes only a stub-only pattern type that Django's path() never returns.
websocket_router = URLRouter(websocket_urlpatterns)  # type: ignore[arg-type]

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": SameOriginValidator(AuthMiddlewareStack(websocket_router)),
    }
)
