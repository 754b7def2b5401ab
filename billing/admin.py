"""Staff views of billing. Every change goes through billing.services; the ledger is read-only."""

import secrets
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from accounts.http import signed_in_user
from billing import services, tasks
from billing.exceptions import BillingError
from billing.models import (
    BillingSettings,
    CreditGrant,
    CreditPack,
    Dispute,
    Hold,
    LedgerEntry,
    PromoCode,
    PromoRedemption,
    Purchase,
    Refund,
    StripeEvent,
    Wallet,
)
from realtime_saas.admin import ReadOnlyAdmin, cents_column

# django-stubs makes ModelAdmin and TabularInline generic in their models; Django's own classes
# cannot be subscripted at run time (without django_stubs_ext.monkeypatch(), a runtime dependency).
if TYPE_CHECKING:
    CreditPackAdminBase = admin.ModelAdmin[CreditPack]
    StripeRecordInlineBase = admin.TabularInline[Refund | Dispute, Purchase]
    PromoCodeAdminBase = admin.ModelAdmin[PromoCode]
    PromoRedemptionInlineBase = admin.TabularInline[PromoRedemption, PromoCode]
    BillingSettingsAdminBase = admin.ModelAdmin[BillingSettings]
    PromoCodeFormBase = forms.ModelForm[PromoCode]
else:
    CreditPackAdminBase = admin.ModelAdmin
    StripeRecordInlineBase = admin.TabularInline
    PromoCodeAdminBase = admin.ModelAdmin
    PromoRedemptionInlineBase = admin.TabularInline
    BillingSettingsAdminBase = admin.ModelAdmin
    PromoCodeFormBase = forms.ModelForm


@admin.register(CreditPack)
class CreditPackAdmin(CreditPackAdminBase):
    list_display = ["key", "name", "credits", cents_column("price_cents", description="price"), "active", "order",
                    "stripe_price_id"]
    list_editable = ["active", "order"]
    list_filter = ["active", "currency"]
    search_fields = ["key", "name", "stripe_price_id"]

    def has_delete_permission(self, request: HttpRequest, obj: CreditPack | None = None) -> bool:
        # Packs that were bought are history; deactivate them instead.
        return obj is None or not obj.purchases.exists()


class AdjustCreditsForm(forms.Form):
    credits = forms.IntegerField(help_text="Positive adds credits, negative removes them.")
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3}))
    show_reason_to_user = forms.BooleanField(
        required=False, label="Show the reason to the user",
        help_text="Unticked, the user's wallet reads only “Staff added/removed N credits”.",
    )
    # One token per opened form, the adjustment's idempotency key: submitting the same form twice
    # (a double click, a resent POST) adjusts once; opening the form again makes a new one.
    form_token = forms.CharField(widget=forms.HiddenInput, min_length=16, max_length=64)

    def __init__(self, data: Any = None) -> None:
        super().__init__(data, initial=None if data is not None else {"form_token": secrets.token_urlsafe(24)})

    def clean_credits(self) -> int:
        credits: int = self.cleaned_data["credits"]
        if credits == 0:
            raise forms.ValidationError("Enter a non-zero number of credits.")
        return credits


@admin.register(Wallet)
class WalletAdmin(ReadOnlyAdmin):
    list_display = ["user", "balance", "held", "open_disputes", "updated_at"]
    list_select_related = ["user"]
    search_fields = ["user__email", "stripe_customer_id"]
    actions = ["adjust_credits"]

    @admin.action(description="Adjust credits (asks for a reason)")
    def adjust_credits(self, request: HttpRequest, queryset: QuerySet[Wallet]) -> HttpResponse | None:
        form = AdjustCreditsForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            done = 0
            for wallet in queryset.select_related("user"):
                try:
                    services.adjust(
                        user=wallet.user, credits=form.cleaned_data["credits"], actor=signed_in_user(request),
                        reason=form.cleaned_data["reason"],
                        idempotency_key=f"admin-adjust:{form.cleaned_data['form_token']}:{wallet.pk}",
                        show_reason_to_user=form.cleaned_data["show_reason_to_user"],
                    )
                    done += 1
                except BillingError as exc:
                    self.message_user(request, f"{wallet.user}: {exc}", messages.ERROR)
            if done:
                self.message_user(request, f"Adjusted {done} wallet(s) by {form.cleaned_data['credits']:+,} credits.")
            return None
        return render(
            request,
            "billing/admin_adjust.html",
            {**self.admin_site.each_context(request), "form": form, "wallets": queryset.select_related("user"),
             "action": "adjust_credits", "opts": self.model._meta, "title": "Adjust credits"},
        )


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "wallet", "kind", "credits", "balance_after", "reference", "actor"]
    list_select_related = ["wallet__user", "actor"]
    list_filter = ["kind", "created_at"]
    search_fields = ["wallet__user__email", "idempotency_key", "reference", "memo"]
    date_hierarchy = "created_at"


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = ["id", "wallet", "credits", "status", "reference", "charged_credits", "created_at", "finished_at"]
    list_select_related = ["wallet__user"]
    list_filter = ["status"]
    search_fields = ["wallet__user__email", "reference", "idempotency_key"]


