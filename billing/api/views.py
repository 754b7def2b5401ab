from django.db.models import Case, F, QuerySet, Value, When
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.http import signed_in_user
from billing import services
from billing.api.serializers import (
    CheckoutInputSerializer,
    CheckoutOutputSerializer,
    CreditGrantSerializer,
    CreditPackSerializer,
    LedgerEntrySerializer,
    PurchaseSerializer,
    RedeemCodeInputSerializer,
    WalletSerializer,
)
from billing.exceptions import PaymentsNotConfigured, SpendingCapExceeded, StripeFailure, UnknownPack
from billing.models import CreditGrant, CreditPack, LedgerEntry, Purchase, Wallet
from realtime_saas.throttles import CheckoutThrottle, PromoCodeThrottle


class PaymentProviderUnavailable(APIException):
    status_code = 503
    default_detail = "The payment provider could not be reached. Nothing was charged; try again."
    default_code = "payment_provider_unavailable"


class SpendingCapReached(APIException):
    """A purchase the user's monthly spending cap refuses (the detail says by how much)."""

    status_code = 403
    default_code = "spending_cap"


class WalletView(generics.RetrieveAPIView[Wallet]):
    serializer_class = WalletSerializer

    def get_object(self) -> Wallet:
        return services.get_wallet(signed_in_user(self.request))


class LedgerView(generics.ListAPIView[LedgerEntry]):
    serializer_class = LedgerEntrySerializer

    def get_queryset(self) -> QuerySet[LedgerEntry]:
        return LedgerEntry.objects.filter(wallet__user=signed_in_user(self.request))


class PackListView(generics.ListAPIView[CreditPack]):
    serializer_class = CreditPackSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[CreditPack]:
        return CreditPack.objects.filter(active=True)


class PurchaseListView(generics.ListAPIView[Purchase]):
    serializer_class = PurchaseSerializer

    def get_queryset(self) -> QuerySet[Purchase]:
        return Purchase.objects.filter(user=signed_in_user(self.request)).select_related("pack")


class CheckoutView(APIView):
    """Start buying a pack: returns the Stripe Checkout URL to send the browser to."""

    throttle_classes = [CheckoutThrottle]

    @extend_schema(request=CheckoutInputSerializer, responses={201: CheckoutOutputSerializer})
    def post(self, request: Request) -> Response:
        data = CheckoutInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            purchase = services.start_checkout(
                user=signed_in_user(request),
                pack_key=data.validated_data["pack"],
                success_url=request.build_absolute_uri(reverse("billing_success")),
                cancel_url=request.build_absolute_uri(reverse("buy_credits")) + "?canceled=1",
            )
        except UnknownPack as exc:
            raise ValidationError({"pack": [str(exc)]}) from exc
        except SpendingCapExceeded as exc:
            raise SpendingCapReached(str(exc)) from exc
        except (StripeFailure, PaymentsNotConfigured) as exc:
            raise PaymentProviderUnavailable() from exc
        out = CheckoutOutputSerializer({"purchase_id": purchase.public_id, "checkout_url": purchase.checkout_url})
        return Response(out.data, status=status.HTTP_201_CREATED)


class PromoCodeRefusedError(APIException):
    """A promo code that gives nothing; the detail says why (no such code, inactive, expired, used
    up, already redeemed by you)."""

    status_code = 400
    default_code = "promo_code_refused"


class GrantListView(generics.ListAPIView[CreditGrant]):
    """The wallet's credit grants: those with credits left first, in spending order (spent next
    first), then the used up and expired ones."""

    serializer_class = CreditGrantSerializer

    def get_queryset(self) -> QuerySet[CreditGrant]:
        grants = CreditGrant.objects.filter(wallet__user=signed_in_user(self.request))
        used_up = Case(When(remaining__gt=0, then=Value(0)), default=Value(1))
        return grants.order_by(used_up, F("expires_at").asc(nulls_last=True), "spend_rank", "id")


class RedeemCodeView(APIView):
    """Redeem a promo code for promotional credits, as the wallet page's form does."""

    throttle_classes = [PromoCodeThrottle]

    @extend_schema(request=RedeemCodeInputSerializer, responses={201: CreditGrantSerializer})
    def post(self, request: Request) -> Response:
        data = RedeemCodeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            grant = services.redeem_promo_code(user=signed_in_user(request), code=data.validated_data["code"])
        except services.PromoCodeRefused as exc:
            raise PromoCodeRefusedError(exc.message) from exc
        return Response(CreditGrantSerializer(grant).data, status=status.HTTP_201_CREATED)
