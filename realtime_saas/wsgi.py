"""WSGI entry point: the web processes serve HTTP with it (granian, one per core; README, "Running in
production"); daphne serves the live WebSocket from realtime_saas/asgi.py.

Once Django, the URLconf and the views are loaded, `gc.freeze()` moves every object made so far out
of the collector's reach: they live as long as the process, and without it each full collection
walks them all again (issue 16 saw 200 ms pauses every few hundred starts).
"""

import gc
import os
from importlib import import_module

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime_saas.settings")
application = get_wsgi_application()
import_module(settings.ROOT_URLCONF)  # the views, which Django would otherwise import on the first request
gc.freeze()
