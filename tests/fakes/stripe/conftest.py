import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Unpack

import pytest
import stripe
from stripe.params.checkout import SessionCreateParams

from fakes.stripe.pytest_plugin import FakeStripeHandle


class Receiver:
    """A tiny webhook endpoint in a thread, recording what the fake delivers to it.

    ``statuses`` scripts the replies (popped one per request, then 200), so a test can
    make the first attempts fail.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], str]] = []
        self.statuses: list[int] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                with receiver._cond:
                    receiver.requests.append((dict(self.headers), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver._cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 5.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"expected {count} deliveries, got {len(self.requests)}")

    def events(self, secret: str) -> list[stripe.Event]:
        """Every delivery, verified the way the billing app's webhook view verifies it."""
        return [
            stripe.Webhook.construct_event(body, headers["Stripe-Signature"], secret)
            for headers, body in self.requests
        ]

    def types(self) -> list[str]:
        return [json.loads(body)["type"] for _, body in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def hooked(fake_stripe: FakeStripeHandle, receiver: Receiver) -> Receiver:
    """The receiver registered on the fake for every event type."""
    fake_stripe.add_webhook(receiver.url)
    return receiver


@pytest.fixture
def client(fake_stripe: FakeStripeHandle) -> stripe.StripeClient:
    # The billing app is expected to use httpx; sync calls need allow_sync_methods.
    return fake_stripe.client(http_client=stripe.HTTPXClient(allow_sync_methods=True))


@pytest.fixture
def make_session(client: stripe.StripeClient):
    """Create a one-pack Checkout Session the way the billing app will."""

    def make(**overrides: Unpack[SessionCreateParams]) -> stripe.checkout.Session:
        params: SessionCreateParams = {
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": 1000,
                        "product_data": {"name": "1000 credits"},
                    },
                    "quantity": 1,
                }
            ],
            "client_reference_id": "42",
            "metadata": {"user_id": "42", "pack": "small"},
            "payment_intent_data": {"metadata": {"user_id": "42", "pack": "small"}},
            "success_url": "http://shop.test/billing/success?session_id={CHECKOUT_SESSION_ID}",
            "cancel_url": "http://shop.test/billing/",
        }
        params.update(overrides)
        return client.v1.checkout.sessions.create(params=params)

    return make
