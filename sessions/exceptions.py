"""Why a call could not be started or changed. Each carries the HTTP status and stable code the
API answers with, and a sentence a person can act on."""

from realtime_saas.api import APIError


class CallError(APIError):
    status = 400
    code = "invalid_request"


class InvalidOffer(CallError):
    code = "invalid_offer"


class InvalidAssistant(CallError):
    code = "invalid_assistant"


class EmailUnverified(CallError):
    status, code = 403, "email_unverified"


class AccountSuspended(CallError):
    status, code = 403, "account_suspended"


class KeyModeWithdrawn(CallError):
    status, code = 403, "key_mode_withdrawn"


class InsufficientCredits(CallError):
    status, code = 402, "insufficient_credits"


class SpendingCapReached(InsufficientCredits):
    """The user's monthly spending cap leaves less than the call's minimum (billing.services.caps)."""

    code = "spending_cap"


class WalletBlocked(CallError):
    status, code = 402, "wallet_blocked"


class ConcurrencyLimit(CallError):
    status, code = 429, "concurrency_limit"


class StartRateLimited(CallError):
    status, code = 429, "rate_limited"


class CallConflict(CallError):
    status, code = 409, "call_conflict"


class Upstream(CallError):
    """OpenAI failed (502 upstream_error) or is unavailable for now (503 upstream_unavailable)."""

    status, code = 502, "upstream_error"
