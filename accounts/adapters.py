from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from accounts.models import User


class AccountAdapter(DefaultAccountAdapter):
    def pre_login(self, request: HttpRequest, user: User, **kwargs: Any) -> HttpResponse | None:
        if getattr(user, "is_suspended", False):
            from allauth.account.internal.stagekit import clear_login

            clear_login(request)
            messages.error(request, "This account is suspended. Contact support to restore access.")
            return redirect("account_suspended")
        return super().pre_login(request, user, **kwargs)
