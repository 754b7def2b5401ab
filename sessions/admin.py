from django.contrib import admin, messages

from sessions import services
from sessions.models import Assistant, CallEvent, Cause, ModelPrice, RealtimeCall


@admin.register(Assistant)
class AssistantAdmin(admin.ModelAdmin):
    list_display = ["name", "is_active", "model", "voice", "max_call_seconds", "allow_proxy", "allow_key",
                    "min_credits", "max_concurrent_calls", "max_starts_per_minute", "markup_percent"]
    list_filter = ["is_active", "model", "allow_proxy", "allow_key"]
    search_fields = ["name", "instructions"]
    fieldsets = (
        (None, {"fields": ("name", "is_active")}),
        ("Model", {"fields": ("model", "voice", "instructions", "tools", "max_output_tokens", "wrap_up_message")}),
        ("Limits", {"fields": ("max_call_seconds", "allow_proxy", "allow_key", "key_ttl_seconds", "min_credits",
                               "max_concurrent_calls", "max_starts_per_minute")}),
        ("Price", {"fields": ("markup_percent", "hold_microusd_per_minute")}),
    )


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = ["model", "text_in_microusd_per_mtok", "text_cached_microusd_per_mtok",
                    "text_out_microusd_per_mtok", "audio_in_microusd_per_mtok", "audio_cached_microusd_per_mtok",
                    "audio_out_microusd_per_mtok", "updated_at"]
    search_fields = ["model"]


class CallEventInline(admin.TabularInline):
    model = CallEvent
    extra = 0
    can_delete = False
    fields = ["at", "kind", "from_state", "to_state", "cause", "actor", "detail"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(RealtimeCall)
class RealtimeCallAdmin(admin.ModelAdmin):
    """Read-only: calls change only through sessions.services (the hang-up action)."""

    list_display = ["public_id", "user", "assistant", "mode", "state", "created_at", "expected_end_at",
                    "credits_held", "credits_charged", "cost_microusd", "end_reason"]
    list_filter = ["state", "mode", "assistant", ("user", admin.RelatedOnlyFieldListFilter), "end_reason", "created_at"]
    list_select_related = ["user", "assistant"]
    search_fields = ["public_id", "openai_call_id", "user__email"]
    date_hierarchy = "created_at"
    inlines = [CallEventInline]
    actions = ["hang_up_now"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Hang up now")
    def hang_up_now(self, request, queryset):
        ended = 0
        for call in queryset:
            was_open = call.is_open
            call = services.request_hangup(call=call, cause=Cause.STAFF_HANGUP, actor=request.user)
            ended += was_open
        self.message_user(request, f"Asked OpenAI to hang up {ended} call(s); the others had already ended.",
                          messages.SUCCESS)
import sessions.reconciliation.admin  # noqa: E402,F401  (registers the reconciliation admin)

# --- Supervisor (issue 6): a call's metered responses, read-only -------------------------------


class UsageRecordInline(admin.TabularInline):
    model = RealtimeCall.usage_records.rel.related_model  # UsageRecord, without another import block

    fields = ["at", "kind", "response_id", "text_in_tokens", "text_cached_tokens", "text_out_tokens",
              "audio_in_tokens", "audio_cached_tokens", "audio_out_tokens", "cost_microusd"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "metered usage (supervisor)"

    def has_add_permission(self, request, obj=None):
        return False


RealtimeCallAdmin.inlines = [*RealtimeCallAdmin.inlines, UsageRecordInline]
