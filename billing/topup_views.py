"""The auto top-up page (/billing/auto-top-up/): its settings, the monthly spending cap and time
zone, and saving a card through Stripe Checkout (setup mode)."""

from __future__ import annotations

import logging
from decimal import Decimal

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from accounts.decorators import verified_email_required
from accounts.http import AuthenticatedHttpRequest
from billing import services
from billing.exceptions import BillingError, StripeFailure
from billing.forms import AutoTopUpForm
from billing.models import Purchase
from billing.services import topups
from realtime_saas.throttles import CheckoutThrottle, throttle_page

logger = logging.getLogger(__name__)


@login_required
@verified_email_required
@require_http_methods(["GET", "POST"])
def auto_top_up(request: AuthenticatedHttpRequest) -> HttpResponse:
    wallet = services.get_wallet(request.user)
    if request.method == "GET" and (session_id := request.GET.get("setup_session")):
        _card_returned(request, session_id)
        return redirect("billing_auto_top_up")
    initial = {
        "enabled": wallet.auto_topup_enabled, "threshold": wallet.auto_topup_threshold,
        "pack": wallet.auto_topup_pack.key if wallet.auto_topup_pack else None,
        "monthly_limit": wallet.auto_topup_monthly_limit,
        "monthly_cap": None if wallet.monthly_cap_cents is None else Decimal(wallet.monthly_cap_cents) / 100,
        "time_zone": request.user.time_zone,
    }
    form = AutoTopUpForm(request.POST or None, wallet=wallet, initial=initial)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                topups.update_settings(user=request.user, settings=topups.TopUpSettings(
                    enabled=form.cleaned_data["enabled"], threshold=form.cleaned_data["threshold"],
                    pack=form.cleaned_data["pack"], monthly_limit=form.cleaned_data["monthly_limit"],
                    monthly_cap_cents=form.cap_cents, time_zone=form.cleaned_data["time_zone"],
                ))
            except BillingError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, "Auto top-up settings saved.")
                return redirect("billing_auto_top_up")
        status = 400
        wallet.refresh_from_db()
    cap = services.cap_status(wallet, time_zone=request.user.time_zone)
    recent = Purchase.objects.filter(user=request.user, source=Purchase.Source.AUTO_TOP_UP).select_related("pack")[:5]
    return render(request, "billing/auto_top_up.html", {
        "form": form, "wallet": wallet, "card": topups.card_label(wallet), "cap": cap,
        "top_ups_this_month": topups.top_ups_this_month(wallet, time_zone=request.user.time_zone),
        "recent": recent, "blocked_reason": wallet.blocked_reason,
    }, status=status)


def _card_returned(request: AuthenticatedHttpRequest, session_id: str) -> None:
    """Back from Stripe's setup page: save the card now if the webhook has not yet."""
    try:
        wallet = topups.save_card_from_setup(session_id=session_id)
    except StripeFailure:
        logger.warning("could not reach Stripe for setup session %s; the webhook will save the card", session_id)
        messages.info(request, "Your card is being saved; it appears here in a moment.")
        return
    if wallet is not None and wallet.user_id == request.user.pk:
        messages.success(request, f"Card saved: {topups.card_label(wallet)}.")


@login_required
@verified_email_required
@require_POST
@throttle_page(CheckoutThrottle)
def save_card(request: AuthenticatedHttpRequest) -> HttpResponse:
    """"Save a card" / "Replace card": to Stripe Checkout in setup mode."""
    page = request.build_absolute_uri(reverse("billing_auto_top_up"))
    try:
        url = topups.start_card_setup(user=request.user, success_url=page, cancel_url=page)
    except BillingError as exc:
        logger.warning("could not start a card setup for user %s: %s", request.user.pk, exc)
        messages.error(request, "The payment provider could not be reached; please try again.")
        return redirect("billing_auto_top_up")
    return redirect(url, permanent=False)
