"""Every named API throttle, in one module (STYLE rule 12); rates live in settings
(REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], THROTTLE_* variables). They sit in front of the
assistants' own per-user limits, which count call starts in the database."""

import math
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.http import HttpRequest, HttpResponse
from rest_framework.throttling import SimpleRateThrottle, UserRateThrottle

V = TypeVar("V", bound=Callable[..., HttpResponse])


class CallStartThrottle(UserRateThrottle):
    scope = "call_start"


class KeyMintThrottle(UserRateThrottle):
    scope = "key_mint"


class CallControlThrottle(UserRateThrottle):
    scope = "call_control"


class CheckoutThrottle(UserRateThrottle):
    """Checkouts started (API and buy page) and success pages, which each call Stripe: one budget
    per user across them, so a loop cannot fill the database with pending purchases."""

    scope = "checkout"


class PromoCodeThrottle(UserRateThrottle):
    """Promo codes tried on the wallet page, right or wrong: a budget per user that makes guessing
    codes hopeless."""

    scope = "promo_code"


def throttle_page(throttle_class: type[SimpleRateThrottle], *, methods: tuple[str, ...] = ("POST",)) -> Callable[[V], V]:
    """The same DRF throttle in front of a server-rendered view: 429 with Retry-After (plain text:
    the page's visitor reads it) for the `methods` it limits."""

    def decorator(view: V) -> V:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method in methods:
                throttle = throttle_class()
                if not throttle.allow_request(request, None):  # type: ignore[arg-type]
                    retry_after = max(1, math.ceil(throttle.wait() or 1))
                    response = HttpResponse(
                        f"Too many requests. Try again in {retry_after} seconds.", status=429,
                        content_type="text/plain; charset=utf-8",
                    )
                    response["Retry-After"] = str(retry_after)
                    return response
            result: HttpResponse = view(request, *args, **kwargs)
            return result

        return wrapper  # type: ignore[return-value]

    return decorator
