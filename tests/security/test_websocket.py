"""The live WebSocket: the origin must be this site's own (scheme, host and port), a frame that is
not JSON gets an error answer, and a suspended user's socket stops receiving."""

import logging

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from realtime_saas.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


def _session_cookie(user) -> str:
    from django.db import connection

    client = Client()
    try:
        client.force_login(user)
        return f"sessionid={client.cookies['sessionid'].value}"
    finally:
        connection.close()


async def _connect(user, *, origin: bytes, host: bytes = b"127.0.0.1:8000", scheme: str = "ws"):
    cookie = (await sync_to_async(_session_cookie)(user)).encode()
    communicator = WebsocketCommunicator(
        application, "/ws/live/", headers=[(b"host", host), (b"origin", origin), (b"cookie", cookie)]
    )
    communicator.scope["scheme"] = scheme
    connected, code = await communicator.connect()
    return communicator, connected, code


@pytest.mark.parametrize(
    "origin",
    [
        b"http://127.0.0.1:9999",  # another port of the same host (the finding)
        b"https://127.0.0.1:8000",  # another scheme
        b"http://localhost:8000",  # another allowed host than the one the socket was opened on
        b"http://127.0.0.1",  # no port: 80
        b"null",
    ],
)
async def test_a_websocket_from_another_origin_of_an_allowed_host_is_refused(alice, origin):
    communicator, connected, _ = await _connect(alice, origin=origin)
    assert not connected
    await communicator.disconnect()


async def test_a_websocket_without_an_origin_is_refused(alice):
    cookie = (await sync_to_async(_session_cookie)(alice)).encode()
    communicator = WebsocketCommunicator(
        application, "/ws/live/", headers=[(b"host", b"127.0.0.1:8000"), (b"cookie", cookie)]
    )
    connected, _ = await communicator.connect()
    assert not connected


async def test_a_websocket_from_its_own_origin_is_accepted(alice):
    communicator, connected, _ = await _connect(alice, origin=b"http://127.0.0.1:8000")
    assert connected
    assert await communicator.receive_json_from() == {"type": "hello", "user": alice.pk}
    await communicator.disconnect()


async def test_a_secure_websocket_accepts_its_https_origin_only(alice):
    communicator, connected, _ = await _connect(alice, origin=b"https://127.0.0.1:8000", scheme="wss")
    assert connected
    await communicator.disconnect()
    communicator, connected, _ = await _connect(alice, origin=b"http://127.0.0.1:8000", scheme="wss")
    assert not connected


async def test_a_frame_that_is_not_json_is_answered_with_an_error_and_logs_no_traceback(alice, caplog):
    communicator, connected, _ = await _connect(alice, origin=b"http://127.0.0.1:8000")
    assert connected
    await communicator.receive_json_from()
    with caplog.at_level(logging.DEBUG):
        await communicator.send_to(text_data="not json{")
        answer = await communicator.receive_json_from()
    assert answer == {"type": "error", "code": "invalid_json", "message": "Frames must be JSON objects."}
    assert not [record for record in caplog.records if record.exc_info]
    # The socket is still open and still answers.
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from() == {"type": "pong"}
    await communicator.send_json_to([1, 2])
    assert (await communicator.receive_json_from())["code"] == "invalid_json"
    await communicator.disconnect()


async def test_a_suspended_users_open_socket_is_closed_and_receives_nothing_more(alice, staff):
    from accounts import services as accounts_services
    from realtime_saas.live import apush, user_group

    communicator, connected, _ = await _connect(alice, origin=b"http://127.0.0.1:8000")
    assert connected
    await communicator.receive_json_from()
    await sync_to_async(accounts_services.suspend_user)(user=alice, reason="abuse", actor=staff)
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
    await apush(user_group(alice.pk), "balance", {"available": 42})
    assert await communicator.receive_nothing(timeout=0.2)


async def test_a_suspended_user_cannot_open_the_socket(alice, staff):
    from accounts import services as accounts_services

    await sync_to_async(accounts_services.suspend_user)(user=alice, reason="abuse", actor=staff)
    communicator, connected, code = await _connect(alice, origin=b"http://127.0.0.1:8000")
    assert not connected
    assert code == 4403
