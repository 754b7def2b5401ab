"""Billing errors. Views turn them into clear 4xx/5xx answers; tasks retry only the transient ones."""


class BillingError(Exception):
    """Base of every billing error."""


class InsufficientCredits(BillingError):
    def __init__(self, *, available: int, required: int):
        self.available = available
        self.required = required
        super().__init__(f"{required:,} credits are needed but only {available:,} are available.")


class WalletBlocked(BillingError):
    def __init__(self, *, reason: str):
        self.reason = reason
        super().__init__(reason)


class HoldAlreadyFinal(BillingError):
    def __init__(self, *, hold_id: int, status: str):
        self.hold_id = hold_id
        self.status = status
        super().__init__(f"Hold {hold_id} is already {status}.")


class IdempotencyConflict(BillingError):
    """An idempotency key was reused for a different operation (a bug in the caller)."""


class InvalidAmount(BillingError):
    """Credits must be a positive integer (or non-zero for adjustments); reasons are required."""


class UnknownPack(BillingError):
    def __init__(self, key: str):
        self.key = key
        super().__init__(f"There is no credit pack {key!r} on sale.")


class PaymentsNotConfigured(BillingError):
    """STRIPE_SECRET_KEY is not set."""


class StripeFailure(BillingError):
    """Stripe refused a request (bad parameters, authentication): retrying will not help."""


class CardDeclined(StripeFailure):
    """Stripe's 402 card error on a payment: `code` is e.g. `card_declined` or, for an off-session
    payment that needs the customer, `authentication_required`."""

    def __init__(self, message: str, *, code: str, decline_code: str = "", payment_intent_id: str | None = None):
        self.code = code
        self.decline_code = decline_code
        self.payment_intent_id = payment_intent_id
        super().__init__(message)


class StripeUnavailable(StripeFailure):
    """A transient failure talking to Stripe (network, timeout, rate limit, 5xx): retry later."""


class InvalidWebhook(BillingError):
    """A webhook whose signature, timestamp or body does not verify."""


class SpendingCapExceeded(BillingError):
    """A purchase, top-up or hold would pass the user's monthly spending cap (the message says by
    how much, and when the cap's month starts again)."""
