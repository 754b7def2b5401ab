"""The only code that changes a balance (see docs/contracts.md and docs/billing.md).

Every public function here is keyword-only and opens its own `transaction.atomic(durable=True)`,
locks rows in the order of `billing/locks.py` (purchase → wallet → hold), writes, and pushes the
new balance to the user's browsers after commit. Calls to Stripe happen before or after those
transactions, never inside one.

One module per seam, imported one way (a module imports only those below it):

    stripe_events   receive, process, retry and dispatch Stripe webhook events
    topups          auto top-up: saved cards, the off-session top-up, its invoice, failures
    checkout        credit packs, Checkout Sessions, fulfilment   refunds   refunds and disputes
    invoices        purchases' Stripe invoices: their links, the charge in words
    holds           place, hold_in_transaction, settle, release, extend_hold; get_hold, hold_settlement
    caps            the monthly spending cap (reads; callers hold the wallet's lock)
    crossings       auto top-up's trigger: below the threshold, enqueue; back above, re-arm
    ledger          wallets, grant / clawback / adjust / credit_refund, lock_wallet, the one entry writer
    promos          the sign-up bonus, promo codes, expiry of grants (through ledger)
    grants          credit grants: made by entries that add credits, spent in order, debt
    reads           reads for other apps (hold_by_key); imports only the models

`billing.tasks` sits above them all. This package re-exports the public names, so callers write
`from billing import services` and `services.place_hold(...)`.
"""

from billing.services.caps import CapStatus, cap_status
from billing.services.checkout import (
    cancel_checkout,
    expire_stale_checkout,
    fail_checkout,
    fulfil_checkout,
    settings_summary,
    stale_checkouts,
    stale_purchases_to_reconcile,
    start_checkout,
)
from billing.services.grants import spending_order
from billing.services.holds import (
    Settlement,
    extend_hold,
    get_hold,
    hold_in_transaction,
    hold_settlement,
    place_hold,
    release_hold,
    settle_hold,
)
from billing.services.ledger import (
    CLAWBACK_KINDS,
    GRANT_KINDS,
    Kind,
    adjust,
    available_credits,
    balance_payload,
    clawback,
    credit_refund,
    get_wallet,
    grant,
    lock_wallet,
)
from billing.services.promos import (
    PromoCodeRefused,
    expire_due_grants,
    expire_grant,
    grant_signup_bonus,
    normalise_code,
    redeem_promo_code,
)
from billing.services.reads import hold_by_key
from billing.services.refunds import (
    DISPUTE_CLOSED_STATUSES,
    DISPUTE_RETURNS_CREDITS,
    REFUND_FAILED_STATUSES,
    apply_charge_refunds,
    apply_dispute,
    apply_refund,
)
from billing.services.stripe_events import (
    HANDLED_TYPES,
    dispatch,
    process_stripe_event,
    receive_stripe_event,
    retry_stripe_event,
)
from billing.services.topups import top_up_coming

__all__ = [
    # ledger
    "CLAWBACK_KINDS",
    "GRANT_KINDS",
    "Kind",
    "adjust",
    "available_credits",
    "balance_payload",
    "clawback",
    "credit_refund",
    "get_wallet",
    "grant",
    "lock_wallet",
    # holds
    "Settlement",
    "get_hold",
    "hold_in_transaction",
    "extend_hold",
    "hold_settlement",
    "place_hold",
    "release_hold",
    "settle_hold",
    # grants
    "spending_order",
    # promotional credits and expiry
    "PromoCodeRefused",
    "expire_due_grants",
    "expire_grant",
    "grant_signup_bonus",
    "normalise_code",
    "redeem_promo_code",
    # reads
    "hold_by_key",
    # the monthly spending cap
    "CapStatus",
    "cap_status",
    # auto top-up
    "top_up_coming",
    # checkout
    "cancel_checkout",
    "fail_checkout",
    "expire_stale_checkout",
    "fulfil_checkout",
    "settings_summary",
    "stale_checkouts",
    "stale_purchases_to_reconcile",
    "start_checkout",
    # refunds and disputes
    "DISPUTE_CLOSED_STATUSES",
    "DISPUTE_RETURNS_CREDITS",
    "REFUND_FAILED_STATUSES",
    "apply_charge_refunds",
    "apply_dispute",
    "apply_refund",
    # Stripe events
    "HANDLED_TYPES",
    "dispatch",
    "process_stripe_event",
    "receive_stripe_event",
    "retry_stripe_event",
]
