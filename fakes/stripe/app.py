"""The aiohttp application: Stripe's /v1 API, the hosted checkout page and the /_fake/ controls."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import fnmatch
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from . import actions, cards, discounts, invoicing, page, payments, pdf
from .errors import StripeError, invalid_param
from .forms import check_known, decode, get_bool, get_dict, get_int, get_list, get_str
from .store import API_VERSION, CLOCK, IdempotentResult, Store, new_id, now, public
from .webhooks import Deliverer, DeliveryConfig

log = logging.getLogger("fakes.stripe")


@dataclass
class Settings:
    secret_key: str = "sk_test_fake"
    webhook_secret: str = "whsec_fake"
    webhooks: list[str] = field(default_factory=list)
    public_url: str | None = None
    async_delay: float = 3.0
    tax_rate_bps: int = 0
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)


@dataclass
class Fault:
    count: int
    status: int | None  # None or 0: only the delay
    delay: float
    path: str


@dataclass
class Ctx:
    """What an API handler sees of its request."""

    request: web.Request
    params: dict[str, Any]
    base_url: str

    def arg(self, name: str) -> str:
        return self.request.match_info[name]

    @property
    def expand(self) -> list[str]:
        return [str(p) for p in get_list(self.params, "expand")]


Handler = Callable[["FakeStripe", Ctx], dict[str, Any]]


class FakeStripe:
    """One fake Stripe account: its state, its webhook deliverer and its settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.delivery_defaults = DeliveryConfig(**settings.delivery.as_dict())
        self.async_delay = settings.async_delay
        self.faults: list[Fault] = []
        self._settlements: set[asyncio.TimerHandle] = set()
        self.store = Store(tax_rate_bps=settings.tax_rate_bps)
        self.deliverer = Deliverer(self.store, settings.delivery)
        self.store.on_events = self.deliverer.dispatch
        self._add_configured_webhooks()

    def _add_configured_webhooks(self) -> None:
        for url in self.settings.webhooks:
            actions.create_webhook_endpoint(
                self.store,
                {"url": url, "enabled_events": ["*"], "description": "--webhook"},
                secret=self.settings.webhook_secret,
            )

    async def reset(self) -> None:
        for handle in self._settlements:
            handle.cancel()
        self._settlements.clear()
        await self.deliverer.reset()
        self.faults.clear()
        CLOCK.offset = 0.0
        self.async_delay = self.settings.async_delay
        for name, value in self.delivery_defaults.as_dict().items():
            setattr(self.deliverer.config, name, value)
        self.store.objects.clear()
        self.store.order.clear()
        self.store.events.clear()
        self.store.idempotency.clear()
        self.store.tax_rate_bps = self.settings.tax_rate_bps
        self._add_configured_webhooks()

    def schedule_settlement(self, session_id: str, succeed: bool, delay: float) -> None:
        handle: asyncio.TimerHandle

        def settle() -> None:
            self._settlements.discard(handle)
            session = self.store.objects.get(session_id)
            if session is None:
                return
            try:
                with self.store.batch():
                    actions.settle_session(self.store, session, succeed=succeed)
            except StripeError as exc:
                log.warning("settlement of %s skipped: %s", session_id, exc.message)

        handle = asyncio.get_running_loop().call_later(max(0.0, delay), settle)
        self._settlements.add(handle)

    def busy(self) -> bool:
        return bool(self._settlements) or self.deliverer.busy()


# --- helpers ---------------------------------------------------------------------------------


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(body, indent=2),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _base_url(fake: FakeStripe, request: web.Request) -> str:
    return fake.settings.public_url or f"{request.scheme}://{request.host}"


