from collections.abc import Callable
from functools import wraps
from typing import Concatenate, ParamSpec

from django.contrib import messages
from django.http import HttpResponseBase
from django.shortcuts import redirect

from accounts.http import AuthenticatedHttpRequest
from accounts.services import is_email_verified

_P = ParamSpec("_P")
_View = Callable[Concatenate[AuthenticatedHttpRequest, _P], HttpResponseBase]


def verified_email_required(view: _View[_P]) -> _View[_P]:
    """Pages for customers need a verified address. allauth enforces it at login; this covers
    accounts created another way (e.g. by staff in the admin). Goes under `login_required`."""

    @wraps(view)
    def wrapper(request: AuthenticatedHttpRequest, *args: _P.args, **kwargs: _P.kwargs) -> HttpResponseBase:
        if not is_email_verified(request.user):
            from allauth.account.models import EmailAddress

            # The email page lists this address with a "Re-send verification" button.
            EmailAddress.objects.get_or_create(
                user=request.user, email=request.user.email, defaults={"primary": True, "verified": False}
            )
            messages.warning(
                request, "Please confirm your email address first: re-send the verification link below."
            )
            return redirect("account_email")
        return view(request, *args, **kwargs)

    return wrapper
