from typing import Any

from django.conf import settings
from rest_framework import serializers

from billing.models import CreditPack, LedgerEntry, Purchase, Wallet


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
