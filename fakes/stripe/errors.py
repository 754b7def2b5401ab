"""Stripe's error envelope and the statuses stripe-python maps onto its exception classes."""

from __future__ import annotations

from typing import Any


class StripeError(Exception):
    """An error rendered as ``{"error": {...}}`` with Stripe's HTTP status.

    ``replayable`` follows Stripe's idempotency rule: a request that failed parameter
    validation never "started executing", so its result is not saved under the key and a
    corrected retry with the same key is allowed. Business failures (over-refund, card
    declined) are saved and replayed like successes.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        replayable: bool = True,
        keep_effects: bool = False,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        self.replayable = replayable
        # True for card errors: the objects and events made before the decline stay.
        self.keep_effects = keep_effects
        self.extra = extra

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"https://docs.stripe.com/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            error["param"] = self.param
        if request_id:
            error["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        error.update(self.extra)
        return {"error": error}


def invalid_param(param: str, message: str) -> StripeError:
    return StripeError(message, param=param, replayable=False)


def missing_param(param: str) -> StripeError:
    return StripeError(
        f"Missing required param: {param}.", code="parameter_missing", param=param, replayable=False
    )


def unknown_param(param: str) -> StripeError:
    return StripeError(
        f"Received unknown parameter: {param}", code="parameter_unknown", param=param, replayable=False
    )


def no_such(object_name: str, object_id: str, param: str = "id") -> StripeError:
    return StripeError(
        f"No such {object_name}: '{object_id}'",
        status=404,
        code="resource_missing",
        param=param,
        replayable=False,
    )
