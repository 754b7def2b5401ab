import copy

from django.contrib import admin, messages
from django.urls import reverse

from realtime_saas.admin import microusd_column, microusd_per_mtok_column
from sessions import exceptions as errors
from sessions import services
from sessions.models import (
    MAX_CALL_SECONDS,
    Assistant,
    CallEvent,
    Cause,
    ModelPrice,
    RealtimeCall,
    TokenCounts,
)

# plan_hold sizes a hold from what the user can afford; here the question is the full worst case.
_UNLIMITED_CREDITS = 10**15


def _duration(seconds: int) -> str:
    minutes, rest = divmod(seconds, 60)
    if not minutes:
        return f"{rest} s"
    return f"{minutes} min" + (f" {rest} s" if rest else "")


@admin.register(Assistant)
class AssistantAdmin(admin.ModelAdmin):
    list_display = ["name", "is_active", "model", "voice", "max_call_seconds", "allow_proxy", "allow_key",
                    "min_credits", "max_concurrent_calls", "max_starts_per_minute", "markup_percent"]
    list_filter = ["is_active", "model", "allow_proxy", "allow_key"]
    search_fields = ["name", "instructions"]
    fieldsets = (
        (None, {"fields": ("name", "is_active")}),
        ("Model", {"fields": ("model", "voice", "instructions", "tools", "max_output_tokens", "turn_detection",
                              "greeting", "greeting_instructions", "wrap_up_message")}),
        ("Limits", {"fields": ("max_call_seconds", "allow_proxy", "allow_key", "key_ttl_seconds", "key_mode_exposure",
                               "min_credits", "max_concurrent_calls", "max_starts_per_minute")}),
        ("Price", {"fields": ("markup_percent", "hold_microusd_per_minute")}),
    )
    readonly_fields = ["key_mode_exposure"]

    @admin.display(description="what a leaked key can do")
    def key_mode_exposure(self, obj) -> str:
        """Key mode's risk in credits, from the saved policy: the hold's own sizing (plan_hold) at the
        assistant's maximum length, and at OpenAI's session cap for a call nobody can hang up."""
        if obj is None or obj.pk is None:
            return "Shown once the assistant is saved."
        capped = copy.copy(obj)
        capped.max_call_seconds = MAX_CALL_SECONDS
        try:
            per_call = services.plan_hold(assistant=obj, available=_UNLIMITED_CREDITS).full_credits
            per_session = services.plan_hold(assistant=capped, available=_UNLIMITED_CREDITS).full_credits
        except errors.CallError as exc:
            return exc.message
        return (
            ("Key mode is off. If it were on: " if not obj.allow_key else "Key mode: ")
            + f"a leaked secret can start any number of calls for {_duration(obj.key_ttl_seconds)}; each reported "
            f"call can last up to {_duration(obj.max_call_seconds)} and cost up to ≈ {per_call:,} credits at the "
            f"worst-case rate (${services.worst_case_microusd_per_minute(obj) / 1e6:,.4f} a minute at OpenAI, "
            f"+{obj.markup_percent} %). A call that is never reported cannot be hung up by us: it can run to "
            f"OpenAI's {_duration(MAX_CALL_SECONDS)} cap, ≈ {per_session:,} credits. The hold covers one call; "
            "reconciliation charges what the others used within the window and withdraws key mode."
        )


_openai_cost = microusd_column("cost_microusd", description="OpenAI cost")


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    # Kept in µ$ per million tokens; listed in dollars per million tokens.
    list_display = ["model", *(
        microusd_per_mtok_column(f"{kind}_microusd_per_mtok", description=kind.replace("_", " "))
        for kind in ("text_in", "text_cached", "text_out", "audio_in", "audio_cached", "audio_out")
    ), "updated_at"]
    search_fields = ["model"]


class CallEventInline(admin.TabularInline):
    model = CallEvent
    extra = 0
    can_delete = False
    # A tuple: the stubs type `fields` and `readonly_fields` differently, and a list fits only one.
    fields = readonly_fields = ("at", "kind", "from_state", "to_state", "cause", "actor", "detail")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(RealtimeCall)
class RealtimeCallAdmin(admin.ModelAdmin):
    """Read-only: calls change only through sessions.services (the hang-up action)."""

    list_display = ["public_id", "user", "assistant", "mode", "state", "created_at", "expected_end_at",
                    "credits_held", "credits_charged", microusd_column("cost_microusd", description="OpenAI cost"),
                    "end_reason"]
    list_filter = ["state", "mode", "assistant", ("user", admin.RelatedOnlyFieldListFilter), "end_reason", "created_at"]
    list_select_related = ["user", "assistant"]
    search_fields = ["public_id", "openai_call_id", "user__email"]
    date_hierarchy = "created_at"
    inlines = [CallEventInline]
    actions = ["hang_up_now"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def view_on_site(self, obj):
        # The admin's "View on site" opens the staff call page (timeline, cost, markup).
        return reverse("staff_call_detail", args=[obj.public_id])

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

    # A tuple: the stubs type `fields` and `readonly_fields` differently, and a list fits only one.
    fields = readonly_fields = (
        "at", "kind", "response_id", *(f"{name}_tokens" for name in TokenCounts.CLASSES), "cost"
    )
    extra = 0
    can_delete = False
    verbose_name_plural = "metered usage (supervisor)"

    @admin.display(description="OpenAI cost")
    def cost(self, obj):
        return _openai_cost(obj)

    def has_add_permission(self, request, obj=None):
        return False


RealtimeCallAdmin.inlines = [*RealtimeCallAdmin.inlines, UsageRecordInline]
