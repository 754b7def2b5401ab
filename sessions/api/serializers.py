"""What the API shows of assistants and calls. Read-only: writes go through sessions.services."""

from rest_framework import serializers

from sessions import presenters
from sessions.models import Assistant, CallEvent, CallMode, RealtimeCall, TokenCounts


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


# The call serializers describe the API (fields, types, schema); a call is rendered by
# `sessions.presenters` (`call_payload`, `event_payload`), the same dicts the live pushes carry,
# so the API and the pushes cannot drift apart. (Comments, not docstrings: a docstring would
# become the schema's description.)


class CallEventSerializer(serializers.ModelSerializer):
    kind = serializers.CharField(
        read_only=True,
        help_text="The state entered (pending, active, ending, ended, killed, expired, failed), "
        "or hangup_sent, hangup_failed, attached.",
    )

    class Meta:
        model = CallEvent
        fields = ["at", "kind", "cause", "detail"]
        read_only_fields = fields

    def to_representation(self, event: CallEvent) -> dict:
        return presenters.event_payload(event)


class CallSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    assistant = AssistantRefSerializer(read_only=True)
    seconds_left = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="Until the expected end; null once over."
    )
    duration_seconds = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="From start to hangup (or now); null if it never started."
    )
    tokens = TokensSerializer(read_only=True)
    watched = serializers.BooleanField(
        read_only=True,
        help_text="The supervisor watches the call: it turned the assistant's turn detection on and asked "
        "for the greeting. Until then the assistant does not listen.",
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

    def to_representation(self, call: RealtimeCall) -> dict:
        return presenters.call_payload(call, events=True)


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


