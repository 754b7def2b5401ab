"""Admin for reconciliation: flags to review (with actions), imported buckets, CSV uploads."""

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from accounts.http import signed_in_user
from realtime_saas.admin import ReadOnlyAdmin, microusd_column
from sessions.reconciliation import csv_import, services
from sessions.reconciliation.models import (
    CostBucket,
    Flag,
    FlagStatus,
    ImportWatermark,
    UsageBucket,
    UsageUpload,
)


class ClawbackForm(forms.Form):
    credits = forms.IntegerField(min_value=1)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=400)


class SuspendForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=400, required=False)


@admin.register(Flag)
class FlagAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "kind",
        "severity",
        "status",
        "window_start",
        "window_end",
        "attribution",
        "model",
        "reported_tokens",
        "metered_tokens",
        "user",
        "call",
        "reviewer",
    ]
    list_filter = ["status", "kind", "severity", "attribution", "model", "window_start"]
    list_select_related = ["user", "call", "reviewer"]
    search_fields = ["natural_key", "summary", "user__email", "call__public_id", "api_key_id", "project_id"]
    date_hierarchy = "window_start"
    readonly_fields = [
        "natural_key",
        "kind",
        "severity",
        "window_start",
        "window_end",
        "project_id",
        "api_key_id",
        "model",
        "attribution",
        "call",
        "user",
        "reported_tokens",
        "metered_tokens",
        "summary",
        "evidence_pretty",
        "first_seen_at",
        "last_seen_at",
        "notified_at",
        "reviewer",
        "reviewed_at",
    ]
    fields = [
        "summary",
        "kind",
        "severity",
        "status",
        "notes",
        "window_start",
        "window_end",
        "attribution",
        "project_id",
        "api_key_id",
        "model",
        "call",
        "user",
        "reported_tokens",
        "metered_tokens",
        "evidence_pretty",
        "natural_key",
        "first_seen_at",
        "last_seen_at",
        "notified_at",
        "reviewer",
        "reviewed_at",
    ]
    actions = ["acknowledge", "resolve", "mark_false_positive", "suspend_user", "claw_back"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="evidence")
    def evidence_pretty(self, obj):
        return format_html(
            "<pre style='white-space:pre-wrap;max-height:40em;overflow:auto'>{}</pre>",
            json.dumps(obj.evidence, indent=2, sort_keys=True),
        )

    def save_model(self, request, obj, form, change):
        # Status and notes go through the service so the reviewer and time are recorded.
        if change and ({"status", "notes"} & set(form.changed_data)):
            old_notes = Flag.objects.get(pk=obj.pk).notes
            new_notes = obj.notes[len(old_notes) :] if obj.notes.startswith(old_notes) else obj.notes
            Flag.objects.filter(pk=obj.pk).update(notes=old_notes)
            services.review(flag=obj, status=obj.status, reviewer=request.user, notes=new_notes)

    def _set_status(self, request, queryset, status):
        for flag in queryset:
            services.review(flag=flag, status=status, reviewer=request.user)
        self.message_user(
            request, f"{queryset.count()} flag(s) marked {status.replace('_', ' ')}.", messages.SUCCESS
        )

    @admin.action(description="Acknowledge")
    def acknowledge(self, request, queryset):
        self._set_status(request, queryset, FlagStatus.ACKNOWLEDGED)

    @admin.action(description="Resolve")
    def resolve(self, request, queryset):
        self._set_status(request, queryset, FlagStatus.RESOLVED)

    @admin.action(description="Mark as false positive")
    def mark_false_positive(self, request, queryset):
        self._set_status(request, queryset, FlagStatus.FALSE_POSITIVE)

    def _intermediate(self, request, queryset, form_class, title, action):
        form = form_class(request.POST if "apply" in request.POST else None)
        return form, (
            None
            if form.is_bound and form.is_valid()
            else TemplateResponse(
                request,
                "reconciliation/admin_flag_action.html",
                {
                    **self.admin_site.each_context(request),
                    "title": title,
                    "form": form,
                    "flags": queryset,
                    "action": action,
                    "opts": self.model._meta,
                    "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                },
            )
        )

    @admin.action(description="Suspend the user")
    def suspend_user(self, request, queryset):
        form, page = self._intermediate(
            request, queryset, SuspendForm, "Suspend the users of these flags", "suspend_user"
        )
        if page:
            return page
        for flag in queryset:
            try:
                user = services.suspend_user(
                    flag=flag, reviewer=request.user, reason=form.cleaned_data["reason"]
                )
                self.message_user(request, f"Flag #{flag.pk}: suspended {user.email}.", messages.SUCCESS)
            except services.FlagActionError as exc:
                self.message_user(request, str(exc), messages.ERROR)
        return None

    @admin.action(description="Claw back credits (reason required)")
    def claw_back(self, request, queryset):
        form, page = self._intermediate(request, queryset, ClawbackForm, "Claw back credits", "claw_back")
        if page:
            return page
        for flag in queryset:
            try:
                services.claw_back(
                    flag=flag,
                    reviewer=request.user,
                    credits=form.cleaned_data["credits"],
                    reason=form.cleaned_data["reason"],
                )
                self.message_user(
                    request,
                    f"Flag #{flag.pk}: clawed back {form.cleaned_data['credits']:,} credits.",
                    messages.SUCCESS,
                )
            except services.FlagActionError as exc:
                self.message_user(request, f"Flag #{flag.pk}: {exc}", messages.ERROR)
        return None


@admin.register(UsageBucket)
class UsageBucketAdmin(ReadOnlyAdmin):
    list_display = [
        "start_time",
        "width_seconds",
        "project_id",
        "api_key_id",
        "model",
        "input_tokens",
        "output_tokens",
        "num_model_requests",
        "source",
    ]
    list_filter = ["source", "width_seconds", "model", "project_id"]
    search_fields = ["api_key_id", "project_id", "model"]
    date_hierarchy = "start_time"
    show_full_result_count = False


@admin.register(CostBucket)
class CostBucketAdmin(ReadOnlyAdmin):
    list_display = [
        "start_time",
        "project_id",
        "line_item",
        microusd_column("amount_microusd", description="amount"),
        "currency",
        "quantity",
        "quantity_unit",
        "source",
    ]
    list_filter = ["source", "project_id"]
    search_fields = ["line_item", "project_id"]
    date_hierarchy = "start_time"


@admin.register(ImportWatermark)
class ImportWatermarkAdmin(ReadOnlyAdmin):
    list_display = ["name", "watermark", "last_started_at", "last_finished_at", "buckets_seen", "last_error"]


class UploadForm(forms.Form):
    kind = forms.ChoiceField(choices=UsageUpload.Kind.choices)
    file = forms.FileField(help_text="A CSV exported from the OpenAI dashboard (Usage → Export).")


@admin.register(UsageUpload)
class UsageUploadAdmin(admin.ModelAdmin):
    """Adding an upload imports its rows at once: all of them, or none and one message per bad row."""

    list_display = ["uploaded_at", "kind", "file_name", "rows", "period_start", "period_end", "uploaded_by"]
    list_filter = ["kind"]
    list_select_related = ["uploaded_by"]

    def has_change_permission(self, request, obj=None):
        return False

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        errors: list[str] = []
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                result = csv_import.import_csv(
                    kind=form.cleaned_data["kind"],
                    data=upload.read(),
                    file_name=upload.name,
                    uploaded_by=signed_in_user(request),
                )
            except csv_import.CsvRejected as exc:
                errors = exc.errors
            else:
                self.message_user(
                    request, f"Imported {result.rows} row(s) from {upload.name}.", messages.SUCCESS
                )
                return HttpResponseRedirect(reverse("admin:realtime_usageupload_changelist"))
        return TemplateResponse(
            request,
            "reconciliation/admin_upload.html",
            {
                **self.admin_site.each_context(request),
                "title": "Upload an OpenAI usage or cost export",
                "form": form,
                "errors": errors,
                "opts": self.model._meta,
            },
        )
