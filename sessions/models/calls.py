"""Calls: each call we start (or key-mode window we open), its states and their causes, and its
timeline.

A call's state only moves through ``sessions.services`` (a conditional UPDATE plus a ``CallEvent``),
never by saving the row.
"""

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q

from sessions.models.assistants import Assistant
from sessions.models.pricing import TokenColumns


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


class RealtimeCall(TokenColumns):
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

    # The billing.Hold behind this call: a plain id. Billing owns that table and its lifecycle; its
    # services settle, release and read it by this id (billing.services.get_hold, hold_settlement).
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

    # The six `*_tokens` columns (TokenColumns): metered so far, the sum of the call's usage records.
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
