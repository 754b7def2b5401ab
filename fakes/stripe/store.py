"""In-memory state: objects by id, the event log, idempotency results.

Everything runs on the aiohttp event loop and no handler awaits between reading and
writing state, so there are no locks: each request or control action is atomic.
"""

from __future__ import annotations

import contextlib
import copy
import secrets
import string
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import StripeError, invalid_param, no_such

API_VERSION = "2026-10-28.endive"

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


class Clock:
    """The fake's idea of "now"; tests move it forward to make Checkout Sessions expire."""

    offset: float = 0.0


CLOCK = Clock()


def now() -> int:
    return int(time.time() + CLOCK.offset)


def public(obj: dict[str, Any]) -> dict[str, Any]:
    """A deep copy without the fake's private bookkeeping (keys starting with "_")."""
    return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}


@dataclass
class IdempotentResult:
    fingerprint: tuple[str, str, str]
    status: int
    body: dict[str, Any]


@dataclass
class Store:
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Insertion order doubles as the tie-breaker for objects created in the same second.
    order: dict[str, int] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    idempotency: dict[str, IdempotentResult] = field(default_factory=dict)
    on_events: Callable[[list[dict[str, Any]]], None] | None = None
    # The one tax rate automatic tax applies (basis points of the amount after discounts);
    # Stripe Tax would look it up by the customer's address.
    tax_rate_bps: int = 0
    _batch: list[dict[str, Any]] | None = None
    _request: dict[str, Any] | None = None
    _counter: int = 0

    # --- objects ----------------------------------------------------------------------

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._counter += 1
        self.objects[obj["id"]] = obj
        self.order[obj["id"]] = self._counter
        return obj

    def get(self, object_name: str, object_id: str | None, param: str = "id") -> dict[str, Any]:
        obj = self.objects.get(object_id or "")
        if obj is None or obj["object"] != object_name:
            raise no_such(object_name, object_id or "", param)
        return obj

    def find(self, object_name: str, **match: Any) -> list[dict[str, Any]]:
        """Objects of one type whose fields equal ``match``, newest first, as Stripe lists."""
        found = [
            o
            for o in self.objects.values()
            if o["object"] == object_name and all(o.get(k) == v for k, v in match.items())
        ]
        found.sort(key=lambda o: (o.get("created", 0), self.order[o["id"]]), reverse=True)
        return found

    # --- events -------------------------------------------------------------------------

    @contextlib.contextmanager
    def batch(self, request: dict[str, Any] | None = None) -> Iterator[None]:
        """Collect the events one action emits and hand them to delivery together.

        Delivery sees a whole batch at once, which is what lets "out of order" mode reverse
        e.g. charge.succeeded / payment_intent.succeeded / checkout.session.completed.
        Nested batches join the outer one.
        """
        if self._batch is not None:
            yield
            return
        self._batch, self._request = [], request
        try:
            yield
            emitted = self._batch
        except BaseException as exc:
            if getattr(exc, "keep_effects", False):
                # A card decline is a failed request whose effects stay: Stripe keeps the
                # PaymentIntent and its failed Charge and sends charge.failed and
                # payment_intent.payment_failed although the API call answers 402.
                emitted = self._batch
                self._batch, self._request = None, None
                if emitted and self.on_events:
                    self.on_events(emitted)
                raise
            # A failed action announces nothing, as a failed Stripe request emits no events.
            for event in self._batch:
                self.events.remove(event)
                self.objects.pop(event["id"], None)
            raise
        finally:
            self._batch, self._request = None, None
        if emitted and self.on_events:
            self.on_events(emitted)

    def emit(
        self,
        event_type: str,
        obj: dict[str, Any],
        previous_attributes: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"object": self.snapshot(obj)}
        if previous_attributes is not None:
            data["previous_attributes"] = previous_attributes
        request = self._request or {"id": None, "idempotency_key": None}
        event = {
            "id": new_id("evt_1"),
            "object": "event",
            "api_version": API_VERSION,
            "created": now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 0,
            "request": dict(request),
            "type": event_type,
        }
        self.add(event)
        self.events.append(event)
        if self._batch is not None:
            self._batch.append(event)
        elif self.on_events:
            self.on_events([event])
        return event

    def snapshot(self, obj: dict[str, Any]) -> dict[str, Any]:
        """The object as an event carries it.

        Charges in events carry their refunds list: handlers of charge.refunded want to
        apply each ``re_`` id once, and the API only shows it with ``expand[]=refunds``.
        """
        out = public(obj)
        if obj["object"] == "charge":
            out["refunds"] = self.refunds_list(obj)
        return out

    def refunds_list(self, charge: dict[str, Any]) -> dict[str, Any]:
        refunds = self.find("refund", charge=charge["id"])
        return {
            "object": "list",
            "data": [public(r) for r in refunds],
            "has_more": False,
            "total_count": len(refunds),
            "url": f"/v1/charges/{charge['id']}/refunds",
        }

    # --- rendering ---------------------------------------------------------------------

    def render(self, obj: dict[str, Any], expand: list[str] | None = None) -> dict[str, Any]:
        out = public(obj)
        for path in expand or []:
            self._expand(out, path.split("."), path)
        return out

    def _expand(self, node: Any, path: list[str], full: str) -> None:
        if not path or not isinstance(node, dict):
            return
        head, rest = path[0], path[1:]
        if head == "data" and node.get("object") == "list":
            for item in node["data"]:
                self._expand(item, rest, full)
            return
        if head not in node and head not in _COMPUTED.get(node.get("object", ""), {}):
            raise invalid_param("expand", f"This property cannot be expanded ({full}).")
        computed = _COMPUTED.get(node.get("object", ""), {}).get(head)
        if computed is not None:
            node[head] = computed(self, node)
        elif isinstance(node[head], str) and node[head] in self.objects:
            node[head] = public(self.objects[node[head]])
        elif node[head] is None or isinstance(node[head], dict):
            pass
        else:
            raise invalid_param("expand", f"This property cannot be expanded ({full}).")
        self._expand(node[head], rest, full)

    def page(
        self,
        items: list[dict[str, Any]],
        params: dict[str, Any],
        url: str,
        expand: list[str] | None = None,
    ) -> dict[str, Any]:
        """Cursor pagination over newest-first ``items``, as every Stripe list endpoint does."""
        try:
            limit = int(params.get("limit") or 10)
        except ValueError:
            raise invalid_param("limit", f"Invalid integer: {params.get('limit')}") from None
        if not 1 <= limit <= 100:
            raise invalid_param("limit", "Invalid limit: must be an integer between 1 and 100")
        ids = [o["id"] for o in items]
        after, before = params.get("starting_after"), params.get("ending_before")
        if after:
            if after not in ids:
                raise invalid_param("starting_after", f"No such object: '{after}'")
            items = items[ids.index(after) + 1 :]
            chosen, has_more = items[:limit], len(items) > limit
        elif before:
            if before not in ids:
                raise invalid_param("ending_before", f"No such object: '{before}'")
            items = items[: ids.index(before)]
            chosen, has_more = items[-limit:], len(items) > limit
        else:
            chosen, has_more = items[:limit], len(items) > limit
        item_expand = [p[len("data.") :] for p in expand or [] if p.startswith("data.")]
        return {
            "object": "list",
            "data": [self.render(o, item_expand) for o in chosen],
            "has_more": has_more,
            "url": url,
        }

    # --- idempotency ----------------------------------------------------------------------

    def replay(self, key: str, fingerprint: tuple[str, str, str]) -> IdempotentResult | None:
        saved = self.idempotency.get(key)
        if saved is None:
            return None
        if saved.fingerprint != fingerprint:
            raise StripeError(
                "Keys for idempotent requests can only be used with the same parameters they were "
                f"first used with. Try using a key other than '{key}' if you meant to execute a "
                "different request.",
                type="idempotency_error",
                replayable=False,
            )
        return saved


