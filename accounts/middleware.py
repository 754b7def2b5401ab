from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect


class SuspendedUserMiddleware:
    """Ends the browser session of a user suspended while signed in, on their next request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and user.is_suspended:
            logout(request)
            messages.error(request, "This account is suspended. Contact support to restore access.")
            if request.path.startswith("/api/"):
                return self.get_response(request)
            return redirect("account_suspended")
        return self.get_response(request)
