"""Metered usage (the supervisor, issue 6): one row per response of a call."""

from django.db import models

from sessions.models.calls import RealtimeCall
from sessions.models.pricing import TokenColumns


class UsageRecord(TokenColumns):
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
    # The six `*_tokens` columns come from TokenColumns.
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
