"""Assistants: the policies users may talk to, what the model is told and may do, and what a call
to it may cost and last. Their JSON fields (tools, turn detection) are validated here."""

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from sessions.models.pricing import ModelPrice

MAX_CALL_SECONDS = 3600  # OpenAI's own cap on a Realtime session (reference §5.2)
VOICES = ["alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"]
TURN_DETECTION_TYPES = ("server_vad", "semantic_vad")


def default_turn_detection() -> dict:
    """OpenAI's documented server_vad defaults (reference §1.1.1), spelled out so the policy the
    supervisor enforces is explicit: every key here is compared with what the session reports."""
    return {
        "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500,
        "idle_timeout_ms": None, "create_response": True, "interrupt_response": True,
    }


def validate_turn_detection(value) -> None:
    """A server_vad or semantic_vad object (reference §1.1.1); null would leave the user unheard."""
    if not isinstance(value, dict):
        raise ValidationError("Turn detection must be a JSON object.")
    if value.get("type") not in TURN_DETECTION_TYPES:
        raise ValidationError(f"Turn detection needs a type: one of {', '.join(TURN_DETECTION_TYPES)}.")
    allowed = {"type", "create_response", "interrupt_response"} | (
        {"threshold", "prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms"}
        if value["type"] == "server_vad" else {"eagerness"}
    )
    unknown = set(value) - allowed
    if unknown:
        raise ValidationError(f"Unknown turn detection keys for {value['type']}: {sorted(unknown)}.")


def validate_tools(value) -> None:
    """Function tools only: a name, a description and a JSON-Schema object of parameters."""
    if not isinstance(value, list):
        raise ValidationError("Tools must be a JSON list.")
    names = set()
    for index, tool in enumerate(value):
        where = f"Tool {index + 1}"
        if not isinstance(tool, dict):
            raise ValidationError(f"{where} must be a JSON object.")
        if tool.get("type") != "function":
            raise ValidationError(f'{where}: only {{"type": "function"}} tools are supported.')
        unknown = set(tool) - {"type", "name", "description", "parameters"}
        if unknown:
            raise ValidationError(f"{where}: unknown keys {sorted(unknown)}.")
        name = tool.get("name")
        if not isinstance(name, str) or not name or len(name) > 64:
            raise ValidationError(f"{where}: a name of 1–64 characters is required.")
        if name in names:
            raise ValidationError(f"{where}: the name {name!r} is used twice.")
        names.add(name)
        if not isinstance(tool.get("description", ""), str):
            raise ValidationError(f"{where}: the description must be a string.")
        params = tool.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(params, dict) or params.get("type") != "object":
            raise ValidationError(f'{where}: parameters must be a JSON Schema with "type": "object".')


class Assistant(models.Model):
    """A policy: what the model is told and may do, and what a call to it may cost and last.

    The session config sent to OpenAI is built from these fields only; nothing a browser sends
    reaches it.
    """

    name = models.CharField(max_length=100)
    is_active = models.BooleanField(default=True, db_index=True)
    model = models.CharField(max_length=64, default="gpt-realtime", help_text="Needs a row in the price table.")
    voice = models.CharField(max_length=32, default="marin", choices=[(v, v) for v in VOICES])
    instructions = models.TextField(blank=True)
    tools = models.JSONField(default=list, blank=True, validators=[validate_tools])
    max_output_tokens = models.PositiveIntegerField(
        default=1024,
        validators=[MinValueValidator(1), MaxValueValidator(4096)],
        help_text="Per response. Bounds how far one response can overshoot the hold.",
    )
    max_call_seconds = models.PositiveIntegerField(
        default=600, validators=[MinValueValidator(10), MaxValueValidator(MAX_CALL_SECONDS)]
    )
    allow_proxy = models.BooleanField("allow proxy mode", default=True)
    allow_key = models.BooleanField(
        "allow key mode", default=False, help_text="Hands the browser a short-lived client secret."
    )
    key_ttl_seconds = models.PositiveIntegerField(
        "key lifetime (seconds)", default=30, validators=[MinValueValidator(10), MaxValueValidator(60)]
    )
    min_credits = models.PositiveIntegerField(
        default=10, help_text="A call does not start unless at least this many credits can be held."
    )
    max_concurrent_calls = models.PositiveIntegerField(
        "concurrent calls per user", default=1, validators=[MinValueValidator(1)]
    )
    max_starts_per_minute = models.PositiveIntegerField(
        "call starts per minute per user", default=5, validators=[MinValueValidator(1)]
    )
    markup_percent = models.PositiveIntegerField(
        default=50, help_text="Added to the OpenAI cost before it is turned into credits."
    )
    hold_microusd_per_minute = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text="Worst-case OpenAI cost of one minute, for the hold. Empty: estimated from the price table.",
    )
    greeting = models.BooleanField(
        default=True,
        help_text="The assistant speaks first. The supervisor asks for the greeting once it watches the call.",
    )
    greeting_instructions = models.TextField(
        blank=True,
        help_text="Instructions for the greeting only (e.g. 'Greet the caller and ask how you can help'). "
        "Empty: the assistant's own instructions.",
    )
    turn_detection = models.JSONField(
        default=default_turn_detection,
        validators=[validate_turn_detection],
        help_text="Voice activity detection (OpenAI's server_vad or semantic_vad object). Calls start with it "
        "off; the supervisor turns it on once it watches the call, and reverts any change from the browser.",
    )
    wrap_up_message = models.TextField(
        blank=True,
        help_text="Told to the model (a system message over the sideband) when the call is about to be cut "
        "off. Empty: SUPERVISOR_WRAP_UP_MESSAGE, if that is set.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(max_call_seconds__gte=10, max_call_seconds__lte=MAX_CALL_SECONDS),
                name="assistant_call_length_within_openai_cap",
            ),
            models.CheckConstraint(
                condition=Q(key_ttl_seconds__gte=10, key_ttl_seconds__lte=60), name="assistant_key_ttl_10_60"
            ),
            models.CheckConstraint(
                condition=Q(allow_proxy=True) | Q(allow_key=True), name="assistant_allows_a_mode"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def modes(self) -> list[str]:
        return [m for m, allowed in (("proxy", self.allow_proxy), ("key", self.allow_key)) if allowed]

    def clean(self) -> None:
        if not (self.allow_proxy or self.allow_key):
            raise ValidationError("Allow at least one mode.")
        if self.model and not ModelPrice.objects.filter(model=self.model).exists():
            raise ValidationError({"model": f"No price for {self.model!r}: add it to the price table first."})

    def policy(self) -> dict:
        """The session this assistant allows, field by field (reference §1.1): what the supervisor
        sets over the sideband and compares every `session.updated` with (sessions/policy.py).

        Instructions and tools are always sent, empty or not: left out, OpenAI's defaults would
        apply and a browser's change could not be told from them.
        """
        return {
            "type": "realtime",
            "model": self.model,
            "instructions": self.instructions,
            "tools": list(self.tools or []),
            "output_modalities": ["audio"],
            "max_output_tokens": self.max_output_tokens,
            "audio": {"input": {"turn_detection": dict(self.turn_detection)}, "output": {"voice": self.voice}},
        }

    def session_config(self) -> dict:
        """The `session` a call is created (or a key minted) with: the policy with turn detection
        off. Nothing can happen on the call before the supervisor watches it: it turns the
        assistant's turn detection on and asks for the greeting over the sideband (DESIGN.md)."""
        config = self.policy()
        config["audio"]["input"]["turn_detection"] = None
        return config
