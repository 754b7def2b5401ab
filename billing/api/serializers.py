from typing import Any

from django.conf import settings
from rest_framework import serializers

from billing.models import CreditGrant, CreditPack, LedgerEntry, Purchase, Wallet
from billing.templatetags.grants import grant_expiry, grant_kind


class WalletSerializer(serializers.ModelSerializer[Wallet]):
    available = serializers.IntegerField(read_only=True)
    blocked_reason = serializers.CharField(read_only=True)

    class Meta:
        model = Wallet
        fields = ["balance", "held", "available", "blocked_reason"]


class LedgerEntrySerializer(serializers.ModelSerializer[LedgerEntry]):
    explanation = serializers.CharField(source="explain", read_only=True)

    class Meta:
        model = LedgerEntry
        fields = ["id", "created_at", "kind", "credits", "balance_after", "reference", "explanation"]


class CreditPackSerializer(serializers.ModelSerializer[CreditPack]):
    price_before_tax = serializers.SerializerMethodField(
        help_text="True when tax is added to price_cents at checkout (STRIPE_AUTOMATIC_TAX)."
    )

    class Meta:
        model = CreditPack
        fields = ["key", "name", "credits", "price_cents", "currency", "price_before_tax"]

    def get_price_before_tax(self, pack: CreditPack) -> bool:
        return bool(settings.STRIPE_AUTOMATIC_TAX)


class PurchaseSerializer(serializers.ModelSerializer[Purchase]):
    id = serializers.UUIDField(source="public_id", read_only=True)
    pack = serializers.CharField(source="pack.key", read_only=True)
    message = serializers.CharField(source="status_message", read_only=True)

    class Meta:
        model = Purchase
        fields = ["id", "created_at", "pack", "credits", "amount_cents", "currency", "status", "message",
                  "refunded_credits", "subtotal_cents", "discount_cents", "tax_cents", "invoice_url", "invoice_pdf"]


class CheckoutInputSerializer(serializers.Serializer[dict[str, Any]]):
    """Only a pack key: price, credits and quantity always come from the server."""

    pack = serializers.SlugField(max_length=40)


class CheckoutOutputSerializer(serializers.Serializer[dict[str, Any]]):
    purchase_id = serializers.UUIDField()
    checkout_url = serializers.URLField()


class CreditGrantSerializer(serializers.ModelSerializer[CreditGrant]):
    """A credit grant (docs/billing.md, "Credit grants"), with the wallet page's words."""

    kind = serializers.SerializerMethodField(help_text="What the credits are, as the wallet page says.")
    expiry = serializers.SerializerMethodField(help_text="\"expires in 12 days\", \"expired\" or \"never\".")

    class Meta:
        model = CreditGrant
        fields = ["id", "created_at", "category", "source", "kind", "credits", "remaining", "expires_at", "expired_at",
                  "expiry"]

    def get_kind(self, grant: CreditGrant) -> str:
        return grant_kind(grant)

    def get_expiry(self, grant: CreditGrant) -> str:
        return grant_expiry(grant)


class RedeemCodeInputSerializer(serializers.Serializer[dict[str, Any]]):
    code = serializers.CharField(max_length=40, help_text="A promo code; case and surrounding spaces are ignored.")
