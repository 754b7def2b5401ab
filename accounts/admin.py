from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts import services
from accounts.http import signed_in_user
from accounts.models import User


class SuspendForm(forms.Form):
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3}))


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
    list_display = ["email", "name", "is_active", "is_suspended", "key_mode", "is_staff", "date_joined", "last_login"]
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
    actions = ["suspend_users", "unsuspend_users", "restore_key_mode"]

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
