"""What OpenAI says we used (usage and cost buckets), how far we imported, and what staff must review.

Imported rows are upserted by their natural key, so a re-import of the same period changes
nothing but late-arriving figures. A grouping field OpenAI reported as null is stored as "".
"""

from django.conf import settings
from django.db import models

from sessions.models.calls import RealtimeCall

USAGE_TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "input_cached_tokens",
    "input_uncached_tokens",
    "input_text_tokens",
    "input_cached_text_tokens",
    "output_text_tokens",
    "input_audio_tokens",
    "input_cached_audio_tokens",
    "output_audio_tokens",
    "input_image_tokens",
    "input_cached_image_tokens",
    "num_model_requests",
)


class ImportSource(models.TextChoices):
    API = "api", "Usage/Costs API"
    CSV = "csv", "CSV export"


class UsageBucket(models.Model):
    """One `organization.usage.completions.result`: a bucket × (project, key, model) group."""

    start_time = models.DateTimeField()
    width_seconds = models.PositiveIntegerField(default=60)
    project_id = models.CharField(max_length=100, blank=True, default="")
    api_key_id = models.CharField(max_length=100, blank=True, default="")
    model = models.CharField(max_length=100, blank=True, default="")
    input_tokens = models.BigIntegerField(default=0, help_text="All input, cached included.")
    output_tokens = models.BigIntegerField(default=0)
    input_cached_tokens = models.BigIntegerField(default=0)
    input_uncached_tokens = models.BigIntegerField(default=0)
    input_text_tokens = models.BigIntegerField(default=0, help_text="Uncached.")
    input_cached_text_tokens = models.BigIntegerField(default=0)
    output_text_tokens = models.BigIntegerField(default=0)
    input_audio_tokens = models.BigIntegerField(default=0, help_text="Uncached.")
    input_cached_audio_tokens = models.BigIntegerField(default=0)
    output_audio_tokens = models.BigIntegerField(default=0)
    input_image_tokens = models.BigIntegerField(default=0)
    input_cached_image_tokens = models.BigIntegerField(default=0)
    num_model_requests = models.BigIntegerField(default=0)
    source = models.CharField(max_length=8, choices=ImportSource.choices, default=ImportSource.API)
    imported_at = models.DateTimeField()

    class Meta:
        ordering = ["start_time", "project_id", "api_key_id", "model"]
        constraints = [
            models.UniqueConstraint(
                fields=["start_time", "width_seconds", "project_id", "api_key_id", "model"],
                name="recon_usage_bucket_natural_key",
            )
        ]
        indexes = [models.Index(fields=["width_seconds", "start_time"], name="recon_usage_width_start")]

    def __str__(self) -> str:
        return f"{self.start_time:%Y-%m-%d %H:%M} {self.project_id}/{self.api_key_id}/{self.model}"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class CostBucket(models.Model):
    """One `organization.costs.result`: a day × (project, line item, key) amount, in micro-dollars."""

    start_time = models.DateTimeField()
    width_seconds = models.PositiveIntegerField(default=86400)
    project_id = models.CharField(max_length=100, blank=True, default="")
    line_item = models.CharField(max_length=200, blank=True, default="")
    api_key_id = models.CharField(max_length=100, blank=True, default="")
    amount_microusd = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=8, default="usd")
    quantity = models.DecimalField(max_digits=24, decimal_places=6, null=True, blank=True)
    quantity_unit = models.CharField(max_length=40, blank=True, default="")
    source = models.CharField(max_length=8, choices=ImportSource.choices, default=ImportSource.API)
    imported_at = models.DateTimeField()

    class Meta:
        ordering = ["start_time", "project_id", "line_item"]
        constraints = [
            models.UniqueConstraint(
                fields=["start_time", "width_seconds", "project_id", "line_item", "api_key_id"],
                name="recon_cost_bucket_natural_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.start_time:%Y-%m-%d} {self.project_id} {self.line_item}"


class ImportWatermark(models.Model):
    """How far an import got. Advanced only after every page of a pull was stored."""

    name = models.CharField(max_length=40, unique=True)
    watermark = models.DateTimeField(null=True, blank=True)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    buckets_seen = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} @ {self.watermark}"


class UsageUpload(models.Model):
    """A CSV export uploaded by staff (the admin's add form). Rows are imported on save, or not at all."""

    class Kind(models.TextChoices):
        USAGE = "usage", "usage (completions_usage_*.csv)"
        COSTS = "costs", "costs (cost_*.csv)"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    file_name = models.CharField(max_length=255, blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    uploaded_at = models.DateTimeField()
    rows = models.PositiveIntegerField(default=0)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-uploaded_at"]

    def __str__(self) -> str:
        return self.file_name or f"{self.kind} upload {self.pk}"


class FlagKind(models.TextChoices):
    OUTSIDE_WINDOW = "outside_window", "key used beyond its expected duration"
    UNEXPLAINED_USAGE = "unexplained_usage", "unexplained usage"
    CALL_OVERRUN = "call_overrun", "call overrun"
    UNMONITORED_CALL = "unmonitored_call", "unmonitored call"
    COST_DRIFT = "cost_drift", "cost drift"
    # Raised at once by the supervisor when it ends a call for a policy violation (a modified client).
    POLICY_VIOLATION = "policy_violation", "policy violation on a call"
    # Key mode: OpenAI reports more in a key-mode window than we metered (the secret started
    # calls that were never reported, or ran past its window).
    KEY_MODE_ABUSE = "key_mode_abuse", "client secret used beyond its reported call"


class Severity(models.TextChoices):
    LOW = "low", "low"
    MEDIUM = "medium", "medium"
    HIGH = "high", "high"


class FlagStatus(models.TextChoices):
    OPEN = "open", "open"
    ACKNOWLEDGED = "acknowledged", "acknowledged"
    RESOLVED = "resolved", "resolved"
    FALSE_POSITIVE = "false_positive", "false positive"


class Flag(models.Model):
    """Something reconciliation found that staff must look at.

    `natural_key` makes a re-run of the same window update the flag instead of adding one; the
    review fields (status, reviewer, notes) are never touched by a re-run.
    """

    natural_key = models.CharField(max_length=255, unique=True)
    kind = models.CharField(max_length=24, choices=FlagKind.choices, db_index=True)
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.MEDIUM)
    status = models.CharField(
        max_length=16, choices=FlagStatus.choices, default=FlagStatus.OPEN, db_index=True
    )
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    project_id = models.CharField(max_length=100, blank=True, default="")
    api_key_id = models.CharField(max_length=100, blank=True, default="")
    model = models.CharField(max_length=100, blank=True, default="")
    attribution = models.CharField(max_length=16, blank=True, help_text="key, project or call")
    call = models.ForeignKey(
        RealtimeCall, null=True, blank=True, on_delete=models.SET_NULL, related_name="reconciliation_flags"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reported_tokens = models.BigIntegerField(default=0)
    metered_tokens = models.BigIntegerField(default=0)
    summary = models.CharField(max_length=500, blank=True)
    evidence = models.JSONField(default=dict, blank=True)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    notified_at = models.DateTimeField(null=True, blank=True)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["-window_start", "-pk"]
        indexes = [models.Index(fields=["status", "severity"], name="recon_flag_status_severity")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.window_start:%Y-%m-%d %H:%M}"
