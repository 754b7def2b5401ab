import secrets
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core import signing
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import URLPattern, path, reverse
from django.utils import timezone

import billing.services as billing
from accounts import services
from accounts.http import signed_in_user
from accounts.models import User
from billing.exceptions import BillingError
from billing.models import LedgerEntry


class SuspendForm(forms.Form):
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3}))


GRANT_TOKEN_SALT = "accounts.admin.grant-credits"
GRANT_TOKEN_MAX_AGE_SECONDS = 24 * 3600


class GrantCreditsForm(forms.Form):
    """Credits for one or more users. The hidden token is made once per form shown: it is the
    grant's idempotency key, so a double submit (or a resubmitted page) grants once."""

    credits = forms.IntegerField(min_value=1, max_value=100_000_000, help_text="Whole credits to add to each user.")
    kind = forms.ChoiceField(
        choices=[("promotional", "Promotional credits (a gift)"),
                 ("credit_refund", "Credits given back for a call that went wrong")],
        initial="promotional", required=False,
        help_text="Both are spent before bought credits; neither is taken back by a refund or dispute "
        "(docs/billing.md, “Credit grants”).",
    )
    expires_in_days = forms.IntegerField(
        min_value=1, max_value=3650, required=False, label="Expires in (days)",
        help_text="Empty: the credits never expire.",
    )
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3}),
                             help_text="Recorded in the ledger with your name.")
    show_reason_to_user = forms.BooleanField(
        required=False, label="Show the reason to the user",
        help_text="Unticked, the user's wallet reads only “Staff added N credits”.",
    )
    token = forms.CharField(widget=forms.HiddenInput)

    def __init__(self, *args: Any, staff: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.staff = staff
        if not self.is_bound:
            self.initial["token"] = signing.dumps({"staff": staff.pk, "nonce": secrets.token_hex(12)}, salt=GRANT_TOKEN_SALT)

    def clean_token(self) -> str:
        try:
            data = signing.loads(self.cleaned_data["token"], salt=GRANT_TOKEN_SALT, max_age=GRANT_TOKEN_MAX_AGE_SECONDS)
        except signing.BadSignature:
            raise forms.ValidationError("This form has expired: open it again.") from None
        if data.get("staff") != self.staff.pk:
            raise forms.ValidationError("This form was opened by another staff member.")
        return str(data["nonce"])


class KeyModeFilter(admin.SimpleListFilter):
    title = "key mode"
    parameter_name = "key_mode"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("withdrawn", "Withdrawn"), ("allowed", "Allowed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> QuerySet[User]:
        if self.value() == "withdrawn":
            return queryset.filter(key_mode_withdrawn_at__isnull=False)
        if self.value() == "allowed":
            return queryset.filter(key_mode_withdrawn_at__isnull=True)
        return queryset


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "name", "credits", "is_active", "is_suspended", "key_mode", "is_staff", "date_joined",
                    "last_login"]
    list_select_related = ["wallet"]
    change_form_template = "admin/accounts/user/change_form.html"
    list_filter = ["is_suspended", KeyModeFilter, "is_active", "is_staff", "is_superuser", "date_joined"]
    search_fields = ["email", "name"]
    # Key mode changes only through the services (withdrawn by reconciliation, restored by the action).
    readonly_fields = ["suspended_at", "key_mode_withdrawn_at", "key_mode_withdrawn_reason", "last_login", "date_joined"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("name",)}),
        ("Suspension", {"fields": ("is_suspended", "suspended_reason", "suspended_at")}),
        ("Key mode", {
            "fields": ("key_mode_withdrawn_at", "key_mode_withdrawn_reason"),
            "description": "Client secrets (key mode) are withdrawn automatically when reconciliation finds a "
            "secret used beyond the call it reported; the action “Restore key mode” gives them back. "
            "Who did what and when: the History link above.",
        }),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    actions = ["grant_credits", "suspend_users", "unsuspend_users", "restore_key_mode"]

    @admin.display(description="credits", ordering="wallet__balance")
    def credits(self, obj: User) -> str:
        wallet = getattr(obj, "wallet", None)
        return "–" if wallet is None else f"{wallet.balance:,}"

    def get_urls(self) -> list[URLPattern]:
        grant = path(
            "<int:user_id>/grant-credits/", self.admin_site.admin_view(self.grant_credits_view),
            name="accounts_user_grant_credits",
        )
        return [grant, *super().get_urls()]

    def grant_credits_view(self, request: HttpRequest, user_id: int) -> HttpResponse:
        """The "Grant credits" button of one user's page."""
        if not self.has_change_permission(request):
            return HttpResponse(status=403)
        user = get_object_or_404(User, pk=user_id)
        done = self._grant(request, User.objects.filter(pk=user.pk), single=True)
        if done is None:
            return HttpResponseRedirect(reverse("admin:accounts_user_change", args=[user.pk]))
        return done

    @admin.action(description="Grant credits (asks for an amount and a reason)")
    def grant_credits(self, request: HttpRequest, queryset: QuerySet[User]) -> HttpResponse | None:
        return self._grant(request, queryset, single=False)

    def _grant(self, request: HttpRequest, queryset: QuerySet[User], *, single: bool) -> HttpResponse | None:
        staff = signed_in_user(request)
        form = GrantCreditsForm(request.POST if "apply" in request.POST else None, staff=staff)
        if "apply" in request.POST and form.is_valid():
            nonce, credits = form.cleaned_data["token"], form.cleaned_data["credits"]
            days = form.cleaned_data["expires_in_days"]
            expires_at = timezone.now() + timedelta(days=days) if days else None
            granted: list[str] = []
            repeated: list[str] = []
            for user in queryset.order_by("pk"):
                key = f"staff-grant:{nonce}:{user.pk}"
                already = LedgerEntry.objects.filter(idempotency_key=key).exists()  # for the message only
                give = billing.credit_refund if form.cleaned_data["kind"] == "credit_refund" else billing.adjust
                try:
                    give(
                        user=user, credits=credits, actor=staff, reason=form.cleaned_data["reason"],
                        idempotency_key=key, show_reason_to_user=form.cleaned_data["show_reason_to_user"],
                        expires_at=expires_at,
                    )
                except BillingError as exc:
                    self.message_user(request, f"{user}: {exc}", messages.ERROR)
                    continue
                (repeated if already else granted).append(user.email)
            if granted:
                self.message_user(request, f"Granted {credits:,} credits to {len(granted)} user(s): {', '.join(granted)}.",
                                  messages.SUCCESS)
            if repeated:
                self.message_user(request, f"Already granted with this form, not again: {', '.join(repeated)}.",
                                  messages.WARNING)
            return None
        users = list(queryset.select_related("wallet"))
        return render(request, "admin/accounts/grant_credits.html", {
            **self.admin_site.each_context(request), "form": form, "users": users, "single": single,
            "action_checkbox_name": ACTION_CHECKBOX_NAME, "title": "Grant credits", "opts": self.model._meta,
        })

    @admin.display(description="key mode", boolean=True, ordering="key_mode_withdrawn_at")
    def key_mode(self, obj: User) -> bool:
        return obj.key_mode_withdrawn_at is None

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        # Editing the checkbox goes through the services so the timestamp and log are right.
        if change and "is_suspended" in form.changed_data:
            wants_suspended = obj.is_suspended
            obj.is_suspended = not wants_suspended
            super().save_model(request, obj, form, change)
            if wants_suspended:
                services.suspend_user(
                    user=obj, reason=obj.suspended_reason or "Suspended by staff", actor=signed_in_user(request)
                )
            else:
                services.unsuspend_user(user=obj, actor=signed_in_user(request))
            obj.refresh_from_db()
            return
        super().save_model(request, obj, form, change)

    @admin.action(description="Suspend selected users (asks for a reason)")
    def suspend_users(self, request: HttpRequest, queryset: QuerySet[User]) -> HttpResponse | None:
        if "apply" in request.POST:
            form = SuspendForm(request.POST)
            if form.is_valid():
                for user in queryset:
                    services.suspend_user(user=user, reason=form.cleaned_data["reason"], actor=signed_in_user(request))
                self.message_user(request, f"Suspended {queryset.count()} user(s).", messages.SUCCESS)
                return None
        else:
            form = SuspendForm()
        return render(
            request,
            "admin/accounts/suspend_users.html",
            {
                **self.admin_site.each_context(request),
                "form": form,
                "users": queryset,
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
                "title": "Suspend users",
                "opts": self.model._meta,
            },
        )

    @admin.action(description="Lift suspension of selected users")
    def unsuspend_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            services.unsuspend_user(user=user, actor=signed_in_user(request))
        self.message_user(request, f"Lifted suspension of {queryset.count()} user(s).", messages.SUCCESS)

    @admin.action(description="Restore key mode")
    def restore_key_mode(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        withdrawn = [user for user in queryset if user.key_mode_withdrawn_at is not None]
        for user in withdrawn:
            services.restore_key_mode(user=user, actor=signed_in_user(request))
        if withdrawn:
            self.message_user(
                request, f"Restored key mode for {len(withdrawn)} user(s): {', '.join(u.email for u in withdrawn)}.",
                messages.SUCCESS,
            )
        else:
            self.message_user(request, "None of the selected users had key mode withdrawn.", messages.INFO)
