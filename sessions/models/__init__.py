"""The models of the realtime app (label `realtime`): one module per seam, imported one way.

    reconciliation  what OpenAI says we used, import watermarks, flags for staff   (→ calls)
    usage           UsageRecord: what each metered response used                    (→ calls)
    calls           RealtimeCall, CallEvent, states, causes, transitions   (→ assistants, pricing)
    assistants      Assistant (the policy a call runs under) and its validators     (→ pricing)
    pricing         TokenCounts, TokenColumns, ModelPrice, credits_for_cost

Money is integers with the unit in the name. A call's state only moves through
``sessions.services`` (a conditional UPDATE plus a ``CallEvent``), never by saving the row.

This package re-exports every public name, so callers (and migrations) write
``from sessions.models import RealtimeCall``. Modules of the package import each other by their
own names, never through this one.
"""

from sessions.models.assistants import (
    MAX_CALL_SECONDS,
    TURN_DETECTION_TYPES,
    VOICES,
    Assistant,
    default_turn_detection,
    validate_tools,
    validate_turn_detection,
)
from sessions.models.calls import (
    FINAL_STATES,
    KILL_CAUSES,
    LIVE_STATES,
    OPEN_STATES,
    TRANSITIONS,
    CallEvent,
    CallMode,
    CallState,
    Cause,
    RealtimeCall,
    new_public_id,
    sources_of,
)
from sessions.models.pricing import (
    WORST_CASE_TOKENS_PER_MINUTE,
    ModelPrice,
    TokenColumns,
    TokenCounts,
    credits_for_cost,
)
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
from sessions.models.usage import UsageRecord

__all__ = [
    # pricing
    "WORST_CASE_TOKENS_PER_MINUTE",
    "ModelPrice",
    "TokenColumns",
    "TokenCounts",
    "credits_for_cost",
    # assistants
    "MAX_CALL_SECONDS",
    "TURN_DETECTION_TYPES",
    "VOICES",
    "Assistant",
    "default_turn_detection",
    "validate_tools",
    "validate_turn_detection",
    # calls
    "FINAL_STATES",
    "KILL_CAUSES",
    "LIVE_STATES",
    "OPEN_STATES",
    "TRANSITIONS",
    "CallEvent",
    "CallMode",
    "CallState",
    "Cause",
    "RealtimeCall",
    "new_public_id",
    "sources_of",
    # usage
    "UsageRecord",
    # reconciliation
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