def _api_key(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            user = base64.b64decode(value.strip()).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user.partition(":")[0]
    return None


def _authenticate(fake: FakeStripe, request: web.Request) -> None:
    key = _api_key(request)
    if not key:
        raise StripeError(
            "You did not provide an API key. You need to provide your API key in the Authorization "
            "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            status=401,
            replayable=False,
        )
    if key != fake.settings.secret_key:
        shown = key[:8] + "*" * 8 + key[-4:] if len(key) > 12 else "*" * len(key)
        raise StripeError(
            f"Invalid API Key provided: {shown}", status=401, code="api_key_invalid", replayable=False
        )


def _fault_matches(pattern: str, path: str) -> bool:
    """A fault's path is a prefix ("/v1/payment_intents"), or a glob when it has a `*`
    ("/v1/invoices/*/attach_payment": one action of any invoice)."""
    return fnmatch.fnmatchcase(path, pattern) if "*" in pattern else path.startswith(pattern)


async def _params(request: web.Request) -> dict[str, Any]:
    pairs = parse_qsl(request.query_string, keep_blank_values=True)
    if request.method in ("POST", "PUT"):
        body = await request.text()
        if body:
            if request.content_type == "application/json":
                raise StripeError(
                    "Invalid request: the Stripe API takes form-encoded bodies "
                    "(application/x-www-form-urlencoded), not JSON.",
                    replayable=False,
                )
            pairs += parse_qsl(body, keep_blank_values=True)
    return decode(pairs)


# --- the /v1 API --------------------------------------------------------------------------------


def api(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def run(request: web.Request) -> web.Response:
        fake: FakeStripe = request.app["fake"]
        request_id = new_id("req_", 14)
        headers = {
            "Request-Id": request_id,
            "Stripe-Version": request.headers.get("Stripe-Version", API_VERSION),
        }
        key = request.headers.get("Idempotency-Key")
        try:
            for fault in fake.faults:
                if fault.count > 0 and _fault_matches(fault.path, request.path):
                    fault.count -= 1
                    if fault.delay:
                        await asyncio.sleep(fault.delay)
                    if fault.status:
                        return _json(
                            StripeError(
                                "Fake failure injected by /_fake/fail_next.",
                                status=fault.status,
                                type="api_error",
                            ).body(request_id),
                            fault.status,
                            headers,
                        )
                    break
            _authenticate(fake, request)
            params = await _params(request)
            fingerprint: tuple[str, str, str] | None = None
            if key is not None and request.method == "POST":
                if len(key) > 255:
                    raise invalid_param(
                        "Idempotency-Key", "Idempotency-Key must be at most 255 characters long."
                    )
                fingerprint = (request.method, request.path, json.dumps(params, sort_keys=True))
                saved = fake.store.replay(key, fingerprint)
                if saved is not None:
                    return _json(
                        saved.body,
                        saved.status,
                        {**headers, "Idempotent-Replayed": "true", "Idempotency-Key": key},
                    )
                headers["Idempotency-Key"] = key
            ctx = Ctx(request=request, params=params, base_url=_base_url(fake, request))
            try:
                with fake.store.batch({"id": request_id, "idempotency_key": key}):
                    body, status = handler(fake, ctx), 200
            except StripeError as exc:
                if not exc.replayable:
                    raise
                body, status = exc.body(request_id), exc.status
            if fingerprint is not None and key is not None:
                fake.store.idempotency[key] = IdempotentResult(fingerprint, status, body)
            return _json(body, status, headers)
        except StripeError as exc:
            return _json(exc.body(request_id), exc.status, headers)

    return run


def _retrieve(object_name: str, param: str) -> Handler:
    def handler(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
        check_known(ctx.params, ())
        return fake.store.render(fake.store.get(object_name, ctx.arg(param)), ctx.expand)

    return handler


def _list(object_name: str, url: str, filters: tuple[str, ...] = ()) -> Handler:
    def handler(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
        check_known(ctx.params, (*filters, "limit", "starting_after", "ending_before", "created"))
        match = {f: ctx.params[f] for f in filters if get_str(ctx.params, f)}
        items = fake.store.find(object_name, **match)
        return fake.store.page(items, ctx.params, url, ctx.expand)

    return handler


def create_customer(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    return fake.store.render(actions.create_customer(fake.store, ctx.params), ctx.expand)


def update_customer(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    cus = fake.store.get("customer", ctx.arg("id"))
    return fake.store.render(actions.update_customer(fake.store, cus, ctx.params), ctx.expand)


def create_product(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    return fake.store.render(actions.create_product(fake.store, ctx.params), ctx.expand)


def create_price(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    return fake.store.render(actions.create_price(fake.store, ctx.params), ctx.expand)


def create_session(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    return fake.store.render(actions.create_session(fake.store, ctx.params, ctx.base_url), ctx.expand)


def session_line_items(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    check_known(ctx.params, ("limit", "starting_after", "ending_before"))
    session = fake.store.get("checkout.session", ctx.arg("id"), "session")
    return actions.line_items_page(fake.store, session, ctx.params)


def expire_session(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    check_known(ctx.params, ())
    session = fake.store.get("checkout.session", ctx.arg("id"), "session")
    return fake.store.render(actions.expire_session(fake.store, session), ctx.expand)


def create_refund(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    return fake.store.render(actions.create_refund(fake.store, ctx.params), ctx.expand)


def list_events(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    check_known(
        ctx.params,
        ("limit", "starting_after", "ending_before", "created", "type", "types", "delivery_success"),
    )
    wanted = get_str(ctx.params, "type")
    types = {str(t) for t in get_list(ctx.params, "types")}
    items = fake.store.find("event")
    if wanted:
        if wanted.endswith(".*"):
            items = [e for e in items if e["type"].startswith(wanted[:-1])]
        else:
            items = [e for e in items if e["type"] == wanted]
    if types:
        items = [e for e in items if e["type"] in types]
    return fake.store.page(items, ctx.params, "/v1/events", ctx.expand)


def create_webhook_endpoint(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    we = actions.create_webhook_endpoint(fake.store, ctx.params)
    # Stripe reveals an endpoint's signing secret only in the response that creates it.
    return {**fake.store.render(we, ctx.expand), "secret": we["_secret"]}


def update_webhook_endpoint(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    we = fake.store.get("webhook_endpoint", ctx.arg("id"))
    return fake.store.render(actions.update_webhook_endpoint(fake.store, we, ctx.params), ctx.expand)


def delete_webhook_endpoint(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    we = fake.store.get("webhook_endpoint", ctx.arg("id"))
    del fake.store.objects[we["id"]]
    return {"id": we["id"], "object": "webhook_endpoint", "deleted": True}


def _render(fake: FakeStripe, ctx: Ctx, obj: dict[str, Any]) -> dict[str, Any]:
    return fake.store.render(obj, ctx.expand)


def attach_payment_method(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    check_known(ctx.params, ("customer", "customer_account"))
    pm = payments.payment_method_for(fake.store, ctx.arg("id"), "payment_method")
    return _render(fake, ctx, payments.attach(fake.store, pm, get_str(ctx.params, "customer")))


def detach_payment_method(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    check_known(ctx.params, ())
    pm = fake.store.get("payment_method", ctx.arg("id"), "payment_method")
    return _render(fake, ctx, payments.detach(fake.store, pm))


def retrieve_payment_method(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    check_known(ctx.params, ())
    return _render(fake, ctx, payments.payment_method_for(fake.store, ctx.arg("id"), "payment_method"))


def list_payment_methods(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    # https://docs.stripe.com/api/payment_methods/list: filters `customer` and `type`.
    check_known(
        ctx.params, ("customer", "type", "allow_redisplay", "limit", "starting_after", "ending_before")
    )
    customer = get_str(ctx.params, "customer")
    if customer:
        fake.store.get("customer", customer, "customer")
    items = payments.list_payment_methods(fake.store, customer, get_str(ctx.params, "type"))
    return fake.store.page(items, ctx.params, "/v1/payment_methods", ctx.expand)


def customer_payment_methods(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    # https://docs.stripe.com/api/payment_methods/customer_list
    check_known(ctx.params, ("type", "allow_redisplay", "limit", "starting_after", "ending_before"))
    cus = fake.store.get("customer", ctx.arg("id"), "customer")
    items = payments.list_payment_methods(fake.store, cus["id"], get_str(ctx.params, "type"))
    return fake.store.page(items, ctx.params, f"/v1/customers/{cus['id']}/payment_methods", ctx.expand)


def create_payment_intent(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    return _render(fake, ctx, payments.create_payment_intent(fake.store, ctx.params))


def update_payment_intent(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    pi = fake.store.get("payment_intent", ctx.arg("id"), "intent")
    return _render(fake, ctx, payments.update_payment_intent(fake.store, pi, ctx.params))


def confirm_payment_intent(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    pi = fake.store.get("payment_intent", ctx.arg("id"), "intent")
    return _render(fake, ctx, payments.confirm_params(fake.store, pi, ctx.params))


def cancel_payment_intent(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    pi = fake.store.get("payment_intent", ctx.arg("id"), "intent")
    return _render(fake, ctx, payments.cancel_payment_intent(fake.store, pi, ctx.params))


def create_setup_intent(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    return _render(fake, ctx, payments.create_setup_intent(fake.store, ctx.params))


def confirm_setup_intent(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    si = fake.store.get("setup_intent", ctx.arg("id"), "intent")
    return _render(fake, ctx, payments.confirm_setup_params(fake.store, si, ctx.params))


def create_invoice(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    return _render(fake, ctx, invoicing.create_invoice(fake.store, ctx.params, ctx.base_url))


def create_invoice_item(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    return _render(fake, ctx, invoicing.create_invoice_item(fake.store, ctx.params))


def _invoice(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    return fake.store.get("invoice", ctx.arg("id"), "invoice")


def finalize_invoice(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    return _render(fake, ctx, invoicing.finalize_invoice(fake.store, _invoice(fake, ctx), ctx.params))


def pay_invoice(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    return _render(fake, ctx, invoicing.pay_invoice(fake.store, _invoice(fake, ctx), ctx.params))


def attach_invoice_payment(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    return _render(fake, ctx, invoicing.attach_payment(fake.store, _invoice(fake, ctx), ctx.params))


def void_invoice(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    check_known(ctx.params, ())
    return _render(fake, ctx, invoicing.void_invoice(fake.store, _invoice(fake, ctx)))


def invoice_lines(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    # https://docs.stripe.com/api/invoices/invoice_lines
    check_known(ctx.params, ("limit", "starting_after", "ending_before"))
    inv = _invoice(fake, ctx)
    return fake.store.page(inv["lines"]["data"], ctx.params, f"/v1/invoices/{inv['id']}/lines", ctx.expand)


def list_invoice_payments(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    # https://docs.stripe.com/api/invoice-payment/list: `invoice`, `payment[type|payment_intent]`, `status`.
    check_known(
        ctx.params, ("invoice", "payment", "status", "created", "limit", "starting_after", "ending_before")
    )
    match = {f: ctx.params[f] for f in ("invoice", "status") if get_str(ctx.params, f)}
    items = fake.store.find("invoice_payment", **match)
    wanted = get_dict(ctx.params, "payment")
    check_known(wanted, ("type", "payment_intent", "payment_record"), "payment")
    if get_str(wanted, "payment_intent"):
        items = [p for p in items if p["payment"]["payment_intent"] == wanted["payment_intent"]]
    return fake.store.page(items, ctx.params, "/v1/invoice_payments", ctx.expand)


def create_coupon(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    return _render(fake, ctx, discounts.create_coupon(fake.store, ctx.params))


def retrieve_coupon(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    check_known(ctx.params, ())
    return _render(fake, ctx, discounts.refresh_coupon(fake.store.get("coupon", ctx.arg("id"))))


def list_coupons(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    check_known(ctx.params, ("limit", "starting_after", "ending_before", "created"))
    items = [discounts.refresh_coupon(c) for c in fake.store.find("coupon")]
    return fake.store.page(items, ctx.params, "/v1/coupons", ctx.expand)


def create_promotion_code(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    return _render(fake, ctx, discounts.create_promotion_code(fake.store, ctx.params))


def update_promotion_code(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    promo = fake.store.get("promotion_code", ctx.arg("id"))
    return _render(fake, ctx, discounts.update_promotion_code(fake.store, promo, ctx.params))


def list_promotion_codes(fake: FakeStripe, ctx: Ctx) -> dict[str, Any]:
    # https://docs.stripe.com/api/promotion_codes/list: filters `active`, `code`, `coupon`, `customer`.
    check_known(
        ctx.params,
        ("active", "code", "coupon", "customer", "created", "limit", "starting_after", "ending_before"),
    )
    items = discounts.list_promotion_codes(fake.store, ctx.params)
    return fake.store.page(items, ctx.params, "/v1/promotion_codes", ctx.expand)


API_ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/v1/customers", create_customer),
    ("GET", "/v1/customers", _list("customer", "/v1/customers", ("email",))),
    ("GET", "/v1/customers/{id}", _retrieve("customer", "id")),
    ("POST", "/v1/customers/{id}", update_customer),
    ("POST", "/v1/products", create_product),
    ("GET", "/v1/products", _list("product", "/v1/products")),
    ("GET", "/v1/products/{id}", _retrieve("product", "id")),
    ("POST", "/v1/prices", create_price),
    ("GET", "/v1/prices", _list("price", "/v1/prices", ("product", "currency"))),
    ("GET", "/v1/prices/{id}", _retrieve("price", "id")),
    ("POST", "/v1/checkout/sessions", create_session),
    (
        "GET",
        "/v1/checkout/sessions",
        _list("checkout.session", "/v1/checkout/sessions", ("payment_intent", "customer", "status")),
    ),
    ("GET", "/v1/checkout/sessions/{id}", _retrieve("checkout.session", "id")),
    ("GET", "/v1/checkout/sessions/{id}/line_items", session_line_items),
    ("POST", "/v1/checkout/sessions/{id}/expire", expire_session),
    ("GET", "/v1/customers/{id}/payment_methods", customer_payment_methods),
    ("GET", "/v1/payment_methods", list_payment_methods),
    ("GET", "/v1/payment_methods/{id}", retrieve_payment_method),
    ("POST", "/v1/payment_methods/{id}/attach", attach_payment_method),
    ("POST", "/v1/payment_methods/{id}/detach", detach_payment_method),
    ("POST", "/v1/payment_intents", create_payment_intent),
    ("GET", "/v1/payment_intents", _list("payment_intent", "/v1/payment_intents", ("customer",))),
    ("GET", "/v1/payment_intents/{id}", _retrieve("payment_intent", "id")),
    ("POST", "/v1/payment_intents/{id}", update_payment_intent),
    ("POST", "/v1/payment_intents/{id}/confirm", confirm_payment_intent),
    ("POST", "/v1/payment_intents/{id}/cancel", cancel_payment_intent),
    ("POST", "/v1/setup_intents", create_setup_intent),
    ("GET", "/v1/setup_intents", _list("setup_intent", "/v1/setup_intents", ("customer", "payment_method"))),
    ("GET", "/v1/setup_intents/{id}", _retrieve("setup_intent", "id")),
    ("POST", "/v1/setup_intents/{id}/confirm", confirm_setup_intent),
    ("GET", "/v1/charges", _list("charge", "/v1/charges", ("payment_intent", "customer"))),
    ("GET", "/v1/charges/{id}", _retrieve("charge", "id")),
    ("POST", "/v1/refunds", create_refund),
    ("GET", "/v1/refunds", _list("refund", "/v1/refunds", ("charge", "payment_intent"))),
    ("GET", "/v1/refunds/{id}", _retrieve("refund", "id")),
    ("GET", "/v1/disputes", _list("dispute", "/v1/disputes", ("charge", "payment_intent"))),
    ("GET", "/v1/disputes/{id}", _retrieve("dispute", "id")),
    ("POST", "/v1/invoices", create_invoice),
    (
        "GET",
        "/v1/invoices",
        _list("invoice", "/v1/invoices", ("customer", "status", "collection_method")),
    ),
    ("GET", "/v1/invoices/{id}", _retrieve("invoice", "id")),
    ("GET", "/v1/invoices/{id}/lines", invoice_lines),
    ("POST", "/v1/invoices/{id}/finalize", finalize_invoice),
    ("POST", "/v1/invoices/{id}/pay", pay_invoice),
    ("POST", "/v1/invoices/{id}/attach_payment", attach_invoice_payment),
    ("POST", "/v1/invoices/{id}/void", void_invoice),
    ("POST", "/v1/invoiceitems", create_invoice_item),
    ("GET", "/v1/invoiceitems", _list("invoiceitem", "/v1/invoiceitems", ("customer", "invoice"))),
    ("GET", "/v1/invoiceitems/{id}", _retrieve("invoiceitem", "id")),
    ("GET", "/v1/invoice_payments", list_invoice_payments),
    ("GET", "/v1/invoice_payments/{id}", _retrieve("invoice_payment", "id")),
    ("POST", "/v1/coupons", create_coupon),
    ("GET", "/v1/coupons", list_coupons),
    ("GET", "/v1/coupons/{id}", retrieve_coupon),
    ("POST", "/v1/promotion_codes", create_promotion_code),
    ("GET", "/v1/promotion_codes", list_promotion_codes),
    ("GET", "/v1/promotion_codes/{id}", _retrieve("promotion_code", "id")),
    ("POST", "/v1/promotion_codes/{id}", update_promotion_code),
    ("GET", "/v1/events", list_events),
    ("GET", "/v1/events/{id}", _retrieve("event", "id")),
    ("POST", "/v1/webhook_endpoints", create_webhook_endpoint),
    ("GET", "/v1/webhook_endpoints", _list("webhook_endpoint", "/v1/webhook_endpoints")),
    ("GET", "/v1/webhook_endpoints/{id}", _retrieve("webhook_endpoint", "id")),
    ("POST", "/v1/webhook_endpoints/{id}", update_webhook_endpoint),
    ("DELETE", "/v1/webhook_endpoints/{id}", delete_webhook_endpoint),
]


async def unrecognized(request: web.Request) -> web.Response:
    return _json(
        StripeError(
            f"Unrecognized request URL ({request.method}: {request.path}). Please see https://stripe.com/docs "
            "or we can help at https://support.stripe.com/.",
            status=404,
        ).body(),
        404,
    )


# --- the hosted checkout page ----------------------------------------------------------------------


def _checkout_session(fake: FakeStripe, request: web.Request) -> dict[str, Any]:
    session = fake.store.objects.get(request.match_info["id"])
    if session is None or session["object"] != "checkout.session":
        raise web.HTTPNotFound(text="No such Checkout Session.")
    return session


def _success_redirect(session: dict[str, Any]) -> web.StreamResponse:
    if session["success_url"]:
        url = session["success_url"].replace(actions.CHECKOUT_ID_TEMPLATE, session["id"])
        return web.HTTPSeeOther(url)
    return web.HTTPSeeOther(f"/c/pay/{session['id']}/done")


CHECKOUT_CARDS = [(card.token, card.label) for card in cards.TEST_CARDS.values()]


def _checkout_html(
    fake: FakeStripe, session: dict[str, Any], error: str | None = None, promotion_code: str = ""
) -> str:
    return page.checkout_page(
        session,
        error=error,
        async_delay=fake.async_delay,
        customer_email=_customer_email(fake, session),
        cards=CHECKOUT_CARDS,
        promotion_code=promotion_code,
    )


async def checkout_get(request: web.Request) -> web.Response:
    fake: FakeStripe = request.app["fake"]
    session = _checkout_session(fake, request)
    return web.Response(text=_checkout_html(fake, session), content_type="text/html")


def _customer_email(fake: FakeStripe, session: dict[str, Any]) -> str:
    if not session["customer"]:
        return ""
    return str(fake.store.get("customer", session["customer"]).get("email") or "")


async def checkout_post(request: web.Request) -> web.StreamResponse:
    fake: FakeStripe = request.app["fake"]
    session = _checkout_session(fake, request)
    form = await request.post()
    action = str(form.get("action", ""))
    email = str(form.get("email", "")) or None
    card = str(form.get("card", "")) or None
    code = str(form.get("promotion_code", "")).strip()
    if session["status"] != "open":
        return web.HTTPSeeOther(f"/c/pay/{session['id']}")
    try:
        with fake.store.batch():
            if code and action != "decline" and session["allow_promotion_codes"]:
                actions.apply_promotion_code(fake.store, session, code)
            if action == "apply":
                pass
            elif action == "pay":
                actions.pay_session(fake.store, session, email=email, card=card)
            elif action == "decline":
                error = actions.decline_session(fake.store, session, email=email)
                raise StripeError(error["message"], status=402, type="card_error", keep_effects=True)
            elif action in ("pay_later", "pay_later_fail"):
                actions.pay_session_later(fake.store, session, email=email)
                fake.schedule_settlement(session["id"], action == "pay_later", fake.async_delay)
            else:
                raise web.HTTPBadRequest(text=f"unknown action {action!r}")
    except StripeError as exc:
        html = _checkout_html(fake, session, error=exc.message, promotion_code=code)
        return web.Response(text=html, content_type="text/html", status=402 if exc.status == 402 else 400)
    if action == "apply":
        return web.Response(text=_checkout_html(fake, session, promotion_code=code), content_type="text/html")
    return _success_redirect(session)


async def checkout_done(request: web.Request) -> web.Response:
    fake: FakeStripe = request.app["fake"]
    return web.Response(text=page.done_page(_checkout_session(fake, request)), content_type="text/html")


# --- the hosted invoice page and PDF --------------------------------------------------------------


def _hosted_invoice(fake: FakeStripe, request: web.Request) -> dict[str, Any]:
    inv = fake.store.objects.get(request.match_info["id"])
    if inv is None or inv["object"] != "invoice" or inv["status"] == "draft":
        raise web.HTTPNotFound(text="No such invoice.")
    return inv


def _invoice_cards(fake: FakeStripe, inv: dict[str, Any]) -> list[tuple[str, str]]:
    options = []
    saved = invoicing._default_payment_method(fake.store, inv)
    pm = fake.store.objects.get(saved or "")
    if pm is not None:
        options.append(("saved", f"Saved {pm['card']['brand'].title()} ···· {pm['card']['last4']}"))
    options += [(card.token, card.label) for card in cards.TEST_CARDS.values()]
    return options


async def invoice_get(request: web.Request) -> web.Response:
    fake: FakeStripe = request.app["fake"]
    inv = _hosted_invoice(fake, request)
    html = page.invoice_page(inv, cards=_invoice_cards(fake, inv))
    return web.Response(text=html, content_type="text/html")


async def invoice_post(request: web.Request) -> web.StreamResponse:
    fake: FakeStripe = request.app["fake"]
    inv = _hosted_invoice(fake, request)
    form = await request.post()
    if inv["status"] != "open":
        return web.HTTPSeeOther(f"/i/{inv['id']}")
    card = str(form.get("card") or "saved")
    try:
        with fake.store.batch():
            invoicing.pay_invoice(fake.store, inv, {}, on_session_card=card)
    except StripeError as exc:
        html = page.invoice_page(inv, error=exc.message, cards=_invoice_cards(fake, inv))
        return web.Response(text=html, content_type="text/html", status=402 if exc.status == 402 else 400)
    return web.HTTPSeeOther(f"/i/{inv['id']}")


async def invoice_pdf(request: web.Request) -> web.Response:
    fake: FakeStripe = request.app["fake"]
    inv = _hosted_invoice(fake, request)
    return web.Response(
        body=pdf.invoice_pdf(inv),
        content_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="Invoice-{inv["number"]}.pdf"'},
    )


# --- /_fake/ controls -------------------------------------------------------------------------------


async def _control_params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = decode(parse_qsl(request.query_string, keep_blank_values=True))
    if request.method == "POST" and request.can_read_body:
        text = await request.text()
        if text.strip():
            if request.content_type == "application/json":
                data = json.loads(text)
                if not isinstance(data, dict):
                    raise invalid_param("body", "The control API takes a JSON object.")
                params.update(_stringify(data))
            else:
                params.update(decode(parse_qsl(text, keep_blank_values=True)))
    return params


def _stringify(value: Any) -> Any:
    # Controls accept JSON for convenience; the form readers expect Stripe's string values.
    if isinstance(value, dict):
        return {k: _stringify(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def _float(params: dict[str, Any], name: str, default: float) -> float:
    raw = get_str(params, name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise invalid_param(name, f"Invalid number: {raw}") from None


ControlHandler = Callable[[FakeStripe, web.Request, dict[str, Any]], Awaitable[Any]]


def control(handler: ControlHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def run(request: web.Request) -> web.Response:
        fake: FakeStripe = request.app["fake"]
        try:
            params = await _control_params(request)
            return _json(await handler(fake, request, params))
        except StripeError as exc:
            return _json(exc.body(), exc.status)
        except json.JSONDecodeError as exc:
            return _json(StripeError(f"Invalid JSON: {exc}").body(), 400)

    return run


def _session_arg(fake: FakeStripe, request: web.Request) -> dict[str, Any]:
    return fake.store.get("checkout.session", request.match_info["id"], "session")


async def c_health(fake: FakeStripe, request: web.Request, params: dict[str, Any]) -> Any:
    return {"ok": True, "secret_key_hint": fake.settings.secret_key[:8]}


async def c_reset(fake: FakeStripe, request: web.Request, params: dict[str, Any]) -> Any:
    await fake.reset()
    return {"ok": True}


async def c_config(fake: FakeStripe, request: web.Request, params: dict[str, Any]) -> Any:
    cfg = fake.deliverer.config
    if request.method == "POST":
        if "duplicates" in params:
            dup = params["duplicates"]
            cfg.duplicates = {"true": 2, "false": 1}.get(str(dup)) or max(
                1, get_int(params, "duplicates") or 1
            )
        if "out_of_order" in params:
            cfg.out_of_order = get_bool(params, "out_of_order")
        for name in ("retry_base", "retry_factor", "timeout"):
            if name in params:
                setattr(cfg, name, _float(params, name, getattr(cfg, name)))
        if "max_attempts" in params:
            cfg.max_attempts = max(1, get_int(params, "max_attempts") or 1)
        if "async_delay" in params:
            fake.async_delay = _float(params, "async_delay", fake.async_delay)
        if "tax_rate_bps" in params:
            bps = get_int(params, "tax_rate_bps") or 0
            if not 0 <= bps <= 10000:
                raise invalid_param("tax_rate_bps", "tax_rate_bps must be between 0 and 10000.")
            fake.store.tax_rate_bps = bps
    return {
        **cfg.as_dict(),
        "async_delay": fake.async_delay,
        "tax_rate_bps": fake.store.tax_rate_bps,
        "held": fake.deliverer.held,
    }


async def c_pay(fake: FakeStripe, request: web.Request, params: dict[str, Any]) -> Any:
    session = _session_arg(fake, request)
    with fake.store.batch():
        actions.pay_session(
            fake.store,
            session,
            email=get_str(params, "email"),
            name=get_str(params, "name"),
            card=get_str(params, "card") or get_str(params, "payment_method"),
            promotion_code=get_str(params, "promotion_code"),
        )
    return fake.store.render(session)


async def c_decline(fake: FakeStripe, request: web.Request, params: dict[str, Any]) -> Any:
    session = _session_arg(fake, request)
    with fake.store.batch():
        error = actions.decline_session(fake.store, session, email=get_str(params, "email"))
    return {"session": fake.store.render(session), "error": error}


async def c_pay_later(fake: FakeStripe, request: web.Request, params: dict[str, Any]) -> Any:
    session = _session_arg(fake, request)
    succeed = get_bool(params, "succeed", default=True)
    delay = _float(params, "delay", fake.async_delay)
    with fake.store.batch():
        actions.pay_session_later(
            fake.store, session, email=get_str(params, "email"), name=get_str(params, "name")
        )
    if delay >= 0:
        fake.schedule_settlement(session["id"], succeed, delay)
    return fake.store.render(session)


async def c_settle(fake: FakeStripe, request: web.Request, params: dict[str, Any]) -> Any:
    session = _session_arg(fake, request)
    with fake.store.batch():
        actions.settle_session(fake.store, session, succeed=get_bool(params, "succeed", default=True))
    return fake.store.render(session)


async def c_expire(fake: FakeStripe, request: web.Request, params: dict[str, Any]) -> Any:
    session = _session_arg(fake, request)
    with fake.store.batch():
        actions.expire_session(fake.store, session)
    return fake.store.render(session)


async def c_refund(fake: FakeStripe, request: web.Request, params: dict[str, Any]) -> Any:
    status = "pending" if get_bool(params, "pending") else "succeeded"
    params.pop("pending", None)
    with fake.store.batch():
        re = actions.create_refund(fake.store, params, status=status)
    return fake.store.render(re)


async def c_fail_refund(fake: FakeStripe, request: web.Request, params: dict[str, Any]) -> Any:
    re = fake.store.get("refund", request.match_info["id"])
    with fake.store.batch():
        actions.fail_refund(fake.store, re, get_str(params, "failure_reason"))
    return fake.store.render(re)


async def c_succeed_refund(fake: FakeStripe, request: web.Request, params: dict[str, Any]) -> Any:
    re = fake.store.get("refund", request.match_info["id"])
    with fake.store.batch():
        actions.succeed_refund(fake.store, re)
    return fake.store.render(re)


async def c_dispute(fake: FakeStripe, request: web.Request, params: dict[str, Any]) -> Any:
    with fake.store.batch():
        dp = actions.create_dispute(fake.store, params)
    return fake.store.render(dp)


async def c_close_dispute(fake: FakeStripe, request: web.Request, params: dict[str, Any]) -> Any:
    dp = fake.store.get("dispute", request.match_info["id"])
    with fake.store.batch():
        actions.close_dispute(fake.store, dp, get_str(params, "status", required=True) or "")
    return fake.store.render(dp)


async def c_authenticate(fake: FakeStripe, request: web.Request, params: dict[str, Any]) -> Any:
    """The customer completes (or fails) 3D Secure for an intent in ``requires_action``."""
    intent = fake.store.objects.get(request.match_info["id"])
    if intent is None or intent["object"] not in ("payment_intent", "setup_intent"):
        raise StripeError(
            f"No such intent: '{request.match_info['id']}'", status=404, code="resource_missing"
        )
    if intent["status"] != "requires_action":
        raise StripeError(
            f"{intent['id']} is {intent['status']}; only an intent in requires_action can be authenticated.",
            code=f"{intent['object']}_unexpected_state",
        )
    succeed = get_bool(params, "succeed", default=True)
    with fake.store.batch():
        if intent["object"] == "payment_intent":
            if succeed:
                payments.confirm_payment_intent(fake.store, intent, off_session=False, authenticated=True)
            else:
                payments.fail_authentication(fake.store, intent)
        elif succeed:
            payments.confirm_setup_intent(fake.store, intent, authenticated=True)
        else:
            payments.fail_setup_authentication(fake.store, intent)
    return fake.store.render(intent)


async def c_add_webhook(fake: FakeStripe, request: web.Request, params: dict[str, Any]) -> Any:
    secret = get_str(params, "secret") or fake.settings.webhook_secret
    params.pop("secret", None)
    we = actions.create_webhook_endpoint(fake.store, params, secret=secret, strict=False)
    return {**fake.store.render(we), "secret": we["_secret"]}


async def c_hold(fake: FakeStripe, request: web.Request, params: dict[str, Any]) -> Any:
    fake.deliverer.hold()
    return {"held": True}


async def c_release(fake: FakeStripe, request: web.Request, params: dict[str, Any]) -> Any:
    try:
        released = fake.deliverer.release(get_str(params, "order") or "fifo")
    except ValueError as exc:
        raise invalid_param("order", str(exc)) from None
    return {"released": [d.as_dict() for d in released]}


async def c_deliveries(fake: FakeStripe, request: web.Request, params: dict[str, Any]) -> Any:
    return {"data": [d.as_dict() for d in fake.deliverer.deliveries]}


async def c_wait(fake: FakeStripe, request: web.Request, params: dict[str, Any]) -> Any:
    timeout = _float(params, "timeout", 10.0)
    deadline = time.monotonic() + timeout
    while fake.busy():
        if time.monotonic() > deadline:
            pending = [d.as_dict() for d in fake.deliverer.deliveries if d.status == "pending"]
            raise StripeError(
                f"Deliveries still pending after {timeout:g} s ({len(pending)} pending, "
                f"{len(fake._settlements)} settlements scheduled).",
                status=408,
                type="api_error",
                pending=pending,
            )
        await asyncio.sleep(0.01)
    return {"data": [d.as_dict() for d in fake.deliverer.deliveries]}


async def c_resend(fake: FakeStripe, request: web.Request, params: dict[str, Any]) -> Any:
    event = fake.store.get("event", request.match_info["id"])
    return {"data": [d.as_dict() for d in fake.deliverer.resend(event)]}


async def c_events(fake: FakeStripe, request: web.Request, params: dict[str, Any]) -> Any:
    wanted = get_str(params, "type")
    events = [public(e) for e in fake.store.events if not wanted or e["type"] == wanted]
    return {"data": events}


async def c_object(fake: FakeStripe, request: web.Request, params: dict[str, Any]) -> Any:
    obj = fake.store.objects.get(request.match_info["id"])
    if obj is None:
        raise StripeError(
            f"No such object: '{request.match_info['id']}'", status=404, code="resource_missing"
        )
    return fake.store.render(obj, [str(p) for p in get_list(params, "expand")])


async def c_clock(fake: FakeStripe, request: web.Request, params: dict[str, Any]) -> Any:
    if request.method == "POST":
        advance = _float(params, "advance", 0.0)
        if advance < 0:
            raise invalid_param("advance", "The clock only moves forward.")
        CLOCK.offset += advance
        actions.expire_due_sessions(fake.store)
    return {"now": now(), "offset": CLOCK.offset}


async def c_fail_next(fake: FakeStripe, request: web.Request, params: dict[str, Any]) -> Any:
    fault = Fault(
        count=get_int(params, "count") or 1,
        status=get_int(params, "status") if "status" in params else 500,
        delay=_float(params, "delay", 0.0),
        path=get_str(params, "path") or "/v1/",
    )
    fake.faults.append(fault)
    return {"count": fault.count, "status": fault.status, "delay": fault.delay, "path": fault.path}


CONTROL_ROUTES: list[tuple[str, str, ControlHandler]] = [
    ("GET", "/_fake/health", c_health),
    ("POST", "/_fake/reset", c_reset),
    ("GET", "/_fake/config", c_config),
    ("POST", "/_fake/config", c_config),
    ("POST", "/_fake/checkout/sessions/{id}/pay", c_pay),
    ("POST", "/_fake/checkout/sessions/{id}/decline", c_decline),
    ("POST", "/_fake/checkout/sessions/{id}/pay_later", c_pay_later),
    ("POST", "/_fake/checkout/sessions/{id}/settle", c_settle),
    ("POST", "/_fake/checkout/sessions/{id}/expire", c_expire),
    ("POST", "/_fake/refunds", c_refund),
    ("POST", "/_fake/refunds/{id}/fail", c_fail_refund),
    ("POST", "/_fake/refunds/{id}/succeed", c_succeed_refund),
    ("POST", "/_fake/disputes", c_dispute),
    ("POST", "/_fake/disputes/{id}/close", c_close_dispute),
    ("POST", "/_fake/payment_intents/{id}/authenticate", c_authenticate),
    ("POST", "/_fake/setup_intents/{id}/authenticate", c_authenticate),
    ("POST", "/_fake/webhooks", c_add_webhook),
    ("POST", "/_fake/deliveries/hold", c_hold),
    ("POST", "/_fake/deliveries/release", c_release),
    ("GET", "/_fake/deliveries", c_deliveries),
    ("GET", "/_fake/deliveries/wait", c_wait),
    ("POST", "/_fake/events/{id}/resend", c_resend),
    ("GET", "/_fake/events", c_events),
    ("GET", "/_fake/objects/{id}", c_object),
    ("POST", "/_fake/fail_next", c_fail_next),
    ("GET", "/_fake/clock", c_clock),
    ("POST", "/_fake/clock", c_clock),
]


# --- wiring -------------------------------------------------------------------------------------------


@web.middleware
async def stripe_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Unknown API routes and wrong methods answer in Stripe's envelope, not aiohttp's HTML."""
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed:
        if request.path.startswith("/v1/"):
            return await unrecognized(request)
        raise


async def _expiry_sweep(app: web.Application) -> Any:
    fake: FakeStripe = app["fake"]

    async def sweep() -> None:
        while True:
            await asyncio.sleep(1.0)
            actions.expire_due_sessions(fake.store)

    task = asyncio.get_running_loop().create_task(sweep())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await fake.deliverer.close()


def make_app(settings: Settings | None = None) -> web.Application:
    fake = FakeStripe(settings or Settings())
    app = web.Application(middlewares=[stripe_errors])
    app["fake"] = fake
    for method, path, api_handler in API_ROUTES:
        app.router.add_route(method, path, api(api_handler))
    app.router.add_route("*", "/v1/{tail:.*}", unrecognized)
    app.router.add_get("/c/pay/{id}", checkout_get)
    app.router.add_post("/c/pay/{id}", checkout_post)
    app.router.add_get("/c/pay/{id}/done", checkout_done)
    app.router.add_get("/i/{id}", invoice_get)
    app.router.add_post("/i/{id}", invoice_post)
    app.router.add_get("/i/{id}/pdf", invoice_pdf)
    for method, path, control_handler in CONTROL_ROUTES:
        app.router.add_route(method, path, control(control_handler))
    app.cleanup_ctx.append(_expiry_sweep)
    return app
