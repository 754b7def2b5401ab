from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts.forms import LowBalanceForm, ProfileForm
from accounts.http import AuthenticatedHttpRequest
from billing import notifications
from billing.models import Wallet


@login_required
def account(request: AuthenticatedHttpRequest) -> HttpResponse:
    wallet = Wallet.objects.filter(user_id=request.user.pk).first()
    form = ProfileForm(instance=request.user)
    low_balance_form = LowBalanceForm(initial={"threshold": wallet.low_balance_threshold if wallet else None})
    if request.method == "POST" and request.POST.get("form") == "low_balance":
        low_balance_form = LowBalanceForm(request.POST)
        if low_balance_form.is_valid():
            notifications.set_low_balance_threshold(
                user_id=request.user.pk, credits=low_balance_form.cleaned_data["threshold"]
            )
            messages.success(request, "Your low-balance warning was saved.")
            return redirect("account")
    elif request.method == "POST":
        form = ProfileForm(request.POST, instance=request.user)
        if form.is_valid():
            form.save()
            messages.success(request, "Your profile was saved.")
            return redirect("account")
    default = notifications.low_balance_threshold(wallet_id=wallet.pk) if wallet else None
    return render(request, "accounts/account.html", {
        "form": form, "low_balance_form": low_balance_form, "current_threshold": default,
    })


def suspended(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/suspended.html", status=403)
