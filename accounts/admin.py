from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.shortcuts import render

from accounts import services
from accounts.models import User


class SuspendForm(forms.Form):
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3}))


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "name", "is_active", "is_suspended", "is_staff", "date_joined", "last_login"]
    list_filter = ["is_suspended", "is_active", "is_staff", "is_superuser", "date_joined"]
    search_fields = ["email", "name"]
    readonly_fields = ["suspended_at", "last_login", "date_joined"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("name",)}),
        ("Suspension", {"fields": ("is_suspended", "suspended_reason", "suspended_at")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    actions = ["suspend_users", "unsuspend_users"]

    def save_model(self, request, obj, form, change):
        # Editing the checkbox goes through the services so the timestamp and log are right.
        if change and "is_suspended" in form.changed_data:
            wants_suspended = obj.is_suspended
            obj.is_suspended = not wants_suspended
            super().save_model(request, obj, form, change)
            if wants_suspended:
                services.suspend_user(
                    user=obj, reason=obj.suspended_reason or "Suspended by staff", actor=request.user
                )
            else:
                services.unsuspend_user(user=obj, actor=request.user)
            obj.refresh_from_db()
            return
        super().save_model(request, obj, form, change)

    @admin.action(description="Suspend selected users (asks for a reason)")
    def suspend_users(self, request, queryset):
        if "apply" in request.POST:
            form = SuspendForm(request.POST)
            if form.is_valid():
                for user in queryset:
                    services.suspend_user(user=user, reason=form.cleaned_data["reason"], actor=request.user)
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
    def unsuspend_users(self, request, queryset):
        for user in queryset:
            services.unsuspend_user(user=user, actor=request.user)
        self.message_user(request, f"Lifted suspension of {queryset.count()} user(s).", messages.SUCCESS)
