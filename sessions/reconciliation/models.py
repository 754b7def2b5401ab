"""The reconciliation models, re-exported: they live in `sessions.models.reconciliation` (Django
loads an app's models from its `models` package), and reconciliation code imports them from here."""

from sessions.models.reconciliation import (
    USAGE_TOKEN_FIELDS,
    CostBucket,
    Flag,
    FlagKind,
    FlagStatus,
    ImportSource,
    ImportWatermark,
    Severity,
    UsageBucket,
    UsageUpload,
)

__all__ = [
    "USAGE_TOKEN_FIELDS",
    "CostBucket",
    "Flag",
    "FlagKind",
    "FlagStatus",
    "ImportSource",
    "ImportWatermark",
    "Severity",
    "UsageBucket",
    "UsageUpload",
]
