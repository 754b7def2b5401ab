"""Realtime calls: the policies users may talk to, what OpenAI tokens cost, and each call we start.

Money is integers with the unit in the name. Prices are micro-dollars per *million* tokens
(``*_microusd_per_mtok``): OpenAI quotes cached tokens at $0.06–$0.40 per million, i.e. fractions of
a micro-dollar per token, which an integer per token cannot hold.

A call's state only moves through ``sessions.services`` (a conditional UPDATE plus a ``CallEvent``),
never by saving the row.
"""

import secrets
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

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


@dataclass(frozen=True)
class TokenCounts:
    """Tokens per billed class. `*_in` excludes cached tokens, which are counted in `*_cached`."""

    text_in: int = 0
    text_cached: int = 0
    text_out: int = 0
    audio_in: int = 0
    audio_cached: int = 0
    audio_out: int = 0

    CLASSES = ("text_in", "text_cached", "text_out", "audio_in", "audio_cached", "audio_out")

    @classmethod
    def from_usage(cls, usage: dict) -> "TokenCounts":
        """From a `response.done` usage block (reference §5): OpenAI's input counts include cached."""
        inp = usage.get("input_token_details") or {}
        cached = inp.get("cached_tokens_details") or {}
        out = usage.get("output_token_details") or {}
        text_cached = int(cached.get("text_tokens") or 0)
        audio_cached = int(cached.get("audio_tokens") or 0)
        return cls(
            text_in=max(int(inp.get("text_tokens") or 0) - text_cached, 0),
            text_cached=text_cached,
            text_out=int(out.get("text_tokens") or 0),
            audio_in=max(int(inp.get("audio_tokens") or 0) - audio_cached, 0),
            audio_cached=audio_cached,
            audio_out=int(out.get("audio_tokens") or 0),
        )

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.CLASSES}


# A rough worst case for one minute of conversation, used only to size holds when an assistant
# sets no explicit rate: user audio ≈ 600 tokens/min, assistant audio ≈ 1,200 tokens/min
# (reference §5.1), and the whole conversation re-read as uncached input several times a minute.
WORST_CASE_TOKENS_PER_MINUTE = TokenCounts(text_in=2_000, audio_in=6_000, text_out=300, audio_out=1_200)


