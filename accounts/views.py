from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts.forms import ProfileForm
from accounts.http import AuthenticatedHttpRequest


@login_required
def account(request: AuthenticatedHttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = ProfileForm(request.POST, instance=request.user)
        if form.is_valid():
            form.save()
            messages.success(request, "Your profile was saved.")
            return redirect("account")
    else:
        form = ProfileForm(instance=request.user)
    return render(request, "accounts/account.html", {"form": form})


def suspended(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/suspended.html", status=403)
