"""Pages: buy credits, checkout success, purchase history, wallet; and the Stripe webhook."""

import logging
from typing import TypedDict
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.formats import date_format
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import verified_email_required
from accounts.http import AuthenticatedHttpRequest
from accounts.models import User
from billing import services, stripe_client, tasks
from billing.exceptions import BillingError, InvalidWebhook, StripeFailure, UnknownPack
from billing.models import CreditGrant, CreditPack, Hold, LedgerEntry, Purchase, Wallet
from realtime_saas.throttles import CheckoutThrottle, PromoCodeThrottle, throttle_page

logger = logging.getLogger(__name__)


class WalletContext(TypedDict):
    wallet: Wallet
    blocked_reason: str


def _wallet_context(user: User) -> WalletContext:
    wallet = services.get_wallet(user)
    return {"wallet": wallet, "blocked_reason": wallet.blocked_reason}


@login_required
@verified_email_required
@require_http_methods(["GET", "POST"])
@throttle_page(CheckoutThrottle)
def buy_credits(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The packs on sale; POST names one pack (nothing else is read) and goes to Stripe Checkout."""
    if request.method == "POST":
        try:
            purchase = services.start_checkout(
                user=request.user,
                pack_key=request.POST.get("pack", ""),
                success_url=request.build_absolute_uri(reverse("billing_success")),
                cancel_url=request.build_absolute_uri(reverse("buy_credits")) + "?canceled=1",
                save_card=request.POST.get("save_card") == "1",
            )
        except UnknownPack as exc:
            messages.error(request, str(exc))
            return redirect("buy_credits")
        except StripeFailure:
            logger.exception("could not start a checkout for user %s", request.user.pk)
            messages.error(request, "The payment provider could not be reached. Nothing was charged; please try again.")
            return redirect("buy_credits")
        except BillingError as exc:
            messages.error(request, str(exc))
            return redirect("buy_credits")
        return redirect(purchase.checkout_url, permanent=False)
    if request.GET.get("canceled"):
        _cancel_returned_checkout(request)
    packs = CreditPack.objects.filter(active=True)
    return render(request, "billing/buy.html", {
        "packs": packs, "prices_before_tax": settings.STRIPE_AUTOMATIC_TAX, **_wallet_context(request.user),
    })


def _cancel_returned_checkout(request: AuthenticatedHttpRequest) -> None:
    """The buyer came back by Stripe's cancel link: that purchase becomes Canceled."""
    public_id = request.GET.get("purchase", "")
    try:
        UUID(public_id)
    except ValueError:
        messages.info(request, "Checkout canceled. Nothing was charged.")
        return
    try:
        purchase = services.cancel_checkout(user=request.user, public_id=public_id)
    except StripeFailure:
        logger.warning("could not reach Stripe to cancel purchase %s; the expiry sweep will", public_id)
        purchase = Purchase.objects.filter(public_id=public_id, user=request.user).first()
    if purchase is not None and purchase.status == Purchase.Status.PAID:
        messages.success(request, f"That checkout was paid after all: {purchase.status_message}")
    else:
        messages.info(request, "Checkout canceled. Nothing was charged.")


@login_required
@require_GET
@throttle_page(CheckoutThrottle, methods=("GET",))
def checkout_success(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Where Stripe sends the buyer back. Brings the purchase up to date (the webhook may be late);
    shows only the signed-in user's own purchase."""
    session_id = request.GET.get("session_id", "")
    purchase = Purchase.objects.filter(checkout_session_id=session_id, user=request.user).first() if session_id else None
    if purchase is None:
        raise Http404("No purchase of yours matches this checkout.")
    if purchase.credited_at is None:
        try:
            purchase = services.fulfil_checkout(session_id=session_id) or purchase
        except StripeFailure:
            logger.warning("success page could not reach Stripe for %s; the webhook will finish it", session_id)
    return render(request, "billing/success.html", {"purchase": purchase, **_wallet_context(request.user)})


@login_required
@require_GET
def purchase_status(request: AuthenticatedHttpRequest, public_id: UUID) -> JsonResponse:
    """JSON for the success page's live updates."""
    purchase = get_object_or_404(Purchase, public_id=public_id, user=request.user)
    wallet = services.get_wallet(request.user)
    return JsonResponse(
        {
            "status": purchase.status,
            "status_display": purchase.get_status_display(),
            "badge": purchase.badge,
            "message": purchase.status_message,
            "credits": purchase.credits,
            "credited": purchase.credited_at is not None,
            "balance": services.balance_payload(wallet),
        }
    )


@login_required
@verified_email_required
@require_GET
def purchase_history(request: AuthenticatedHttpRequest) -> HttpResponse:
    purchases = Purchase.objects.filter(user=request.user).select_related("pack")
    page = Paginator(purchases, 20).get_page(request.GET.get("page"))
    return render(request, "billing/purchases.html", {"page": page, **_wallet_context(request.user)})


@login_required
@verified_email_required
@require_GET
def wallet(request: AuthenticatedHttpRequest) -> HttpResponse:
    return _wallet_page(request)


def _wallet_page(request: AuthenticatedHttpRequest, *, status: int = 200) -> HttpResponse:
    context = _wallet_context(request.user)
    entries = LedgerEntry.objects.filter(wallet=context["wallet"])
    page = Paginator(entries, 25).get_page(request.GET.get("page"))
    holds = Hold.objects.filter(wallet=context["wallet"], status=Hold.Status.ACTIVE)
    grants = _grants_shown(context["wallet"])
    return render(request, "billing/wallet.html", {"page": page, "holds": holds, "grants": grants, **context},
                  status=status)


def _grants_shown(wallet: Wallet) -> list[CreditGrant]:
    """The wallet's grants for its page: those with credits left in spending order (what is spent
    next comes first), then the latest ten used up or expired."""
    left = list(services.spending_order(CreditGrant.objects.filter(wallet=wallet, remaining__gt=0))[:50])
    done = list(CreditGrant.objects.filter(wallet=wallet, remaining=0).order_by("-id")[:10])
    return left + done


@login_required
@verified_email_required
@require_POST
@throttle_page(PromoCodeThrottle)
def redeem_code(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The wallet page's "Redeem a code" form: a promo code's credits, or the reason it gives none
    (400 with the wallet page and the message, nothing written)."""
    try:
        grant = services.redeem_promo_code(user=request.user, code=request.POST.get("code", ""))
    except services.PromoCodeRefused as exc:
        messages.error(request, exc.message)
        return _wallet_page(request, status=400)
    expiry = f", to use by {date_format(grant.expires_at, 'j F Y')}" if grant.expires_at else ""
    messages.success(request, f"Code redeemed: {grant.credits:,} credits added{expiry}.")
    return redirect("billing_wallet")


@csrf_exempt  # Stripe cannot send a CSRF token; the HMAC signature replaces it
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Verify, store (unique by event id), enqueue on commit, answer 2xx fast."""
    try:
        event = stripe_client.construct_event(payload=request.body, sig_header=request.headers.get("Stripe-Signature"))
    except InvalidWebhook as exc:
        logger.warning("rejected a Stripe webhook: %s", exc)
        return HttpResponseBadRequest(f"Invalid Stripe webhook: {exc}", content_type="text/plain")
    row, created = services.receive_stripe_event(event=event, enqueue=tasks.process_stripe_event_task.delay)
    if not created:
        return HttpResponse(f"Duplicate of {row.event_id}; already {row.status}.", status=200)
    return HttpResponse("Received.", status=200)
