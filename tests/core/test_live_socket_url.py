"""LIVE_WEBSOCKET_URL: where signed-in pages open the live WebSocket (daphne on a port of its own
in `make run`; empty: the site's own /ws/live/)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_signed_in_pages_open_the_socket_at_the_configured_url(client, alice, settings):
    settings.LIVE_WEBSOCKET_URL = "ws://127.0.0.1:8001/ws/live/"
    client.force_login(alice)

    html = client.get("/dashboard/").content.decode()

    assert 'data-socket-url="ws://127.0.0.1:8001/ws/live/"' in html


@pytest.mark.django_db
def test_without_it_pages_use_their_own_origin(client, alice, settings):
    settings.LIVE_WEBSOCKET_URL = ""
    client.force_login(alice)

    html = client.get("/dashboard/").content.decode()

    assert 'data-socket-url=""' in html  # live.js then opens ws(s)://<the page's host>/ws/live/


def test_a_socket_url_that_is_not_a_websocket_url_is_refused():
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE"}}
    env.update(ENV_FILE="/nonexistent", DJANGO_SETTINGS_MODULE="realtime_saas.settings", DEBUG="true",
               LIVE_WEBSOCKET_URL="http://127.0.0.1:8001/ws/live/")
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert "LIVE_WEBSOCKET_URL must start with ws:// or wss://" in result.stderr
