import asyncio
import json

import httpx
import pytest
import websockets
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from realtime_saas.asgi import application
from realtime_saas.live import apush, user_group
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _session_cookie(user) -> str:
    """Sign `user` in; runs in a worker thread (sync_to_async), whose DB connection is closed
    here, or it would outlive the test and block dropping the test database."""
    from django.db import connection

    client = Client()
    try:
        client.force_login(user)
        return f"sessionid={client.cookies['sessionid'].value}"
    finally:
        connection.close()


async def test_anonymous_websocket_is_refused():
    communicator = WebsocketCommunicator(
        application, "/ws/live/", headers=[(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1")]
    )
    connected, code = await communicator.connect()
    assert not connected
    assert code == 4401


async def test_websocket_from_a_foreign_origin_is_refused(alice):
    cookie = (await sync_to_async(_session_cookie)(alice)).encode()
    communicator = WebsocketCommunicator(
        application, "/ws/live/", headers=[(b"origin", b"https://evil.example"), (b"cookie", cookie)]
    )
    connected, _ = await communicator.connect()
    assert not connected


def test_live_server_pushes_to_the_signed_in_user_only(live_asgi_server, alice, bob):
    """Real daphne, real WebSocket, pushes through the configured channel layer (Redis in CI)."""
    from django.conf import settings

    if "Redis" not in settings.CHANNEL_LAYERS["default"]["BACKEND"]:
        pytest.skip("pushing from this process to daphne's needs a shared (Redis) channel layer")

    async def scenario():
        cookies = {user.pk: await sync_to_async(_session_cookie)(user) for user in (alice, bob)}
        headers = {"Origin": live_asgi_server.url}
        async with websockets.connect(
            f"{live_asgi_server.ws_url}/ws/live/", additional_headers={**headers, "Cookie": cookies[alice.pk]}
        ) as alice_ws, websockets.connect(
            f"{live_asgi_server.ws_url}/ws/live/", additional_headers={**headers, "Cookie": cookies[bob.pk]}
        ) as bob_ws:
            assert json.loads(await alice_ws.recv()) == {"type": "hello", "user": alice.pk}
            assert json.loads(await bob_ws.recv()) == {"type": "hello", "user": bob.pk}
            await apush(user_group(alice.pk), "balance", {"available": 42})
            assert json.loads(await asyncio.wait_for(alice_ws.recv(), 5)) == {
                "type": "balance", "data": {"available": 42}
            }
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(bob_ws.recv(), 0.5)

    asyncio.run(scenario())


def test_live_server_serves_pages_and_static_files(live_asgi_server):
    assert httpx.get(f"{live_asgi_server.url}/", timeout=5).status_code == 200
    css = httpx.get(f"{live_asgi_server.url}/static/css/app.css", timeout=5)
    assert css.status_code == 200
    assert "--accent" in css.text


def test_a_real_celery_worker_consumes_the_configured_broker(tmp_path, settings):
    """The embedded default (filesystem transport) or Redis in CI: a worker process runs a task."""
    from tests.live import start_celery_worker

    extra = {}
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        extra["CELERY_DATA_DIR"] = str(tmp_path / "celery")
    else:
        extra["CELERY_BROKER_URL"] = settings.CELERY_BROKER_URL.rsplit("/", 1)[0] + "/9"
    worker = start_celery_worker(tmp_path, CELERY_TASK_ALWAYS_EAGER="false", **extra)
    try:
        from celery import Celery

        app = Celery("probe", set_as_current=False)  # never the current app of later tests
        app.conf.broker_url = extra.get("CELERY_BROKER_URL", "filesystem://")
        if "CELERY_DATA_DIR" in extra:
            queue = str(tmp_path / "celery" / "queue")
            (tmp_path / "celery" / "queue").mkdir(parents=True, exist_ok=True)
            for folder in ("processed", "control"):
                (tmp_path / "celery" / folder).mkdir(parents=True, exist_ok=True)
            app.conf.broker_transport_options = {
                "data_folder_in": queue, "data_folder_out": queue,
                "processed_folder": str(tmp_path / "celery" / "processed"),
                "control_folder": str(tmp_path / "celery" / "control"),
            }
        app.send_task("realtime_saas.ping")
        log_path = next(tmp_path.glob("celery-*.log"))

        def ran() -> bool:
            text = log_path.read_text(errors="replace")
            return "realtime_saas.ping" in text and "succeeded" in text

        wait_until(ran, timeout=30, what=lambda: "the worker running the task:\n" + log_path.read_text(errors="replace"))
    finally:
        worker.terminate()
        worker.wait(timeout=20)


@pytest.mark.postgres
def test_a_server_with_the_production_connection_pool_serves_concurrent_requests(tmp_path, alice):
    """PostgreSQL's default in production is psycopg's pool; the test settings turn it off, so
    here a real daphne runs with it on and answers concurrent database-backed requests."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.live import start_daphne

    client = Client()
    client.force_login(alice)
    cookies = {"sessionid": client.cookies["sessionid"].value}
    server = start_daphne(tmp_path, DATABASE_POOL="true", DATABASE_POOL_MAX_SIZE="4")
    try:
        def dashboard(_):
            return httpx.get(f"{server.url}/dashboard/", cookies=cookies, timeout=10).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(dashboard, range(40)))
        assert statuses == [200] * 40
        assert httpx.get(f"{server.url}/readyz", timeout=10).json() == {"status": "ready"}
    finally:
        server.stop()
    assert "PoolTimeout" not in server.log()
