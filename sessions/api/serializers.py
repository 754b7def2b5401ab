"""What the API (and the live `call` push) shows of assistants and calls. Read-only: writes go
through sessions.services."""

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from sessions.models import Assistant, CallEvent, CallMode, CallState, RealtimeCall, TokenCounts


class AssistantSerializer(serializers.ModelSerializer):
    modes = serializers.ListField(child=serializers.ChoiceField(choices=CallMode.choices), read_only=True)

    class Meta:
        model = Assistant
        fields = ["id", "name", "model", "voice", "max_call_seconds", "modes", "min_credits"]
        read_only_fields = fields


class AssistantRefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Assistant
        fields = ["id", "name"]
        read_only_fields = fields


class TokensSerializer(serializers.Serializer):
    """Tokens per billed class; `*_in` excludes the cached tokens counted in `*_cached`."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {name: serializers.IntegerField() for name in TokenCounts.CLASSES}


class CallEventSerializer(serializers.ModelSerializer):
    kind = serializers.SerializerMethodField(
        help_text="The state entered (pending, active, ending, ended, killed, expired, failed), "
        "or hangup_sent, hangup_failed, attached."
    )

    class Meta:
        model = CallEvent
        fields = ["at", "kind", "cause", "detail"]
        read_only_fields = fields

    def get_kind(self, event: CallEvent) -> str:
        return event.to_state if event.kind == CallEvent.Kind.STATE else event.kind


class CallSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    assistant = AssistantRefSerializer(read_only=True)
    seconds_left = serializers.SerializerMethodField(help_text="Until the expected end; null once over.")
    duration_seconds = serializers.SerializerMethodField(help_text="From start to hangup (or now); null if it never started.")
    tokens = serializers.SerializerMethodField()
    watched = serializers.SerializerMethodField(
        help_text="The supervisor watches the call: it turned the assistant's turn detection on and asked "
        "for the greeting. Until then the assistant does not listen."
    )
    events = CallEventSerializer(many=True, read_only=True)

    class Meta:
        model = RealtimeCall
        fields = [
            "id", "assistant", "mode", "state", "created_at", "started_at", "ended_at", "expected_end_at",
            "seconds_left", "duration_seconds", "credits_held", "credits_used", "credits_charged", "cost_microusd",
            "tokens", "watched", "partial_hold",
            "end_reason", "events",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.INT)
    def get_seconds_left(self, call: RealtimeCall) -> int | None:
        if call.state not in (CallState.PENDING, CallState.ACTIVE):
            return None
        left = (call.expected_end_at - timezone.now()).total_seconds()
        return int(left) if left > 0 else None

    @extend_schema_field(OpenApiTypes.INT)
    def get_duration_seconds(self, call: RealtimeCall) -> int | None:
        if call.started_at is None:
            return None
        end = call.ending_at or call.ended_at or timezone.now()
        return max(int((end - call.started_at).total_seconds()), 0)

    @extend_schema_field(TokensSerializer)
    def get_tokens(self, call: RealtimeCall) -> dict[str, int]:
        return call.tokens.as_dict()

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_watched(self, call: RealtimeCall) -> bool:
        return call.metered_at is not None


class ClientSecretRequestSerializer(serializers.Serializer):
    assistant = serializers.IntegerField(help_text="An active assistant's id that allows key mode.")


class ClientSecretSerializer(serializers.Serializer):
    call = serializers.CharField(help_text="Our call id: report OpenAI's call id to /api/calls/{id}/attach.")
    client_secret = serializers.CharField(help_text="The ephemeral key (ek_…). Shown once, never stored.")
    expires_at = serializers.IntegerField(help_text="Unix seconds: calls must start before this.")
    model = serializers.CharField()
    calls_url = serializers.CharField(help_text="POST the SDP offer here with the client secret as Bearer.")


class AttachRequestSerializer(serializers.Serializer):
    call_id = serializers.RegexField(r"^rtc_[A-Za-z0-9_]{4,90}$", help_text="OpenAI's call id (rtc_…).")


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    error = ErrorBodySerializer()
    detail = serializers.CharField(help_text="The same message, where DRF clients look for it.")



_datetime = serializers.DateTimeField()


def call_figures(call: RealtimeCall) -> dict:
    """`CallSerializer(call).data` without `events`, built from the instance in hand.

    For the live push of a state change on a hot path (a call start): no query for the events and
    none of the serializer's per-instance field building. tests/sessions keeps the two in step.
    """

    def when(value):
        return _datetime.to_representation(value) if value is not None else None

    serializer = CallSerializer
    return {
        "id": call.public_id,
        "assistant": {"id": call.assistant_id, "name": call.assistant.name},
        "mode": call.mode,
        "state": call.state,
        "created_at": when(call.created_at),
        "started_at": when(call.started_at),
        "ended_at": when(call.ended_at),
        "expected_end_at": when(call.expected_end_at),
        "seconds_left": serializer.get_seconds_left(None, call),
        "duration_seconds": serializer.get_duration_seconds(None, call),
        "credits_held": call.credits_held,
        "credits_used": call.credits_used,
        "credits_charged": call.credits_charged,
        "cost_microusd": call.cost_microusd,
        "tokens": call.tokens.as_dict(),
        "watched": serializer.get_watched(None, call),
        "partial_hold": call.partial_hold,
        "end_reason": call.end_reason,
    }
