"""WSGI entry point, for tools that want one; production serves ASGI with daphne."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime_saas.settings")
application = get_wsgi_application()