def _session_line_items(store: Store, session: dict[str, Any]) -> dict[str, Any]:
    items = store.objects[session["id"]]["_line_items"]
    return {
        "object": "list",
        "data": copy.deepcopy(items),
        "has_more": False,
        "url": f"/v1/checkout/sessions/{session['id']}/line_items",
    }


def _charge_refunds(store: Store, charge: dict[str, Any]) -> dict[str, Any]:
    return store.refunds_list(store.objects[charge["id"]])


def _invoice_payments(store: Store, invoice: dict[str, Any]) -> dict[str, Any]:
    # "payments: Payments for this invoice" is includable: shown only with expand[]=payments
    # (https://docs.stripe.com/api/invoices/object#invoice_object-payments).
    found = store.find("invoice_payment", invoice=invoice["id"])
    return {
        "object": "list",
        "data": [public(p) for p in found],
        "has_more": False,
        "url": f"/v1/invoice_payments?invoice={invoice['id']}",
    }


# Fields Stripe leaves out of an object unless asked for with expand[].
_COMPUTED: dict[str, dict[str, Callable[[Store, dict[str, Any]], Any]]] = {
    "checkout.session": {"line_items": _session_line_items},
    "charge": {"refunds": _charge_refunds},
    "invoice": {"payments": _invoice_payments},
}
