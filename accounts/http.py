"""Typing for requests that only signed-in users reach (the recipe django-stubs documents)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from accounts.models import User

if TYPE_CHECKING:
    from rest_framework.request import Request


class AuthenticatedHttpRequest(HttpRequest):
    """The request of a view behind `login_required`: its user is a User, never AnonymousUser.

    An annotation only: Django still builds a plain HttpRequest, and `login_required` is what
    makes the claim true."""

    user: User


def signed_in_user(request: HttpRequest | Request) -> User:
    """The user of a request that a permission already required to be signed in (DRF's default
    IsAuthenticated, the admin's staff check). Anonymous here would mean a view lost its permission:
    403, not a query for AnonymousUser's rows."""
    user = request.user
    if not isinstance(user, User):
        raise PermissionDenied("Sign in first.")
    return user
