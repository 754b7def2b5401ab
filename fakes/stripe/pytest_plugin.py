"""pytest fixtures running fakes/stripe as a subprocess.

Load with ``pytest_plugins = ["fakes.stripe.pytest_plugin"]`` (or ``-p fakes.stripe.pytest_plugin``).

* ``fake_stripe_server`` (session scope): one server per pytest process, so each xdist worker
  gets its own; it binds port 0 and reports the port it got, so workers never race for one.
* ``fake_stripe`` (function scope): the same server, reset before the test; yields a
  :class:`FakeStripeHandle`.
* ``fake_stripe_client``: a ``stripe.StripeClient`` pointed at the fake.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET_KEY = "sk_test_fake"
WEBHOOK_SECRET = "whsec_fake"


class FakeStripeError(RuntimeError):
    """A control call failed; ``body`` is the fake's error envelope."""

    def __init__(self, status: int, body: Any) -> None:
        message = body.get("error", {}).get("message") if isinstance(body, dict) else body
        super().__init__(f"{status}: {message}")
        self.status = status
        self.body = body


class FakeStripeHandle:
    """A running fake Stripe and helpers over its ``/_fake/`` control API.

    Every helper returns the JSON the fake answered (Stripe objects as plain dicts).
    """

    def __init__(
        self,
        api_base: str,
        secret_key: str = SECRET_KEY,
        webhook_secret: str = WEBHOOK_SECRET,
        process: subprocess.Popen[str] | None = None,
    ) -> None:
        self.api_base = api_base
        self.secret_key = secret_key
        self.webhook_secret = webhook_secret
        self.process = process
        self._http = httpx.Client(base_url=api_base, timeout=30.0)

    def __repr__(self) -> str:
        return f"<FakeStripeHandle {self.api_base}>"

    # --- plumbing ---------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        timeout: float = 30.0,
    ) -> Any:
        body = {k: v for k, v in (json or {}).items() if v is not None}
        resp = self._http.request(
            method, path, json=body if method == "POST" else None, params=params, timeout=timeout
        )
        data = resp.json()
        if resp.status_code >= 400:
            raise FakeStripeError(resp.status_code, data)
        return data

    def client(self, **kwargs: Any) -> Any:
        """A ``stripe.StripeClient`` for this fake; ``kwargs`` go to the client (e.g. ``http_client``)."""
        import stripe

        return stripe.StripeClient(self.secret_key, base_addresses={"api": self.api_base}, **kwargs)

    def close(self) -> None:
        self._http.close()

    # --- state ------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every object, event, delivery, idempotency key, runtime webhook and switch."""
        self._call("POST", "/_fake/reset")

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Set delivery switches: duplicates, out_of_order, retry_base, retry_factor,
        max_attempts, timeout, async_delay, and tax_rate_bps (automatic tax). Returns the whole
        configuration."""
        return self._call("POST", "/_fake/config", settings)

    def set_delivery_mode(
        self, *, duplicates: bool | int = False, out_of_order: bool = False
    ) -> dict[str, Any]:
        """``duplicates=True`` sends every event twice (an int sends that many copies);
        ``out_of_order=True`` reverses the events of each action (e.g. completed before charge.succeeded)."""
        copies = 2 if duplicates is True else max(1, int(duplicates))
        return self.configure(duplicates=copies, out_of_order=out_of_order)

    def get(self, object_id: str, expand: list[str] | None = None) -> dict[str, Any]:
        """Any object by id, without an API key."""
        return self._call("GET", f"/_fake/objects/{object_id}", params={"expand[]": expand or []})

    def events(self, type: str | None = None) -> list[dict[str, Any]]:
        """Every event so far, oldest first."""
        return self._call("GET", "/_fake/events", params={"type": type} if type else None)["data"]

    def fail_next(self, count: int = 1, status: int = 500, delay: float = 0.0, path: str = "/v1/") -> None:
        """Make the next ``count`` API requests under ``path`` fail with ``status`` (0: only delay);
        a ``path`` with ``*`` is a glob (``/v1/invoices/*/attach_payment``)."""
        self._call(
            "POST", "/_fake/fail_next", {"count": count, "status": status, "delay": delay, "path": path}
        )

    def advance_clock(self, seconds: float) -> int:
        """Move the fake's clock forward (Checkout Sessions past ``expires_at`` expire at once);
        returns the fake's new "now". Reset puts it back."""
        return self._call("POST", "/_fake/clock", {"advance": seconds})["now"]

    # --- customer actions on Checkout ----------------------------------------------------------

    def pay(
        self,
        session_id: str,
        email: str | None = None,
        *,
        card: str | None = None,
        promotion_code: str | None = None,
    ) -> dict[str, Any]:
        """The customer pays (in setup mode: saves the card) with ``card``, a test token such as
        ``pm_card_chargeCustomerFail`` (default ``pm_card_visa``), after typing ``promotion_code``
        if given. The session is complete; returns it. A card that declines raises
        :class:`FakeStripeError` (402, the card error) and leaves the session open."""
        return self._call(
            "POST",
            f"/_fake/checkout/sessions/{session_id}/pay",
            {"email": email, "card": card, "promotion_code": promotion_code},
        )

    def decline(self, session_id: str) -> dict[str, Any]:
        """The card is declined; the session stays open. Returns ``{"session", "error"}``."""
        return self._call("POST", f"/_fake/checkout/sessions/{session_id}/decline")

    def pay_later(
        self, session_id: str, succeed: bool = True, delay: float | None = None, email: str | None = None
    ) -> dict[str, Any]:
        """A bank debit: complete but unpaid now, then async_payment_succeeded (or _failed)
        after ``delay`` seconds (default: the server's async_delay). A negative delay waits
        for :meth:`settle`. Returns the session."""
        return self._call(
            "POST",
            f"/_fake/checkout/sessions/{session_id}/pay_later",
            {"succeed": succeed, "delay": delay, "email": email},
        )

    def settle(self, session_id: str, succeed: bool = True) -> dict[str, Any]:
        """Settle a pay-later payment now."""
        return self._call("POST", f"/_fake/checkout/sessions/{session_id}/settle", {"succeed": succeed})

    def expire(self, session_id: str) -> dict[str, Any]:
        return self._call("POST", f"/_fake/checkout/sessions/{session_id}/expire")

    def authenticate(self, intent_id: str, succeed: bool = True) -> dict[str, Any]:
        """The customer completes (or fails) 3D Secure for a Payment- or SetupIntent in
        ``requires_action``. Returns the intent."""
        kind = "setup_intents" if intent_id.startswith("seti_") else "payment_intents"
        return self._call("POST", f"/_fake/{kind}/{intent_id}/authenticate", {"succeed": succeed})

    # --- Dashboard actions ---------------------------------------------------------------------

    def refund(
        self,
        payment_intent: str | None = None,
        amount: int | None = None,
        *,
        charge: str | None = None,
        reason: str | None = None,
        pending: bool = False,
    ) -> dict[str, Any]:
        """A refund made in the Dashboard (no idempotency key). ``pending=True`` leaves it
        pending so that :meth:`fail_refund` or :meth:`succeed_refund` can finish it."""
        return self._call(
            "POST",
            "/_fake/refunds",
            {
                "payment_intent": payment_intent,
                "charge": charge,
                "amount": amount,
                "reason": reason,
                "pending": pending,
            },
        )

    def fail_refund(self, refund_id: str, failure_reason: str = "expired_or_canceled_card") -> dict[str, Any]:
        """The bank returns the refund: refund.updated, charge.refund.updated, refund.failed."""
        return self._call("POST", f"/_fake/refunds/{refund_id}/fail", {"failure_reason": failure_reason})

    def succeed_refund(self, refund_id: str) -> dict[str, Any]:
        return self._call("POST", f"/_fake/refunds/{refund_id}/succeed")

    def create_dispute(
        self,
        charge: str | None = None,
        *,
        payment_intent: str | None = None,
        amount: int | None = None,
        reason: str = "fraudulent",
        inquiry: bool = False,
    ) -> dict[str, Any]:
        """The cardholder disputes: charge.dispute.created (+ funds_withdrawn unless an inquiry)."""
        return self._call(
            "POST",
            "/_fake/disputes",
            {
                "charge": charge,
                "payment_intent": payment_intent,
                "amount": amount,
                "reason": reason,
                "inquiry": inquiry,
            },
        )

    def close_dispute(self, dispute_id: str, status: str = "lost") -> dict[str, Any]:
        """status: won | lost (| warning_closed for inquiries); emits charge.dispute.closed."""
        return self._call("POST", f"/_fake/disputes/{dispute_id}/close", {"status": status})

    # --- webhooks ------------------------------------------------------------------------------

    def add_webhook(
        self, url: str, enabled_events: list[str] | None = None, secret: str | None = None
    ) -> dict[str, Any]:
        """Register an endpoint signed with ``secret`` (default: :attr:`webhook_secret`).
        Returns the webhook_endpoint including its ``secret``."""
        return self._call(
            "POST", "/_fake/webhooks", {"url": url, "enabled_events": enabled_events, "secret": secret}
        )

    def hold_deliveries(self) -> None:
        """Queue deliveries without sending them until :meth:`release_deliveries`."""
        self._call("POST", "/_fake/deliveries/hold")

    def release_deliveries(self, order: str = "fifo") -> list[dict[str, Any]]:
        """Send held deliveries in ``fifo``, ``reverse`` or ``shuffle`` order."""
        return self._call("POST", "/_fake/deliveries/release", {"order": order})["released"]

    def deliveries(self) -> list[dict[str, Any]]:
        return self._call("GET", "/_fake/deliveries")["data"]

    def wait_for_deliveries(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until no delivery is pending (each succeeded or gave up) and no pay-later
        settlement is scheduled; returns every delivery. Held deliveries do not count."""
        return self._call("GET", "/_fake/deliveries/wait", params={"timeout": timeout}, timeout=timeout + 10)[
            "data"
        ]

    def resend(self, event_id: str) -> list[dict[str, Any]]:
        """Deliver an event again to every endpoint, as the Dashboard's "Resend" does."""
        return self._call("POST", f"/_fake/events/{event_id}/resend")["data"]


def start_fake_stripe(
    *extra_args: str,
    secret_key: str = SECRET_KEY,
    webhook_secret: str = WEBHOOK_SECRET,
    startup_timeout: float = 20.0,
) -> FakeStripeHandle:
    """Start ``python -m fakes.stripe`` on a free port and wait until it answers."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    cmd = [
        sys.executable,
        "-m",
        "fakes.stripe",
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--secret-key",
        secret_key,
        "--webhook-secret",
        webhook_secret,
        *extra_args,
    ]
    # The command is our own module and arguments; nothing comes from outside the test run.
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True)  # noqa: S603
    line: list[str] = []
    reader = threading.Thread(
        target=lambda: line.append(proc.stdout.readline() if proc.stdout else ""), daemon=True
    )
    reader.start()
    reader.join(startup_timeout)
    if not line or "listening on " not in line[0]:
        proc.kill()
        raise RuntimeError(f"fake stripe did not start (exit code {proc.poll()}, output {line!r})")
    api_base = line[0].strip().rsplit(" ", 1)[-1]
    handle = FakeStripeHandle(api_base, secret_key, webhook_secret, proc)
    deadline = time.monotonic() + startup_timeout
    while True:
        try:
            handle._call("GET", "/_fake/health")
            return handle
        except httpx.TransportError:
            if time.monotonic() > deadline:
                stop_fake_stripe(handle)
                raise
            time.sleep(0.05)


def stop_fake_stripe(handle: FakeStripeHandle) -> None:
    handle.close()
    proc = handle.process
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout:
        proc.stdout.close()


# Fast retries and settlement so tests stay quick; each test can change them with configure().
TEST_SERVER_ARGS = (
    "--retry-base",
    "0.05",
    "--retry-factor",
    "2",
    "--max-attempts",
    "4",
    "--async-delay",
    "0.3",
    "--delivery-timeout",
    "5",
    "--log-level",
    "WARNING",
)


@pytest.fixture(scope="session")
def fake_stripe_server() -> Iterator[FakeStripeHandle]:
    handle = start_fake_stripe(*TEST_SERVER_ARGS)
    try:
        yield handle
    finally:
        stop_fake_stripe(handle)


@pytest.fixture
def fake_stripe(fake_stripe_server: FakeStripeHandle) -> Iterator[FakeStripeHandle]:
    fake_stripe_server.reset()
    yield fake_stripe_server


@pytest.fixture
def fake_stripe_client(fake_stripe: FakeStripeHandle) -> Any:
    return fake_stripe.client()