class _StripeRecordInline(StripeRecordInlineBase):
    """Refunds and disputes come from Stripe's events only: shown, never added or deleted here."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Purchase | None = None) -> bool:
        return False

    @admin.display(description="amount")
    def amount(self, obj: Refund | Dispute) -> str:
        return _record_amount(obj)


_record_amount = cents_column("amount_cents", description="amount", currency_field="purchase.currency")


class RefundInline(_StripeRecordInline):
    model = Refund
    fields = readonly_fields = ("stripe_refund_id", "amount", "status", "credits", "created_at")


class DisputeInline(_StripeRecordInline):
    model = Dispute
    fields = readonly_fields = ("stripe_dispute_id", "amount", "status", "is_open", "credits", "created_at", "closed_at")


@admin.register(Purchase)
class PurchaseAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "user", "pack", "credits", cents_column("amount_cents", description="amount"), "status",
                    "refunded_credits"]
    list_select_related = ["user", "pack"]
    list_filter = ["status", "source", "pack", "created_at"]
    search_fields = ["user__email", "public_id", "checkout_session_id", "payment_intent_id", "invoice_id"]
    inlines = [RefundInline, DisputeInline]
    actions = ["reconcile_with_stripe"]

    @admin.action(description="Bring up to date from Stripe")
    def reconcile_with_stripe(self, request: HttpRequest, queryset: QuerySet[Purchase]) -> None:
        for purchase in queryset.exclude(checkout_session_id=None):
            if purchase.checkout_session_id is None:  # excluded above; says so to the type checker
                continue
            try:
                updated = services.fulfil_checkout(session_id=purchase.checkout_session_id) or purchase
                self.message_user(request, f"{purchase.public_id}: {updated.get_status_display()}")
            except BillingError as exc:
                self.message_user(request, f"{purchase.public_id}: {exc}", messages.ERROR)


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    # The dead letter: filter by status "Dead" (attempts exhausted); "Retry processing" revives them.
    list_display = ["received_at", "event_id", "type", "status", "attempts", "deliveries", "note", "dead_at"]
    list_filter = ["status", "type", "livemode"]
    search_fields = ["event_id", "object_id", "last_error"]
    readonly_fields = ["event_id", "type", "livemode", "object_id", "status", "attempts", "deliveries",
                       "last_error", "note", "received_at", "processed_at", "dead_at", "payload"]
    actions = ["retry_processing"]

    @admin.action(description="Retry processing")
    def retry_processing(self, request: HttpRequest, queryset: QuerySet[StripeEvent]) -> None:
        actor = signed_in_user(request)
        retried = sum(
            services.retry_stripe_event(event=event, actor=actor, enqueue=tasks.process_stripe_event_task.delay)
            for event in queryset
        )
        skipped = queryset.count() - retried
        self.message_user(request, f"Re-enqueued {retried} event(s); {skipped} were not failed, dead or stuck.")


@admin.register(CreditGrant)
class CreditGrantAdmin(ReadOnlyAdmin):
    """Grants are made and spent by the ledger only (docs/billing.md, "Credit grants")."""

    list_display = ["id", "wallet", "category", "source", "credits", "remaining", "expires_at", "expired_at",
                    "created_at"]
    list_select_related = ["wallet__user"]
    list_filter = ["category", "source", "expires_at", "expired_at"]
    search_fields = ["wallet__user__email", "memo", "entry__idempotency_key"]


class PromoRedemptionInline(PromoRedemptionInlineBase):
    model = PromoRedemption
    extra = 0
    can_delete = False
    fields = readonly_fields = ("wallet", "grant", "created_at")

    def has_add_permission(self, request: HttpRequest, obj: PromoCode | None = None) -> bool:
        return False


class PromoCodeForm(PromoCodeFormBase):
    class Meta:
        model = PromoCode
        fields = ["code", "credits", "grant_expires_days", "valid_until", "max_redemptions", "active", "memo"]

    def clean_code(self) -> str:
        code = services.normalise_code(self.cleaned_data["code"])
        if not code:
            raise forms.ValidationError("Enter a code.")
        if PromoCode.objects.filter(code=code).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(f"There is already a code {code} (codes ignore case).")
        return code


@admin.register(PromoCode)
class PromoCodeAdmin(PromoCodeAdminBase):
    """Codes users redeem on the wallet page for promotional credits. Redemptions are counted by
    the redemption itself (under the code's lock), never edited here."""

    form = PromoCodeForm
    list_display = ["code", "credits", "grant_expires_days", "valid_until", "times_redeemed", "max_redemptions",
                    "active"]
    list_filter = ["active"]
    search_fields = ["code", "memo"]
    readonly_fields = ["times_redeemed", "created_at"]
    inlines = [PromoRedemptionInline]

    def save_model(self, request: HttpRequest, obj: PromoCode, form: PromoCodeFormBase, change: bool) -> None:
        # An edit writes the form's fields only: the row was read before the form was saved, and
        # writing back the `times_redeemed` read then would undo a redemption committed meanwhile
        # (the code could then be redeemed past `max_redemptions`).
        if change:
            obj.save(update_fields=PromoCodeForm.Meta.fields)
        else:
            obj.save()

    def has_delete_permission(self, request: HttpRequest, obj: PromoCode | None = None) -> bool:
        # A redeemed code is history; deactivate it instead.
        return obj is None or not obj.redemptions.exists()


@admin.register(BillingSettings)
class BillingSettingsAdmin(BillingSettingsAdminBase):
    """One row (pk 1): the list opens it."""

    fields = ["signup_bonus_credits", "signup_bonus_expires_days", "paid_credits_expire_days", "updated_at"]
    readonly_fields = ["updated_at"]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        row = BillingSettings.load()
        return HttpResponseRedirect(reverse("admin:billing_billingsettings_change", args=[row.pk]))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: BillingSettings | None = None) -> bool:
        return False