class ModelPrice(models.Model):
    """OpenAI's price of one model, per token class, in micro-dollars per million tokens."""

    model = models.CharField(max_length=64, unique=True)
    text_in_microusd_per_mtok = models.PositiveBigIntegerField()
    text_cached_microusd_per_mtok = models.PositiveBigIntegerField()
    text_out_microusd_per_mtok = models.PositiveBigIntegerField()
    audio_in_microusd_per_mtok = models.PositiveBigIntegerField()
    audio_cached_microusd_per_mtok = models.PositiveBigIntegerField()
    audio_out_microusd_per_mtok = models.PositiveBigIntegerField()
    source = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model"]

    def __str__(self) -> str:
        return self.model

    def price_of(self, token_class: str) -> int:
        return getattr(self, f"{token_class}_microusd_per_mtok")

    def cost_microusd(self, tokens: TokenCounts) -> int:
        """Cost of `tokens`, rounded up to a whole micro-dollar (we never undercharge)."""
        total = sum(getattr(tokens, name) * self.price_of(name) for name in TokenCounts.CLASSES)
        return -(-total // 1_000_000)


def credits_for_cost(cost_microusd: int, *, markup_percent: int) -> int:
    """Credits for an OpenAI cost: plus the markup, at REALTIME_CREDITS_PER_USD, rounded up."""
    numerator = cost_microusd * (100 + markup_percent) * settings.REALTIME_CREDITS_PER_USD
    return -(-numerator // (100 * 1_000_000))


def new_public_id() -> str:
    return "call_" + secrets.token_hex(12)


class CallState(models.TextChoices):
    PENDING = "pending", "pending"  # hold taken, upstream not yet answered
    ACTIVE = "active", "active"  # the call (or key-mode window) exists
    ENDING = "ending", "ending"  # hangup sent, not yet settled
    ENDED = "ended", "ended"  # ended by the user or by itself, settled
    KILLED = "killed", "killed"  # cut off by us: staff, credits or time ran out, suspension
    EXPIRED = "expired", "expired"  # nobody metered it; settled at its full hold by the sweep
    FAILED = "failed", "failed"  # never started; hold released


OPEN_STATES = (CallState.PENDING, CallState.ACTIVE, CallState.ENDING)
FINAL_STATES = (CallState.ENDED, CallState.KILLED, CallState.EXPIRED, CallState.FAILED)
# Calls that count against an assistant's concurrency limit (an `ending` call is already over for
# the user; its hold stays until it settles).
LIVE_STATES = (CallState.PENDING, CallState.ACTIVE)

TRANSITIONS: dict[str, tuple[str, ...]] = {
    CallState.PENDING: (CallState.ACTIVE, CallState.ENDING, CallState.FAILED, CallState.EXPIRED),
    CallState.ACTIVE: (CallState.ENDING, CallState.ENDED, CallState.KILLED, CallState.EXPIRED),
    CallState.ENDING: (CallState.ENDED, CallState.KILLED, CallState.EXPIRED),
}


def sources_of(target: str) -> list[str]:
    """States from which `target` may be entered."""
    return [state for state, targets in TRANSITIONS.items() if target in targets]


class CallMode(models.TextChoices):
    PROXY = "proxy", "proxy"
    KEY = "key", "key"


class Cause(models.TextChoices):
    """Who or what caused a transition; a final one is also the call's end reason."""

    STARTED = "started", "started by the user"
    MINTED = "minted", "client secret minted"
    UPSTREAM_ANSWERED = "upstream_answered", "OpenAI answered"
    USER_HANGUP = "user_hangup", "hung up by the user"
    STAFF_HANGUP = "staff_hangup", "hung up by staff"
    CREDITS_EXHAUSTED = "credits_exhausted", "credits ran out"
    TIME_LIMIT = "time_limit", "maximum length reached"
    USER_SUSPENDED = "user_suspended", "account suspended"
    CALL_CLOSED = "call_closed", "call closed"
    INSUFFICIENT_CREDITS = "insufficient_credits", "not enough credits"
    WALLET_BLOCKED = "wallet_blocked", "wallet blocked"
    INVALID_OFFER = "invalid_offer", "OpenAI refused the SDP offer"
    UPSTREAM_ERROR = "upstream_error", "OpenAI error"
    UPSTREAM_TIMEOUT = "upstream_timeout", "OpenAI timed out"
    UPSTREAM_RATE_LIMITED = "upstream_rate_limited", "OpenAI rate limit"
    UNMETERED = "unmetered", "not metered: settled at the full hold"
    # The supervisor fails closed: a call whose sideband never attached is hung up (not an OpenAI
    # error as such, and it must read differently on a receipt and in reconciliation).
    NOT_WATCHED = "not_watched", "hung up: the sideband never attached"
    # The browser changed the assistant's session (or spoke before the supervisor watched) again.
    POLICY_VIOLATION = "policy_violation", "the assistant's settings were changed from the browser"


# Causes that end a call as `killed` rather than `ended`.
KILL_CAUSES = (
    Cause.STAFF_HANGUP, Cause.CREDITS_EXHAUSTED, Cause.TIME_LIMIT, Cause.USER_SUSPENDED, Cause.NOT_WATCHED,
    Cause.POLICY_VIOLATION,
)


class RealtimeCall(models.Model):
    """One voice call (proxy mode), or one key-mode window and the call it starts.

    Holds `credits_held` from start to settlement; `credits_charged` is what settlement debited.
    The OpenAI key and client secrets are never stored: only `secret_fingerprint`.
    """

    public_id = models.CharField(max_length=40, unique=True, default=new_public_id, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="realtime_calls")
    assistant = models.ForeignKey(Assistant, on_delete=models.PROTECT, related_name="calls")
    mode = models.CharField(max_length=8, choices=CallMode.choices, default=CallMode.PROXY)
    state = models.CharField(max_length=10, choices=CallState.choices, default=CallState.PENDING)
    # Snapshots of the policy at start, so later edits don't reprice a past call.
    model = models.CharField(max_length=64)
    markup_percent = models.PositiveIntegerField()
    allowed_seconds = models.PositiveIntegerField(help_text="The call's time limit: the assistant's maximum length.")

    openai_call_id = models.CharField(max_length=100, null=True, blank=True, unique=True)
    secret_fingerprint = models.CharField(max_length=80, blank=True, help_text="sha256 of a key-mode secret.")
    secret_expires_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ending_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    expected_end_at = models.DateTimeField(db_index=True)
    end_reason = models.CharField(max_length=32, choices=Cause.choices, blank=True)

    # The billing.Hold behind this call (a plain id: billing owns that table and its lifecycle).
    hold_id = models.BigIntegerField(null=True, blank=True, unique=True)
    credits_held = models.PositiveIntegerField(default=0)
    credits_charged = models.PositiveIntegerField(null=True, blank=True)
    credits_used = models.PositiveIntegerField(default=0, help_text="Metered so far (supervisor).")
    partial_hold = models.BooleanField(
        default=False,
        help_text="The hold covers less than the assistant's maximum length at its worst-case rate: the "
        "supervisor ends the call when the credits left cannot pay for one more worst-case response.",
    )
    key_reconciled_at = models.DateTimeField(
        null=True, blank=True, help_text="Key mode: when OpenAI's usage for this call's window was reconciled."
    )

    text_in_tokens = models.PositiveBigIntegerField(default=0)
    text_cached_tokens = models.PositiveBigIntegerField(default=0)
    text_out_tokens = models.PositiveBigIntegerField(default=0)
    audio_in_tokens = models.PositiveBigIntegerField(default=0)
    audio_cached_tokens = models.PositiveBigIntegerField(default=0)
    audio_out_tokens = models.PositiveBigIntegerField(default=0)
    cost_microusd = models.PositiveBigIntegerField(default=0)

    # Supervisor lease (issue 6): who watches this call's sideband, until when.
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    metered_at = models.DateTimeField(null=True, blank=True, help_text="When a supervisor first attached.")

    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["user", "state"], name="realtime_call_user_state"),
            models.Index(fields=["state", "expected_end_at"], name="realtime_call_state_end"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(state__in=FINAL_STATES) | Q(ended_at__isnull=False), name="call_final_has_ended_at"
            ),
            models.CheckConstraint(
                condition=Q(credits_charged__isnull=True) | Q(state__in=FINAL_STATES),
                name="call_charged_only_when_final",
            ),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def hold(self):
        from billing.models import Hold

        return Hold.objects.get(pk=self.hold_id) if self.hold_id else None

    @property
    def tokens(self) -> TokenCounts:
        return TokenCounts(**{name: getattr(self, f"{name}_tokens") for name in TokenCounts.CLASSES})


class CallEvent(models.Model):
    """The timeline of a call: every transition (and other moments that matter), with its cause."""

    class Kind(models.TextChoices):
        STATE = "state", "state change"
        HANGUP_SENT = "hangup_sent", "hangup sent to OpenAI"
        HANGUP_FAILED = "hangup_failed", "hangup to OpenAI failed"
        ATTACHED = "attached", "client reported its call id"
        SETTLED = "settled", "hold settled"
        # Added by the supervisor (sessions/supervisor/store.py).
        SIDEBAND_ATTACHED = "sideband_attached", "supervisor attached"
        SIDEBAND_LOST = "sideband_lost", "supervisor lost the sideband"
        WARNING = "warning", "warning"
        POLICY_DEVIATION = "policy_deviation", "the browser changed the session; reverted"

    call = models.ForeignKey(RealtimeCall, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.STATE)
    from_state = models.CharField(max_length=10, choices=CallState.choices, blank=True)
    to_state = models.CharField(max_length=10, choices=CallState.choices, blank=True)
    cause = models.CharField(max_length=32, choices=Cause.choices, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["at", "pk"]
        indexes = [models.Index(fields=["call", "at"], name="realtime_event_call_at")]

    def __str__(self) -> str:
        return f"{self.call_id} {self.kind} {self.from_state}→{self.to_state} ({self.cause})"


# --- Supervisor (issue 6): metered usage, one row per response --------------------------------


class UsageRecord(models.Model):
    """What one `response.done` (or one input transcription) of a call used, priced when it arrived.

    Unique by (call, response_id): a replayed event (re-attached sideband, a second supervisor)
    inserts nothing and charges nothing twice. The call's running totals are the sum of these rows.
    """

    class Kind(models.TextChoices):
        RESPONSE = "response", "response"
        TRANSCRIPTION = "transcription", "input transcription"

    call = models.ForeignKey(RealtimeCall, on_delete=models.CASCADE, related_name="usage_records")
    response_id = models.CharField(max_length=100, help_text="resp_… or item_…:index for a transcription.")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.RESPONSE)
    at = models.DateTimeField()
    text_in_tokens = models.PositiveBigIntegerField(default=0)
    text_cached_tokens = models.PositiveBigIntegerField(default=0)
    text_out_tokens = models.PositiveBigIntegerField(default=0)
    audio_in_tokens = models.PositiveBigIntegerField(default=0)
    audio_cached_tokens = models.PositiveBigIntegerField(default=0)
    audio_out_tokens = models.PositiveBigIntegerField(default=0)
    cost_microusd = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["call", "response_id"], name="usage_record_once_per_response"),
        ]
        # Reconciliation streams usage by minute over a window: without this, every run scans all.
        indexes = [models.Index(fields=["at"], name="usage_record_at")]

    def __str__(self) -> str:
        return f"{self.call_id} {self.response_id}"

    @property
    def tokens(self) -> TokenCounts:
        return TokenCounts(**{name: getattr(self, f"{name}_tokens") for name in TokenCounts.CLASSES})
from sessions.reconciliation.models import *  # noqa: E402,F403
